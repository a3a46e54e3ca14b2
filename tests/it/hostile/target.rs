//! The real `mailconfd` binary on loopback (HTTP and HTTPS, local CA), and
//! the legitimate client that must keep getting its document.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::CONFIG;

pub const NAME: &str = "autoconfig.example.com";
pub const DOC: &str = "/mail/config-v1.1.xml";

pub struct Target {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub log: PathBuf,
    config_path: PathBuf,
    /// The config without the `extra` given to `start_with`.
    base_config: String,
    /// Client config trusting the local CA, HTTP/1.1 by ALPN.
    pub tls: Arc<rustls::ClientConfig>,
    /// The same, offering h2 only.
    pub tls_h2: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Target {
    /// Starts the binary (`MAILCONFD_BIN`, else the one cargo built) with the
    /// default limits and waits (bounded) until HTTPS answers.
    pub async fn start() -> Target {
        Target::start_with("").await
    }

    /// Like `start`, with `extra` appended to the config (e.g. a `[limits]` table).
    pub async fn start_with(extra: &str) -> Target {
        raise_open_file_limit();
        let dir = tempfile::tempdir().unwrap();
        let (http, https) = (free_port(), free_port());
        let state = dir.path().join("state");
        let base_config = CONFIG
            .replace("trusted_proxies = [\"127.0.0.0/8\"]\n", "")
            .replace(
                "state_dir = \"/nonexistent-not-used-in-off-mode\"",
                &format!(
                    "state_dir = {:?}\nhttp_listen = [\"127.0.0.1:{http}\"]\nhttps_listen = [\"127.0.0.1:{https}\"]",
                    state.display().to_string()
                ),
            )
            .replace("mode = \"off\"", "mode = \"local\"");
        let config_path = dir.path().join("mailconfd.toml");
        std::fs::write(&config_path, base_config.clone() + extra).unwrap();
        let log = dir.path().join("log");
        let bin = std::env::var_os("MAILCONFD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mailconfd")));
        let mut child = Command::new(bin)
            .args(["serve", "-c"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let ca = state.join("local-ca.pem");
        let deadline = Instant::now() + Duration::from_secs(30);
        let pem = loop {
            if let Ok(pem) = std::fs::read(&ca) {
                break pem;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("local-ca.pem not written within 30 s\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = |alpn: &[u8]| {
            let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(c)
        };
        let target = Target {
            child,
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            https: format!("127.0.0.1:{https}").parse().unwrap(),
            log,
            config_path,
            base_config,
            tls: config(b"http/1.1"),
            tls_h2: config(b"h2"),
            _dir: dir,
        };
        let src = Ipv4Addr::new(127, 0, 0, 2);
        while Instant::now() < deadline {
            if target.get_https(src).await.is_ok() && target.get_http(src).await.is_ok() {
                return target;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mailconfd did not answer on HTTP and HTTPS within 30 s");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Lines the server has logged so far.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Lines per kind (level, module and message, without fields), most first.
    pub fn log_summary(&self) -> Vec<(usize, String)> {
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for line in self.log_text().lines() {
            // "<time>  LEVEL target: message key=value ..."
            let rest = line.split_once(' ').map_or(line, |(_, r)| r).trim_start();
            let kind = match rest.find('=') {
                Some(i) => rest[..i].rsplit_once(' ').map_or(rest, |(k, _)| k),
                None => rest,
            };
            *kinds.entry(kind.to_owned()).or_default() += 1;
        }
        let mut v: Vec<_> = kinds.into_iter().map(|(k, n)| (n, k)).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Rewrites the config with `extra` in place of `start_with`'s, sends
    /// SIGHUP and waits (bounded) until the server logs that it applied it.
    pub async fn reload_with(&self, extra: &str) {
        let applied = |log: &str| log.matches("config reloaded").count();
        let before = applied(&self.log_text());
        std::fs::write(&self.config_path, self.base_config.clone() + extra).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while applied(&self.log_text()) == before {
            assert!(
                Instant::now() < deadline,
                "reload not applied within 10 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Still running (not crashed).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The legitimate client over plain HTTP: connect from `src`, GET the
    /// Thunderbird document, check it. Returns how long it took.
    pub async fn get_http(&self, src: Ipv4Addr) -> Result<Duration, String> {
        let started = Instant::now();
        let attempt = async {
            let tcp = connect_from(src, self.http)
                .await
                .map_err(|e| e.to_string())?;
            fetch(tcp).await
        };
        legit(started, attempt).await
    }

    /// The same over HTTPS with a verified handshake.
    pub async fn get_https(&self, src: Ipv4Addr) -> Result<Duration, String> {
        let started = Instant::now();
        let attempt = async {
            let tcp = connect_from(src, self.https)
                .await
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(ServerName::try_from(NAME).unwrap(), tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            fetch(tls).await
        };
        legit(started, attempt).await
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn legit(
    started: Instant,
    attempt: impl std::future::Future<Output = Result<(), String>>,
) -> Result<Duration, String> {
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

async fn fetch<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Result<(), String> {
    let request = format!("GET {DOC} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // A TLS peer may close without close_notify after the response: keep what came.
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    if text.starts_with("HTTP/1.1 200") && text.contains("<clientConfig") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer: {:?}",
            text.chars().take(80).collect::<String>()
        ))
    }
}

/// A TCP connection from a chosen loopback address (each is its own client).
pub async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src.into(), 0))?;
    socket.connect(to).await
}

/// The `i`-th address of a /16 on loopback, e.g. `spread(20, i)` = 127.20.x.y.
pub fn spread(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, net, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// The attacks hold thousands of sockets: raise the soft open-file limit to
/// the hard one (CI shells often start at 1024). The server inherits it.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
