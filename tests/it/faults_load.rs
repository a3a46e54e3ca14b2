//! Issue 11 under client load, with the local CA (no Pebble needed): a burst
//! of signed `/mobileconfig` answers next to cheap requests (finding 6), and a
//! reload every second while clients fetch documents.
//!
//! Figures go to stderr (`--nocapture`), never into asserts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::acme::{InProcess, WAIT_TIMEOUT, init_log, until};

/// One provider on `domain`, local CA, RSA keys (the slow signatures).
fn local_config(state_dir: &Path, http: u16, https: u16, name: &str, imap: &str) -> String {
    format!(
        r#"
[server]
http_listen = ["127.0.0.1:{http}"]
https_listen = ["127.0.0.1:{https}"]
state_dir = "{state}"

[tls]
mode = "local"
key_type = "rsa-2048"

# Load from one loopback client, far beyond one real client's rate (the
# per-client limits are tested in tests/it/hostile).
[limits]
connections_per_second = 1000000
connection_burst = 1000000
requests_per_second = 1000000
request_burst = 1000000

[[provider]]
id = "load.test"
name = "{name}"
domains = ["load.test"]
  [[provider.server]]
  type = "imap"
  host = "{imap}"
  [[provider.server]]
  type = "smtp"
  host = "smtp.load.test"
  [provider.mta_sts]
  mode = "enforce"
  mx = ["mx.load.test"]
  max_age = 86400
"#,
        state = state_dir.display(),
    )
}

/// A keep-alive HTTP/1.1 connection over TLS, trusting `root` only; opened
/// again when the server asks to close it (after 1000 requests).
struct Conn {
    tls: TlsStream<TcpStream>,
    host: String,
    port: u16,
    root: PathBuf,
    closing: bool,
}

impl Conn {
    async fn open(port: u16, host: &str, root: &Path) -> std::io::Result<Conn> {
        mailconfd::tls::install_provider();
        let mut roots = rustls::RootCertStore::empty();
        // The local CA's file appears when the daemon has started.
        let certs = CertificateDer::pem_file_iter(root).map_err(std::io::Error::other)?;
        for cert in certs {
            roots.add(cert.map_err(std::io::Error::other)?).unwrap();
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let tls = connector.connect(name, tcp).await?;
        Ok(Conn {
            tls,
            host: host.to_owned(),
            port,
            root: root.to_owned(),
            closing: false,
        })
    }

    /// GET `path`; the status and body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        if self.closing {
            *self = Conn::open(self.port, &self.host.clone(), &self.root.clone()).await?;
        }
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.tls.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if self.tls.read(&mut byte).await? == 0 {
                return Err(std::io::Error::other("closed mid-response"));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other("no content-length"))?;
        self.closing = head.contains("\r\nconnection: close");
        let mut body = vec![0u8; length];
        self.tls.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

struct Local {
    _dir: tempfile::TempDir,
    config_path: PathBuf,
    state_dir: PathBuf,
    https: u16,
    http: u16,
    daemon: InProcess,
}

impl Local {
    async fn start() -> Local {
        init_log();
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let config_path = dir.path().join("mailconfd.toml");
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http_port, https_port) = (
            http.local_addr().unwrap().port(),
            https.local_addr().unwrap().port(),
        );
        std::fs::write(
            &config_path,
            local_config(
                &state_dir,
                http_port,
                https_port,
                "Alpha Mail",
                "imap-alpha.load.test",
            ),
        )
        .unwrap();
        let daemon = InProcess::start_at(&config_path, http, https);
        let local = Local {
            _dir: dir,
            config_path,
            state_dir,
            https: https_port,
            http: http_port,
            daemon,
        };
        until("the local CA's certificate", WAIT_TIMEOUT, || async {
            local.conn("mta-sts.load.test").await.ok()
        })
        .await;
        local
    }

    fn root(&self) -> PathBuf {
        mailconfd::certs::local::ca_file(&self.state_dir)
    }

    async fn conn(&self, host: &str) -> std::io::Result<Conn> {
        Conn::open(self.https, host, &self.root()).await
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `n` sequential MTA-STS requests on one connection: their latencies, sorted.
async fn probe(local: &Local, n: usize) -> Vec<Duration> {
    let mut conn = local.conn("mta-sts.load.test").await.unwrap();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (status, body) = conn.get("/.well-known/mta-sts.txt").await.unwrap();
        times.push(started.elapsed());
        assert_eq!(status, 200);
        assert!(body.starts_with(b"version: STSv1"));
    }
    times.sort();
    times
}

fn summary(times: &[Duration]) -> String {
    format!(
        "p50 {:?}, p99 {:?}, max {:?}",
        percentile(times, 0.5),
        percentile(times, 0.99),
        times[times.len() - 1]
    )
}

/// Issue 11 finding 6: CMS signing ran on the async workers, so a burst of
/// `/mobileconfig` requests (RSA signatures) queued every other request
/// behind it. Figure: MTA-STS latency alone and during a burst from 32
/// keep-alive connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_signing_burst_figure() {
    const PROBES: usize = 200;
    const BURST_CONNECTIONS: usize = 32;
    let local = Local::start().await;
    let alone = probe(&local, PROBES).await;

    let stop = Arc::new(AtomicBool::new(false));
    let signed = Arc::new(AtomicUsize::new(0));
    let mut burst = Vec::new();
    for _ in 0..BURST_CONNECTIONS {
        let mut conn = local.conn("autoconfig.load.test").await.unwrap();
        let (stop, signed) = (stop.clone(), signed.clone());
        burst.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = conn
                    .get("/mobileconfig?emailaddress=alice%40load.test")
                    .await
                    .unwrap();
                assert_eq!(status, 200);
                assert_eq!(body[0], 0x30, "a DER SignedData");
                signed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the burst build up before probing.
    until("the burst running", WAIT_TIMEOUT, || async {
        (signed.load(Ordering::Relaxed) >= BURST_CONNECTIONS).then_some(())
    })
    .await;
    let burst_started = Instant::now();
    let before = signed.load(Ordering::Relaxed);
    let loaded = probe(&local, PROBES).await;
    let rate =
        (signed.load(Ordering::Relaxed) - before) as f64 / burst_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in burst {
        task.await.unwrap();
    }
    eprintln!(
        "FIGURE signing burst (rsa-2048, {BURST_CONNECTIONS} connections, {rate:.0} signed profiles/s): \
         mta-sts alone {}; during the burst {}",
        summary(&alone),
        summary(&loaded)
    );
    local.daemon.stop().await;
}

/// The fault "a config reload every second while clients fetch documents":
/// no failed request, and no answer mixing the old and the new config (the
/// provider's name and its IMAP host always belong together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_every_second_under_client_load() {
    const RELOADS: usize = 8;
    let local = Local::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut conn = local.conn("autoconfig.load.test").await.unwrap();
        let (stop, answered) = (stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = [0usize; 2];
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = conn
                    .get("/mail/config-v1.1.xml?emailaddress=alice%40load.test")
                    .await
                    .unwrap();
                assert_eq!(status, 200);
                let text = String::from_utf8_lossy(&body);
                let alpha = text.contains("Alpha Mail") && text.contains("imap-alpha.load.test");
                let beta = text.contains("Beta Mail") && text.contains("imap-beta.load.test");
                assert!(alpha != beta, "a mixed or unknown answer: {text}");
                seen[usize::from(beta)] += 1;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    let started = Instant::now();
    for i in 0..RELOADS {
        let (name, imap) = if i % 2 == 0 {
            ("Beta Mail", "imap-beta.load.test")
        } else {
            ("Alpha Mail", "imap-alpha.load.test")
        };
        std::fs::write(
            &local.config_path,
            local_config(&local.state_dir, local.http, local.https, name, imap),
        )
        .unwrap();
        local.daemon.reload().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = [0usize; 2];
    for c in clients {
        let s = c.await.unwrap();
        seen[0] += s[0];
        seen[1] += s[1];
    }
    eprintln!(
        "FIGURE {RELOADS} reloads in {:?}: {} answers, none failed or mixed ({} old-style, {} new-style)",
        started.elapsed(),
        answered.load(Ordering::Relaxed),
        seen[0],
        seen[1]
    );
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both configs were served: {seen:?}"
    );
    local.daemon.stop().await;
}
