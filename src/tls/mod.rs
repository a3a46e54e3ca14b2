//! TLS termination: the SNI resolver, the two rustls configs (normal traffic and
//! ACME TLS-ALPN-01 validation), the handshake, and profile signing.
//!
//! Owns no certificates itself: `certs` fills the resolver. One rustls crypto
//! provider (aws-lc-rs) for the whole process, installed by `install_provider`.

pub mod certkey;
pub mod client;
pub mod resolver;
pub mod shared_challenge;
pub mod sign;

use std::sync::Arc;

use futures_util::FutureExt as _;
use rustls::ServerConfig;
use rustls::server::{Acceptor as RustlsAcceptor, ServerSessionMemoryCache};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::http::Hooks;
use crate::server::{Accepted, Acceptor, Io, Protocol};
pub use resolver::CertResolver;

/// TLS sessions remembered for resumption (each entry is a few hundred bytes).
const SESSION_CACHE_ENTRIES: usize = 8_192;

/// Installs aws-lc-rs as the process-wide rustls provider (idempotent).
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// aws-lc-rs with AES-128-GCM/SHA-256 suites first (SHA-256 has hardware
/// support on current x86 and ARM servers; SHA-384 mostly does not).
fn server_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite as suite;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = vec![
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS13_AES_256_GCM_SHA384,
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    provider
}

/// The configs for one listener: normal traffic and ACME validation share the
/// resolver but not their ALPN lists, because a rustls server whose list does
/// not overlap the client's aborts the handshake.
pub struct TlsAcceptor {
    normal: Arc<ServerConfig>,
    challenge: Arc<ServerConfig>,
    resolver: Arc<CertResolver>,
    /// Handshakes are counted here by result and version when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Several nodes: challenge answers other nodes published.
    shared: Option<Arc<shared_challenge::SharedChallenges>>,
}

impl TlsAcceptor {
    pub fn new(resolver: Arc<CertResolver>) -> TlsAcceptor {
        install_provider();
        let provider = Arc::new(server_provider());
        let builder = || {
            ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("aws-lc-rs supports the default protocol versions")
                .with_no_client_auth()
        };
        let mut normal = builder().with_cert_resolver(resolver.clone());
        // Our order, not the client's: OpenSSL clients list AES-256/SHA-384
        // first, whose SHA-512-based key schedule was the largest single cost
        // of a fresh handshake in profiles here; AES-128 is no less secure.
        normal.ignore_client_order = true;
        normal.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        normal.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(ticketer) => normal.ticketer = ticketer,
            Err(e) => {
                tracing::warn!(error = %e, "no TLS session tickets; resumption by session id only")
            }
        }
        let mut challenge = builder().with_cert_resolver(resolver.clone());
        challenge.alpn_protocols = vec![resolver::ACME_TLS_ALPN.to_vec()];
        TlsAcceptor {
            normal: Arc::new(normal),
            challenge: Arc::new(challenge),
            resolver,
            metrics: None,
            shared: None,
        }
    }

    /// Count handshakes in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> TlsAcceptor {
        self.metrics = Some(metrics);
        self
    }

    /// Answer TLS-ALPN-01 validations for orders other nodes placed.
    #[must_use]
    pub fn with_shared_challenges(
        mut self,
        shared: Arc<shared_challenge::SharedChallenges>,
    ) -> TlsAcceptor {
        self.shared = Some(shared);
        self
    }
}

impl Acceptor for TlsAcceptor {
    fn accept(
        &self,
        tcp: TcpStream,
        challenge_only: bool,
    ) -> futures_util::future::BoxFuture<'static, Option<Accepted>> {
        use crate::metrics::{HandshakeLabels, HandshakeResult, TlsVersion};
        let normal = self.normal.clone();
        let challenge = self.challenge.clone();
        let resolver = self.resolver.clone();
        let metrics = self.metrics.clone();
        let shared = self.shared.clone();
        let count = move |result: HandshakeResult, version: TlsVersion| {
            if let Some(m) = &metrics {
                m.tls_handshakes
                    .get_or_create(&HandshakeLabels { result, version })
                    .inc();
            }
        };
        async move {
            let Ok(start) = LazyConfigAcceptor::new(RustlsAcceptor::default(), tcp).await else {
                count(HandshakeResult::failed, TlsVersion::none);
                return None;
            };
            let hello = start.client_hello();
            let is_challenge = resolver::is_alpn_challenge(&hello);
            // None: no SNI at all; Some(false): a name we do not serve.
            let sni_known = hello.server_name().map(|name| resolver.serves_name(name));
            if challenge_only && !is_challenge {
                return None;
            }
            if let (true, Some(shared), Some(name)) = (is_challenge, &shared, hello.server_name()) {
                let name = name.to_owned();
                shared.fetch_alpn(&name).await;
            }
            let config = if is_challenge { challenge } else { normal };
            let Ok(stream) = start.into_stream(config).await else {
                count(
                    match (is_challenge, sni_known) {
                        (true, _) => HandshakeResult::acme_challenge,
                        (false, None) => HandshakeResult::no_sni,
                        (false, Some(false)) => HandshakeResult::unknown_sni,
                        (false, Some(true)) => HandshakeResult::failed,
                    },
                    TlsVersion::none,
                );
                return None;
            };
            let version = match stream.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => TlsVersion::tls1_3,
                Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::tls1_2,
                _ => TlsVersion::none,
            };
            if is_challenge {
                count(HandshakeResult::acme_challenge, version);
                // RFC 8737: the validation is the handshake itself; nothing follows.
                tracing::debug!("answered a TLS-ALPN-01 validation handshake");
                return None;
            }
            count(HandshakeResult::ok, version);
            let protocol = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Some(Protocol::Http2),
                Some(b"http/1.1") => Some(Protocol::Http1),
                _ => None,
            };
            Some(Accepted {
                io: Box::new(stream) as Box<dyn Io>,
                protocol,
            })
        }
        .boxed()
    }
}

/// ACME HTTP-01 answers and profile signing, backed by the resolver.
pub struct EdgeHooks {
    pub resolver: Arc<CertResolver>,
    /// Several nodes: HTTP-01 answers other nodes published.
    pub shared: Option<Arc<shared_challenge::SharedChallenges>>,
}

impl Hooks for EdgeHooks {
    fn http01(&self, host: &str, token: &str) -> Option<String> {
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        self.resolver
            .http_challenge(name.trim_end_matches('.'), token)
    }

    fn sign_profile(&self, domain: &str, profile: &[u8]) -> Option<Vec<u8>> {
        sign::sign_for_domain(&self.resolver, domain, profile)
    }

    fn prepare_http01<'a>(
        &'a self,
        host: &'a str,
        token: &'a str,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(shared) = &self.shared {
                shared.fetch_http(host, token).await;
            }
        })
    }
}
