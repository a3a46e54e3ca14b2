//! Prometheus metrics (text exposition through `prometheus-client`) and the
//! operators' listener (`server.metrics_listen`): `GET /metrics`, `GET /ready`
//! (200 once every configured domain has a certificate), `GET /live`.
//!
//! Names follow `mailconfd_<area>_<what>_<unit>`; counters end in `_total`.
//! Label values come from small fixed sets (the enums below) or the
//! configured domain list, never from client input; no address ever appears.
//! The registry is created by `app` and handed to whoever counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TlsMode};
use crate::tls::CertResolver;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Format {
    thunderbird,
    autodiscover_pox,
    autodiscover_json,
    mobileconfig,
    mta_sts,
    page,
    acme_challenge,
    /// PACC's user-agent-configuration.json.
    pacc,
    /// The `/.well-known/jmap` redirect.
    jmap,
    /// No route: unknown paths.
    other,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Transport {
    http,
    https,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Version {
    h1,
    h2,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum StatusClass {
    s2xx,
    s3xx,
    s4xx,
    s5xx,
}

impl EncodeLabelValue for StatusClass {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(match self {
            StatusClass::s2xx => "2xx",
            StatusClass::s3xx => "3xx",
            StatusClass::s4xx => "4xx",
            StatusClass::s5xx => "5xx",
        })
    }
}

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        match status {
            0..=299 => StatusClass::s2xx,
            300..=399 => StatusClass::s3xx,
            400..=499 => StatusClass::s4xx,
            _ => StatusClass::s5xx,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub format: Format,
    pub status: StatusClass,
    pub transport: Transport,
    pub version: Version,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabels {
    pub format: Format,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum HandshakeResult {
    ok,
    unknown_sni,
    no_sni,
    acme_challenge,
    timeout,
    failed,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TlsVersion {
    tls1_2,
    tls1_3,
    none,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub result: HandshakeResult,
    pub version: TlsVersion,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Limit {
    /// All connections together.
    global,
    /// Open connections from one client (IPv4 address or IPv6 prefix).
    per_client,
    /// A client's new-connection rate (the connection is then served for
    /// ACME validation only).
    rate,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: Limit,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CertState {
    valid,
    expired,
    missing,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertStateLabels {
    pub state: CertState,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabels {
    /// A configured mail domain (A-label), never client input.
    pub domain: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    ok,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub result: Outcome,
}

/// ACME problem types (RFC 8555 §6.7) we name; the rest count as `other`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AcmeError {
    rateLimited,
    badNonce,
    unauthorized,
    connection,
    dns,
    caa,
    rejectedIdentifier,
    serverInternal,
    alreadyReplaced,
    timeout,
    network,
    other,
}

impl AcmeError {
    /// From an error message or a problem type URN
    /// (`urn:ietf:params:acme:error:rateLimited`).
    pub fn classify(text: &str) -> AcmeError {
        const NAMED: [(&str, AcmeError); 10] = [
            ("ratelimited", AcmeError::rateLimited),
            ("badnonce", AcmeError::badNonce),
            ("unauthorized", AcmeError::unauthorized),
            (":connection", AcmeError::connection),
            (":dns", AcmeError::dns),
            (":caa", AcmeError::caa),
            ("rejectedidentifier", AcmeError::rejectedIdentifier),
            ("serverinternal", AcmeError::serverInternal),
            ("alreadyreplaced", AcmeError::alreadyReplaced),
            ("timed out", AcmeError::timeout),
        ];
        let lower = text.to_ascii_lowercase();
        for (needle, kind) in NAMED {
            if lower.contains(needle) {
                return kind;
            }
        }
        if lower.contains("connect") || lower.contains("dns error") || lower.contains("http") {
            AcmeError::network
        } else {
            AcmeError::other
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcmeErrorLabels {
    pub error: AcmeError,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: StatusClass,
}

/// Every metric mailconfd exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<FormatLabels, Histogram>,
    pub tls_handshakes: Family<HandshakeLabels, Counter>,
    pub connections_open: Gauge,
    pub connections_refused: Family<LimitLabels, Counter>,
    pub certificates: Family<CertStateLabels, Gauge>,
    pub certificate_expiry_seconds: Family<DomainLabels, Gauge>,
    pub acme_orders: Family<OutcomeLabels, Counter>,
    pub acme_order_failures: Family<AcmeErrorLabels, Counter>,
    pub acme_http_requests: Family<StatusLabels, Counter>,
    pub issuance_queue_depth: Gauge,
    pub reloads: Family<OutcomeLabels, Counter>,
    /// 0 while a shared state database is unreachable (`[state]`).
    pub state_store_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mailconfd");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by format, status class, transport and HTTP version",
            requests.clone(),
        );
        let request_seconds = Family::<FormatLabels, Histogram>::new_with_constructor(
            request_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its answer",
            request_seconds.clone(),
        );
        let tls_handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result and protocol version",
            tls_handshakes.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Connections open now, all listeners",
            connections_open.clone(),
        );
        let connections_refused = Family::<LimitLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections refused, by the limit that refused them",
            connections_refused.clone(),
        );
        let certificates = Family::<CertStateLabels, Gauge>::default();
        registry.register(
            "certificates",
            "Configured domains by the state of their certificate",
            certificates.clone(),
        );
        let certificate_expiry_seconds = Family::<DomainLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until each configured domain's certificate expires (negative: expired)",
            certificate_expiry_seconds.clone(),
        );
        let acme_orders = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "acme_orders",
            "ACME orders finished, by result",
            acme_orders.clone(),
        );
        let acme_order_failures = Family::<AcmeErrorLabels, Counter>::default();
        registry.register(
            "acme_order_failures",
            "Failed ACME orders by the CA's error type",
            acme_order_failures.clone(),
        );
        let acme_http_requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "acme_http_requests",
            "HTTP requests to the ACME CA by status class",
            acme_http_requests.clone(),
        );
        let issuance_queue_depth = Gauge::default();
        registry.register(
            "issuance_queue_depth",
            "Domains waiting for a certificate order",
            issuance_queue_depth.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let state_store_up = Gauge::default();
        state_store_up.set(1);
        registry.register(
            "state_store_up",
            "1 while the state store answers; 0 while a shared PostgreSQL store is unreachable",
            state_store_up.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            tls_handshakes,
            connections_open,
            connections_refused,
            certificates,
            certificate_expiry_seconds,
            acme_orders,
            acme_order_failures,
            acme_http_requests,
            issuance_queue_depth,
            reloads,
            state_store_up,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }

    /// Counts a connection as open until the guard is dropped (also when its
    /// task ends early).
    pub fn open_connection(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    /// A TLS handshake that did not finish within its deadline.
    pub fn handshake_timed_out(&self) {
        self.tls_handshakes
            .get_or_create(&HandshakeLabels {
                result: HandshakeResult::timeout,
                version: TlsVersion::none,
            })
            .inc();
    }

    /// A connection refused (or, for `rate`, let in for ACME validation only).
    pub fn refused(&self, limit: Limit) {
        self.connections_refused
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    pub fn reload(&self, applied: bool) {
        let result = if applied {
            Outcome::ok
        } else {
            Outcome::failed
        };
        self.reloads.get_or_create(&OutcomeLabels { result }).inc();
    }

    /// Sets the certificate gauges from (domain, not_after) pairs of every
    /// configured domain (`None`: no certificate yet).
    pub fn set_certificates(&self, domains: &[(String, Option<i64>)], now: i64) {
        let (mut valid, mut expired, mut missing) = (0, 0, 0);
        self.certificate_expiry_seconds.clear();
        for (domain, not_after) in domains {
            match not_after {
                None => missing += 1,
                Some(t) => {
                    if *t > now {
                        valid += 1;
                    } else {
                        expired += 1;
                    }
                    self.certificate_expiry_seconds
                        .get_or_create(&DomainLabels {
                            domain: domain.clone(),
                        })
                        .set(t - now);
                }
            }
        }
        for (state, n) in [
            (CertState::valid, valid),
            (CertState::expired, expired),
            (CertState::missing, missing),
        ] {
            self.certificates
                .get_or_create(&CertStateLabels { state })
                .set(n);
        }
    }
}

/// See [`Metrics::open_connection`].
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn request_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: a cached document is well under a millisecond, a
    // signed profile a few milliseconds, a directory lookup up to its timeout.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 16,
    ))
}

/// Whether every configured domain has a certificate (always true without TLS).
pub fn ready(config: &Config, resolver: &CertResolver) -> (bool, String) {
    if config.tls.mode == TlsMode::Off {
        return (true, "ready: tls.mode = off\n".to_owned());
    }
    let missing: Vec<&str> = config
        .domains()
        .map(|(d, _)| d)
        .filter(|d| resolver.domain_names(d).is_none())
        .collect();
    if missing.is_empty() {
        (
            true,
            "ready: every configured domain has a certificate\n".to_owned(),
        )
    } else {
        (
            false,
            format!(
                "not ready: {} domain(s) without a certificate, e.g. {}\n",
                missing.len(),
                missing[0]
            ),
        )
    }
}

/// Longest a scrape connection may stay open.
const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `/metrics`, `/ready` and `/live` on `listener` until shutdown.
/// Meant for loopback or an internal network: it has no authentication.
/// Lines `/ready` adds to its answer (e.g. failing domain sources), which
/// degrade nothing: the node still serves.
pub type ReadyNotes = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    config: watch::Receiver<Arc<Config>>,
    resolver: Arc<CertResolver>,
    notes: ReadyNotes,
    shutdown: CancellationToken,
) {
    // Scrapers are few and local: a small cap keeps a misconfigured public
    // metrics port from growing without bound.
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (tcp, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        let config = config.clone();
        let resolver = resolver.clone();
        let notes = notes.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answer = answer(
                    req.uri().path(),
                    req.method(),
                    &metrics,
                    &config,
                    &resolver,
                    &notes,
                );
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(METRICS_CONNECTION_TIMEOUT, conn).await;
        });
    }
}

fn answer(
    path: &str,
    method: &hyper::Method,
    metrics: &Metrics,
    config: &watch::Receiver<Arc<Config>>,
    resolver: &CertResolver,
    notes: &ReadyNotes,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, content_type: &str, body: String| {
        hyper::Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a static response builds")
    };
    if method != hyper::Method::GET && method != hyper::Method::HEAD {
        return reply(
            405,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        );
    }
    match path {
        "/metrics" => reply(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/live" => reply(200, "text/plain; charset=utf-8", "alive\n".into()),
        "/ready" => {
            let (ok, mut text) = ready(&config.borrow(), resolver);
            for note in notes() {
                text.push_str(&note);
                text.push('\n');
            }
            reply(
                if ok { 200 } else { 503 },
                "text/plain; charset=utf-8",
                text,
            )
        }
        _ => reply(404, "text/plain; charset=utf-8", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_exposition() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                format: Format::thunderbird,
                status: StatusClass::of(200),
                transport: Transport::https,
                version: Version::h2,
            })
            .inc();
        m.reload(false);
        m.set_certificates(
            &[
                ("example.com".into(), Some(1_000)),
                ("example.net".into(), None),
            ],
            400,
        );
        let text = m.encode();
        assert!(
            text.contains(
                "mailconfd_http_requests_total{format=\"thunderbird\",status=\"2xx\",transport=\"https\",version=\"h2\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("mailconfd_config_reloads_total{result=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailconfd_certificate_expiry_seconds{domain=\"example.com\"} 600"),
            "{text}"
        );
        assert!(
            text.contains("mailconfd_certificates{state=\"missing\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn acme_errors_fall_into_a_fixed_set() {
        assert_eq!(
            AcmeError::classify("urn:ietf:params:acme:error:rateLimited: too many"),
            AcmeError::rateLimited
        );
        assert_eq!(
            AcmeError::classify("urn:ietf:params:acme:error:badNonce"),
            AcmeError::badNonce
        );
        assert_eq!(AcmeError::classify("something odd"), AcmeError::other);
    }
}
