//! Certificates for every served name: where they come from (an `Issuer`: an
//! ACME CA or the local CA), when they are ordered and renewed (`manager`), and
//! certificates from files (`files`). The manager is ours, not the ACME
//! library's: queue, rate limit, backoff and storage follow Let's Encrypt's
//! integration guide (see README "TLS and ACME").

pub mod acme;
pub mod files;
pub mod local;
pub mod manager;
pub mod report;

use futures_util::future::BoxFuture;

use crate::config::{Config, TlsMode};
use crate::store::CertRecord;

/// The issuer whose certificates this config serves: the ACME directory URL,
/// or "local" (what `Issuer::source` returns and certificates are stored under).
pub fn issuer_of(config: &Config) -> String {
    match config.tls.mode {
        TlsMode::Local => "local".to_owned(),
        _ => config.acme.directory_url.clone(),
    }
}

/// The certificate to serve for a domain from its stored records: the
/// configured issuer's if it has one that has not expired, else the
/// longest-lived unexpired one from another issuer (served only until the
/// configured CA's replaces it).
pub fn pick<'r>(records: &'r [CertRecord], issuer: &str, now: i64) -> Option<&'r CertRecord> {
    let live = || records.iter().filter(move |r| r.not_after > now);
    live()
        .filter(|r| r.source == issuer)
        .max_by_key(|r| r.not_after)
        .or_else(|| live().max_by_key(|r| r.not_after))
}

/// A freshly issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// Leaf first, then intermediates, PEM.
    pub chain_pem: String,
}

/// Why an issuance failed, in the CA's words where it gave some.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct IssueError {
    pub message: String,
    /// Seconds the CA asked us to wait (rateLimited, Retry-After).
    pub retry_after_secs: Option<u64>,
    /// A per-request protocol hiccup (badNonce) rather than a verdict about
    /// the domain: the order is tried again at once.
    pub transient: bool,
}

impl IssueError {
    pub fn new(message: impl Into<String>) -> IssueError {
        IssueError {
            message: message.into(),
            retry_after_secs: None,
            transient: false,
        }
    }
}

/// Something that turns a list of names into a certificate.
pub trait Issuer: Send + Sync {
    /// Orders a certificate for `names`. `previous` is the certificate this
    /// one replaces, if any (ACME ARI: a renewal that names it is exempt from
    /// Let's Encrypt's rate limits).
    fn issue<'a>(
        &'a self,
        domain: &'a str,
        names: &'a [String],
        previous: Option<&'a CertRecord>,
    ) -> BoxFuture<'a, Result<Issued, IssueError>>;
    /// Stored with each certificate: the ACME directory URL, or "local".
    fn source(&self) -> &str;
    /// The CA's suggested renewal window for `record` (ACME Renewal
    /// Information, RFC 9773), or `None` when the CA offers none.
    fn renewal_window<'a>(
        &'a self,
        _record: &'a CertRecord,
    ) -> BoxFuture<'a, Option<RenewalWindow>> {
        Box::pin(async { None })
    }
}

/// RFC 9773 §4.2: renew at a random time in [start, end]; ask again after `recheck_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: i64,
    pub end: i64,
    pub recheck_secs: i64,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A fresh private key of the configured type.
pub fn new_key(key_type: crate::config::KeyType) -> Result<rcgen::KeyPair, IssueError> {
    let alg = match key_type {
        crate::config::KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        crate::config::KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
    };
    let key = match key_type {
        crate::config::KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048)
        }
        crate::config::KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(alg),
    };
    key.map_err(|e| IssueError::new(format!("generating a key: {e}")))
}
