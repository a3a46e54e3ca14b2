//! HTTP: one request in, one reply out, with the body cap, the whole-request
//! timeout and the request log. Routing lives in `routes`, reply building in
//! `reply`; sockets, TLS and connection limits live in `server`.
//!
//! Never logs the Authorization header (Thunderbird sends the user's real
//! password to autodiscover as Basic auth) and logs full addresses only at debug.

pub mod reply;
pub mod routes;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::watch;

use crate::config::{Config, IpNet, TlsMode};
use reply::Reply;

/// Largest request body we read (a POX request is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Reading the body and answering must finish within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// `Strict-Transport-Security` on HTTPS answers for our own names: a year.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";
/// After this many requests on one connection we ask the client to close it.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 1_000;

/// What the edge offers the route table besides the config: ACME HTTP-01
/// answers and profile signing. The default answers neither.
pub trait Hooks: Send + Sync {
    /// Key authorization for a pending HTTP-01 challenge.
    fn http01(&self, _host: &str, _token: &str) -> Option<String> {
        None
    }
    /// The profile wrapped in a CMS signature by the domain's certificate.
    fn sign_profile(&self, _domain: &str, _profile: &[u8]) -> Option<Vec<u8>> {
        None
    }
    /// Before an HTTP-01 answer is looked up: fetch one another node
    /// published (several nodes share a store).
    fn prepare_http01<'a>(
        &'a self,
        _host: &'a str,
        _token: &'a str,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// No ACME, no signing: `tls.mode = "off"`, and tests.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// State shared by every connection.
pub struct Shared {
    pub config: watch::Receiver<Arc<Config>>,
    pub hooks: Arc<dyn Hooks>,
    /// Per-user directories (`[provider.users_from]`), looked up before routing.
    pub directories: crate::directory::Registry,
    /// Where requests, connections and handshakes are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The accept loops' proof of life for systemd's watchdog.
    pub heartbeat: Arc<crate::systemd::Heartbeat>,
}

/// Per-connection facts the handler needs.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub secure: bool,
    pub requests: Arc<AtomicU32>,
}

/// Answers one request. Infallible: every failure becomes a 4xx reply.
/// The request's user's values from their provider's directory, if it has
/// one; `None` (the provider's defaults) for unknown addresses and for a
/// directory that fails or is slow (bounded by its `timeout_ms`).
async fn lookup_user(
    incoming: &routes::Incoming<'_>,
    config: &Config,
    directories: &crate::directory::Registry,
) -> Option<crate::model::UserValues> {
    if config.user_sources.is_empty() {
        return None;
    }
    let address = routes::request_address(incoming)?;
    let provider = config.provider_for_domain(address.domain())?;
    let directory = directories.for_provider(config, &provider.id)?;
    let (values, result) = directory.lookup(&address).await;
    tracing::debug!(address = %address, result = ?result, "user lookup");
    values
}

pub async fn handle<B>(
    req: Request<B>,
    conn: ConnInfo,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let config = shared.config.borrow().clone();
    let (parts, body) = req.into_parts();
    let host = request_host(&parts.headers, parts.uri.authority().map(|a| a.as_str()));

    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_body(body, &parts.headers)).await {
        // Not routed, but counted under the route the path names.
        Err(_) => Reply::error(StatusCode::REQUEST_TIMEOUT, "request took too long")
            .format(routes::format_of_path(parts.uri.path())),
        Ok(Err(reply)) => reply.format(routes::format_of_path(parts.uri.path())),
        Ok(Ok(body)) => {
            let incoming = routes::Incoming {
                method: &parts.method,
                host: host.as_deref(),
                path: parts.uri.path(),
                query: parts.uri.query(),
                body: &body,
                secure: conn.secure,
                accept_language: parts
                    .headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            };
            let now = time_of_day();
            let user = lookup_user(&incoming, &config, &shared.directories).await;
            if let (Some(token), Some(host)) = (
                incoming.path.strip_prefix("/.well-known/acme-challenge/"),
                incoming.host,
            ) {
                shared.hooks.prepare_http01(host, token).await;
            }
            let env = routes::Env {
                redirect_plain_http: config.tls.mode != TlsMode::Off,
                hooks: shared.hooks.as_ref(),
                time_of_day: &now,
                user: user.as_ref(),
            };
            routes::route(&incoming, &config, &env)
        }
    };

    let client = client_ip(
        conn.peer.ip(),
        &parts.headers,
        &config.server.trusted_proxies,
    );
    let host_for_log: String = host.as_deref().unwrap_or("-").chars().take(100).collect();
    tracing::info!(
        client = %client,
        method = %parts.method,
        host = ?host_for_log,
        path = ?path_for_log(truncate(parts.uri.path(), 200)),
        status = reply.status.as_u16(),
        domain = %reply.domain.as_deref().unwrap_or("-"),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    if let Some(address) = &reply.address {
        tracing::debug!(client = %client, address = %address, "request address");
    }
    count_request(
        &shared.metrics,
        reply.format,
        reply.status.as_u16(),
        conn.secure,
        parts.version,
        started.elapsed(),
    );

    let served = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let hsts = conn.secure
        && host
            .as_deref()
            .and_then(|h| routes::classify_host(h, &config))
            .is_some_and(|(kind, _, _)| kind != routes::HostKind::Apex);
    let mut response = reply.into_response();
    if hsts {
        // Only on our own names (autoconfig., autodiscover., mta-sts.), which
        // mailconfd always serves over HTTPS; never on the mail domain itself,
        // whose web site may live elsewhere. No includeSubDomains, no preload.
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
    }
    if served >= MAX_REQUESTS_PER_CONNECTION && parts.version < http::Version::HTTP_2 {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    Ok(response)
}

/// One request in `mailconfd_http_requests_total` and the latency histogram,
/// under the format of the route that answered (a fixed set of labels, never
/// client input).
fn count_request(
    metrics: &crate::metrics::Metrics,
    format: crate::metrics::Format,
    status: u16,
    secure: bool,
    version: http::Version,
    elapsed: std::time::Duration,
) {
    use crate::metrics::{FormatLabels, RequestLabels, StatusClass, Transport, Version};
    metrics
        .requests
        .get_or_create(&RequestLabels {
            format,
            status: StatusClass::of(status),
            transport: if secure {
                Transport::https
            } else {
                Transport::http
            },
            version: if version == http::Version::HTTP_2 {
                Version::h2
            } else {
                Version::h1
            },
        })
        .inc();
    metrics
        .request_seconds
        .get_or_create(&FormatLabels { format })
        .observe(elapsed.as_secs_f64());
}

/// The answer to a client over its request rate: 429 with a short reason;
/// over HTTP/1 the connection is closed after it (HTTP/2 gets a GOAWAY from
/// the server). Not logged per request: `server::limits` logs the client once
/// a minute.
pub fn too_many_requests(version: http::Version) -> Response<Full<Bytes>> {
    let mut response = Reply::error(StatusCode::TOO_MANY_REQUESTS, "too many requests")
        .header(header::RETRY_AFTER, "1")
        .into_response();
    if version < http::Version::HTTP_2 {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A path for the info log: a segment that holds an address (the JSON
/// autodiscover path `/autodiscover/autodiscover.json/v1.0/alice@example.org`)
/// keeps only its domain part. `@` may arrive percent-encoded.
fn path_for_log(path: &str) -> Cow<'_, str> {
    let has_at = |seg: &str| seg.contains('@') || seg.to_ascii_lowercase().contains("%40");
    if !path.split('/').any(has_at) {
        return Cow::Borrowed(path);
    }
    let redacted: Vec<String> = path
        .split('/')
        .map(|seg| {
            if !has_at(seg) {
                return seg.to_owned();
            }
            let lower = seg.to_ascii_lowercase();
            let domain_at = match (seg.rfind('@'), lower.rfind("%40")) {
                (Some(a), Some(b)) => (a + 1).max(b + 3),
                (Some(a), None) => a + 1,
                (None, Some(b)) => b + 3,
                (None, None) => seg.len(),
            };
            format!("[address]@{}", &seg[domain_at..])
        })
        .collect();
    Cow::Owned(redacted.join("/"))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Host header, or :authority for HTTP/2; only if it is visible ASCII.
fn request_host(headers: &HeaderMap, authority: Option<&str>) -> Option<String> {
    match headers.get(header::HOST) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => authority.map(str::to_owned),
    }
}

/// Reads at most MAX_BODY_BYTES; larger bodies get 413 before anything is parsed.
async fn read_body<B>(body: B, headers: &HeaderMap) -> Result<Bytes, Reply>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body larger than 8 KiB",
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "could not read request body",
        )),
    }
}

/// The client for the log: the peer, or behind a trusted proxy the rightmost
/// X-Forwarded-For entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    // Several header lines are one list in order (RFC 9110 §5.3): the last
    // line is the nearest proxy's, so read lines from the last one back.
    let lines: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    for value in lines.into_iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.split(',').rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
    }
    client
}

/// `HH:MM:SS.fffffff` UTC, the shape Exchange puts into POX error documents.
fn time_of_day() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:07}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since_epoch.subsec_nanos() / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| {
                let (a, l) = s.split_once('/').unwrap();
                IpNet {
                    addr: a.parse().unwrap(),
                    prefix_len: l.parse().unwrap(),
                }
            })
            .collect()
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
    }

    #[test]
    fn forwarded_for_lines_are_read_from_the_last_back() {
        let mut h = HeaderMap::new();
        // The client may forge the first line; the proxy appends the last.
        h.append("x-forwarded-for", "192.0.2.66".parse().unwrap());
        h.append("x-forwarded-for", "203.0.113.9, 10.0.0.3".parse().unwrap());
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Only proxies in the last line: go on to the line before it.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.3".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn addresses_in_paths_are_redacted_for_the_log() {
        assert_eq!(
            path_for_log("/autodiscover/autodiscover.json/v1.0/alice@example.org"),
            "/autodiscover/autodiscover.json/v1.0/[address]@example.org"
        );
        assert_eq!(
            path_for_log("/autodiscover/autodiscover.json/v1.0/bob%40Example.org"),
            "/autodiscover/autodiscover.json/v1.0/[address]@Example.org"
        );
        // A `/` in an address arrives as `%2F` (the router takes one segment
        // only), so the whole local part goes.
        assert_eq!(
            path_for_log("/autodiscover/autodiscover.json/v1.0/a%2Fb@example.org"),
            "/autodiscover/autodiscover.json/v1.0/[address]@example.org"
        );
        assert_eq!(path_for_log("/a@b@c/x"), "/[address]@c/x");
        assert_eq!(
            path_for_log("/mail/config-v1.1.xml"),
            "/mail/config-v1.1.xml"
        );
        assert_eq!(path_for_log("/%4"), "/%4");
    }

    #[test]
    fn time_of_day_has_exchange_shape() {
        let t = time_of_day();
        assert_eq!(t.len(), 16, "{t}");
        assert_eq!(&t[2..3], ":");
    }
}
