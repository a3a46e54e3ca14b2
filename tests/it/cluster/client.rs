//! What the cluster tests send to the nodes: TLS handshakes with SNI to one
//! node's address (the leaf's SHA-256 tells certificates apart), HTTPS
//! requests on a fresh or a kept-alive connection, and a scrape of a node's
//! /metrics. Everything trusts Pebble's root only.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Connect, handshake, one request: each capped so a stuck node fails the
/// request instead of hanging the test.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn connector(root: &Path) -> tokio_rustls::TlsConnector {
    mailconfd::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(
    ip: &str,
    port: u16,
    sni: &str,
    root: &Path,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let work = async {
        let tcp = TcpStream::connect((ip, port)).await?;
        connector(root).connect(name, tcp).await
    };
    tokio::time::timeout(IO_TIMEOUT, work)
        .await
        .map_err(|_| std::io::Error::other("connect and handshake timed out"))?
}

/// SHA-256 of a certificate, hex.
pub(crate) fn fingerprint(der: &CertificateDer<'_>) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprint of the leaf `ip`:`port` serves for `sni`, if the
/// handshake succeeds and the chain verifies against `root`.
pub(crate) async fn served(ip: &str, port: u16, sni: &str, root: &Path) -> Option<String> {
    let tls = connect(ip, port, sni, root).await.ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.clone();
    Some(fingerprint(&leaf))
}

/// One GET on a fresh connection (`Connection: close`); the status code.
pub(crate) async fn get_once(
    ip: &str,
    port: u16,
    host: &str,
    path: &str,
    root: &Path,
) -> Result<u16, String> {
    let work = async {
        let mut tls = connect(ip, port, host, root)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        status_of(&buf)
    };
    tokio::time::timeout(IO_TIMEOUT, work)
        .await
        .map_err(|_| "request timed out".to_owned())?
}

fn status_of(head: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(head);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))
}

/// A kept-alive HTTPS connection for the load run.
pub(crate) struct KeepAlive {
    stream: BufReader<TlsStream<TcpStream>>,
    request: Vec<u8>,
}

impl KeepAlive {
    pub(crate) async fn open(
        ip: &str,
        port: u16,
        host: &str,
        path: &str,
        root: &Path,
    ) -> std::io::Result<KeepAlive> {
        let tls = connect(ip, port, host, root).await?;
        Ok(KeepAlive {
            stream: BufReader::new(tls),
            request: format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        })
    }

    /// Sends the request once more; the status after reading the whole
    /// response (the server sends Content-Length for these documents).
    pub(crate) async fn get(&mut self) -> Result<u16, String> {
        let work = async {
            self.stream
                .get_mut()
                .write_all(&self.request)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut status = None;
            let mut length = None;
            loop {
                let mut line = String::new();
                let n = self
                    .stream
                    .read_line(&mut line)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("connection closed".to_owned());
                }
                if status.is_none() {
                    status = Some(status_of(line.as_bytes())?);
                } else if line == "\r\n" {
                    break;
                } else if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse::<usize>().ok();
                }
            }
            let length = length.ok_or("no Content-Length")?;
            let mut body = vec![0; length];
            self.stream
                .read_exact(&mut body)
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok(status.expect("set by the first line"))
        };
        tokio::time::timeout(IO_TIMEOUT, work)
            .await
            .map_err(|_| "request timed out".to_owned())?
    }
}

/// The sum of every sample of `series` (e.g.
/// `mailconfd_acme_orders_total{result="ok"}`, or a prefix of the labels
/// such as `mailconfd_tls_handshakes_total{result="acme_challenge",`) in a
/// node's /metrics; None
/// when the listener does not answer or has no such sample (a counter never
/// touched: read it with `unwrap_or(0.0)`).
pub(crate) fn metric(ip: &str, port: u16, series: &str) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let mut s =
        std::net::TcpStream::connect_timeout(&format!("{ip}:{port}").parse().unwrap(), IO_TIMEOUT)
            .ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    // `series` is a whole series (`name` or `name{labels}`), or ends in
    // `{` or `,` to sum every series that starts so.
    let partial = series.ends_with('{') || series.ends_with(',');
    let samples: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(series)?;
            if partial {
                rest.rsplit_once("} ").map(|(_, v)| v)
            } else {
                rest.strip_prefix(' ')
            }
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// Figures of one load run.
pub(crate) struct LoadFigures {
    pub requests: usize,
    pub failed: usize,
    pub wall: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl std::fmt::Display for LoadFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests ({} failed) in {:.2?}: {:.0} req/s, p50 {:.2?}, p99 {:.2?}",
            self.requests,
            self.failed,
            self.wall,
            self.requests as f64 / self.wall.as_secs_f64(),
            self.p50,
            self.p99
        )
    }
}

/// Where a load run sends its GETs.
#[derive(Clone)]
pub(crate) struct Target {
    pub ip: String,
    pub port: u16,
    /// SNI and Host.
    pub host: String,
    pub path: String,
    pub root: std::path::PathBuf,
}

/// `conns` connections to the target, each sending `per_conn` requests;
/// `fresh` opens a new TLS connection for every request (the certificate
/// lookup at every handshake), otherwise one kept-alive connection each.
pub(crate) async fn load(
    target: &Target,
    conns: usize,
    per_conn: usize,
    fresh: bool,
) -> LoadFigures {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_conn);
            let mut failed = 0;
            let mut conn = None;
            for _ in 0..per_conn {
                let sent = Instant::now();
                let ok = if fresh {
                    get_once(&t.ip, t.port, &t.host, &t.path, &t.root).await == Ok(200)
                } else {
                    if conn.is_none() {
                        conn = KeepAlive::open(&t.ip, t.port, &t.host, &t.path, &t.root)
                            .await
                            .ok();
                    }
                    match conn.as_mut() {
                        Some(c) => {
                            let ok = c.get().await == Ok(200);
                            if !ok {
                                conn = None;
                            }
                            ok
                        }
                        None => false,
                    }
                };
                if ok {
                    times.push(sent.elapsed());
                } else {
                    failed += 1;
                }
            }
            (times, failed)
        }));
    }
    let mut times = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (t, f) = task.await.unwrap();
        times.extend(t);
        failed += f;
    }
    let wall = started.elapsed();
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    LoadFigures {
        requests: times.len() + failed,
        failed,
        wall,
        p50: at(0.5),
        p99: at(0.99),
    }
}
