//! TLS and ACME end to end against a real test CA (Pebble, see `pebble.rs`):
//! issuance through TLS-ALPN-01 and HTTP-01, every document over HTTPS with
//! SNI and verified against Pebble's root, unknown and missing SNI, restart,
//! the CA going away, kill -9 mid-issuance, reloads that add and remove
//! domains, and the real Thunderbird (tb-probe) against the issued certificate.
//!
//! Each test has its own Pebble, state directory and ports; everything is on
//! 127.0.0.1; every wait has a deadline.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailconfd::app::{self, Bound, RunOptions};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pebble::{Pebble, PebbleOptions, free_tcp_port};
use crate::support::{PRIVILEGED_PORTS, require_program};

/// Pebble with NOSLEEP issues in about a second; leave room for a loaded CI box.
pub(crate) const ISSUE_TIMEOUT: Duration = Duration::from_secs(45);
/// Anything else we wait for (a reload, a status change, an exit).
pub(crate) const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
pub(crate) const POLL: Duration = Duration::from_millis(50);
const ADDRESS: &str = "alice@example.test";

pub(crate) fn names(domain: &str) -> Vec<String> {
    ["autoconfig", "autodiscover", "mta-sts"]
        .iter()
        .map(|p| format!("{p}.{domain}"))
        .collect()
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub(crate) async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------- the world

/// Everything the in-process daemons of this test binary logged. Tests run in
/// parallel, so assertions must look for lines only their own test produces
/// (e.g. carrying its port).
static LOG: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

struct TeeWriter;

impl std::io::Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        LOG.lock().unwrap().push_str(&text);
        print!("{text}"); // captured by libtest, shown for a failing test
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The in-process daemons' log: shown by libtest when a test fails, and kept
/// in `LOG` for assertions.
pub(crate) fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(|| TeeWriter)
        .try_init();
}

pub(crate) fn in_process_log() -> String {
    LOG.lock().unwrap().clone()
}

/// One test's CA, config file and state directory, and the daemon's ports.
pub(crate) struct World {
    pub(crate) pebble: Pebble,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) http_port: u16,
    pub(crate) https_port: u16,
    pub(crate) challenge: &'static str,
}

impl World {
    /// Starts Pebble pointed at `http_port`/`https_port`.
    pub(crate) async fn new(challenge: &'static str, http_port: u16, https_port: u16) -> World {
        World::new_with(challenge, http_port, https_port, PebbleOptions::default()).await
    }

    /// `new` with a CA started with `options`.
    pub(crate) async fn new_with(
        challenge: &'static str,
        http_port: u16,
        https_port: u16,
        options: PebbleOptions,
    ) -> World {
        init_log();
        let pebble =
            tokio::task::spawn_blocking(move || Pebble::start_with(http_port, https_port, options))
                .await
                .unwrap();
        World::with_pebble(pebble, challenge, http_port, https_port)
    }

    /// A world around a CA the caller started (e.g. with its validator
    /// pointed elsewhere than the daemon's ports).
    pub(crate) fn with_pebble(
        pebble: Pebble,
        challenge: &'static str,
        http_port: u16,
        https_port: u16,
    ) -> World {
        init_log();
        World {
            pebble,
            dir: tempfile::tempdir().unwrap(),
            http_port,
            https_port,
            challenge,
        }
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("mailconfd.toml")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes the config: one provider serving `domains`, with MTA-STS.
    pub(crate) fn write_config(&self, domains: &[&str], max_concurrent_orders: usize) {
        let text = self.config_text(&self.state_dir(), domains, max_concurrent_orders, "");
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// The config `write_config` writes, with its own `state_dir` and extra
    /// lines for the `[acme]` table (e.g. EAB).
    pub(crate) fn config_text(
        &self,
        state_dir: &Path,
        domains: &[&str],
        max_concurrent_orders: usize,
        acme_extra: &str,
    ) -> String {
        let list = domains
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"
[server]
http_listen = ["127.0.0.1:{http}"]
https_listen = ["127.0.0.1:{https}"]
state_dir = "{state}"

[tls]
mode = "acme"

[acme]
directory = "{directory}"
ca_file = "{ca}"
challenge = "{challenge}"
contact = ["mailto:hostmaster@example.test"]
max_concurrent_orders = {max_concurrent_orders}
{acme_extra}

# The tests hammer handshakes from 127.0.0.1 back to back, far beyond one
# real client's rate (the per-client limits are tested in tests/it/hostile).
[limits]
connections_per_second = 1000000
connection_burst = 1000000
requests_per_second = 1000000
request_burst = 1000000

[[provider]]
id = "example.test"
name = "Example Test Mail"
short_name = "Example"
domains = [{list}]
  [[provider.server]]
  type = "imap"
  host = "imap.example.test"
  port = 993
  security = "tls"
  auth = "password-cleartext"
  username = "%EMAILADDRESS%"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.test"
  port = 465
  security = "tls"
  auth = "password-cleartext"
  username = "%EMAILADDRESS%"
  [provider.mta_sts]
  mode = "enforce"
  mx = ["mx.example.test"]
  max_age = 86400
"#,
            http = self.http_port,
            https = self.https_port,
            state = state_dir.display(),
            directory = self.pebble.directory_url,
            ca = self.pebble.api_ca.display(),
            challenge = self.challenge,
        )
    }

    pub(crate) async fn handshake(
        &self,
        sni: Option<&str>,
    ) -> std::io::Result<Vec<CertificateDer<'static>>> {
        handshake(self.https_port, sni, &self.pebble.root).await
    }

    /// Waits until every name of `domain` is served with a certificate that
    /// verifies against Pebble's root; returns the leaf.
    pub(crate) async fn wait_served(
        &self,
        domain: &str,
        timeout: Duration,
    ) -> CertificateDer<'static> {
        let mut leaf = None;
        for name in names(domain) {
            let chain = until(&format!("certificate for {name}"), timeout, || async {
                self.handshake(Some(&name)).await.ok()
            })
            .await;
            leaf.get_or_insert(chain[0].clone());
        }
        leaf.unwrap()
    }

    /// Waits until no name of `domain` gets a certificate any more.
    pub(crate) async fn wait_not_served(&self, domain: &str) {
        for name in names(domain) {
            until(
                &format!("{name} no longer served"),
                WAIT_TIMEOUT,
                || async {
                    let r = self.handshake(Some(&name)).await;
                    r.is_err().then(|| assert_refused(r, &name))
                },
            )
            .await;
        }
    }

    pub(crate) async fn fetch(&self, host: &str, path: &str, post: Option<&[u8]>) -> Fetched {
        fetch(self.https_port, host, path, &self.pebble.root, post).await
    }

    /// `certs.json`, the report the daemon keeps for `mailconfd certs`.
    pub(crate) fn report(&self) -> Vec<serde_json::Value> {
        std::fs::read(self.state_dir().join("certs.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn report_row(&self, domain: &str) -> Option<serde_json::Value> {
        self.report()
            .into_iter()
            .find(|r| r["domain"].as_str() == Some(domain))
    }

    /// Waits until certs.json shows `domain` in `state`. The report is
    /// written after the certificate is served, so a test that has just
    /// seen the new certificate may still read the old row.
    pub(crate) async fn wait_reported(&self, domain: &str, state: &str) -> serde_json::Value {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let row = self.report_row(domain);
            match &row {
                Some(found) if found["state"] == state => return found.clone(),
                _ => assert!(
                    Instant::now() < deadline,
                    "{domain} not {state} in certs.json within {WAIT_TIMEOUT:?}: {row:?}"
                ),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every document of `domain`, over HTTPS with SNI, checked.
    pub(crate) async fn check_documents(&self, domain: &str) {
        check_documents(self, domain).await;
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- pebble log ---\n{}", self.pebble.log());
            for log in ["daemon.log", "first.log", "second.log"] {
                if let Ok(text) = std::fs::read_to_string(self.dir.path().join(log)) {
                    eprintln!("--- {log} ---\n{text}");
                }
            }
        }
    }
}

/// Both listeners of an in-process daemon, bound before Pebble starts so that
/// its validator can be pointed at their ports.
pub(crate) async fn bind_pair() -> (TcpListener, TcpListener) {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (http, https)
}

/// Binds 127.0.0.1:`port` again after a daemon let it go. Under a loaded
/// parallel test run another test's socket can hold the number for a
/// moment (it was an ephemeral port), so this retries until a deadline.
pub(crate) async fn rebind(port: u16) -> TcpListener {
    until(&format!("port {port} free again"), WAIT_TIMEOUT, || async {
        TcpListener::bind(("127.0.0.1", port)).await.ok()
    })
    .await
}

pub(crate) fn port(l: &TcpListener) -> u16 {
    l.local_addr().unwrap().port()
}

/// `app::run` in this process, as `mailconfd serve` runs it.
pub(crate) struct InProcess {
    shutdown: CancellationToken,
    reload: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub(crate) fn start(world: &World, http: TcpListener, https: TcpListener) -> InProcess {
        InProcess::start_at(&world.config_path(), http, https)
    }

    /// A daemon from the config file at `config_path`.
    pub(crate) fn start_at(config_path: &Path, http: TcpListener, https: TcpListener) -> InProcess {
        let config = mailconfd::config::load(config_path).unwrap();
        let shutdown = CancellationToken::new();
        let (reload, reload_rx) = mpsc::channel(1);
        let task = tokio::spawn(app::run(RunOptions {
            config_path: config_path.to_owned(),
            config,
            bound: Bound {
                http: vec![http],
                https: vec![https],
            },
            shutdown: shutdown.clone(),
            reload: reload_rx,
        }));
        InProcess {
            shutdown,
            reload,
            task,
        }
    }

    pub(crate) async fn reload(&self) {
        self.reload.send(()).await.unwrap();
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT_TIMEOUT, self.task)
            .await
            .expect("daemon stops within the timeout")
            .unwrap()
            .unwrap();
    }
}

// ---------------------------------------------------------------- clients

/// A TLS handshake to 127.0.0.1:`port` trusting only `root`; `sni` None sends
/// no server_name (rustls omits it for an IP address). Returns the chain.
pub(crate) async fn handshake(
    port: u16,
    sni: Option<&str>,
    root: &Path,
) -> std::io::Result<Vec<CertificateDer<'static>>> {
    handshake_alpn(port, sni, root, b"http/1.1").await
}

/// `handshake` offering exactly one ALPN protocol.
async fn handshake_alpn(
    port: u16,
    sni: Option<&str>,
    root: &Path,
    alpn: &[u8],
) -> std::io::Result<Vec<CertificateDer<'static>>> {
    mailconfd::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = match sni {
        Some(name) => ServerName::try_from(name.to_owned()).unwrap(),
        None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
    Ok(tls.get_ref().1.peer_certificates().unwrap().to_vec())
}

/// The handshake failed because the server refused it (a TLS alert), not
/// because we rejected a certificate it sent.
pub(crate) fn assert_refused(result: std::io::Result<Vec<CertificateDer<'static>>>, what: &str) {
    let err = result.expect_err(what);
    let tls_error = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(tls_error, Some(rustls::Error::AlertReceived(_))),
        "{what}: expected a TLS alert from the server, got {err:?}"
    );
}

pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
}

impl Fetched {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTPS request with curl: SNI and Host = `host`, resolved to 127.0.0.1,
/// verified against `root` only.
pub(crate) async fn fetch(
    port: u16,
    host: &str,
    path: &str,
    root: &Path,
    post: Option<&[u8]>,
) -> Fetched {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(root)
        .args(["-w", "%{stderr}%{http_code} %{content_type}"]);
    if post.is_some() {
        cmd.args(["-H", "Content-Type: text/xml; charset=utf-8"])
            .args(["--data-binary", "@-"]);
    }
    cmd.arg(format!("https://{host}:{port}{path}"))
        .stdin(if post.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let body = post.map(<[u8]>::to_vec);
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("curl runs");
        if let Some(body) = body {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(&body).unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let meta = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl https://{host}{path}: {meta}");
    let (status, content_type) = meta.trim().split_once(' ').unwrap_or((meta.trim(), ""));
    Fetched {
        status: status.parse().unwrap_or_else(|_| panic!("curl: {meta}")),
        content_type: content_type.to_owned(),
        body: out.stdout,
    }
}

fn pox_request(address: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>{address}</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>
</Autodiscover>"#
    )
    .into_bytes()
}

async fn check_documents(world: &World, domain: &str) {
    let address = format!("alice@{domain}");
    let encoded = address.replace('@', "%40");
    let ac = format!("autoconfig.{domain}");
    let ad = format!("autodiscover.{domain}");

    let tb = world
        .fetch(
            &ac,
            &format!("/mail/config-v1.1.xml?emailaddress={encoded}"),
            None,
        )
        .await;
    assert_eq!(tb.status, 200, "thunderbird: {}", tb.text());
    assert!(
        tb.content_type.starts_with("text/xml"),
        "{}",
        tb.content_type
    );
    assert!(tb.text().contains("<hostname>imap.example.test</hostname>"));
    assert!(tb.text().contains("<port>465</port>"));

    let pox = world
        .fetch(
            &ad,
            "/autodiscover/autodiscover.xml",
            Some(&pox_request(&address)),
        )
        .await;
    assert_eq!(pox.status, 200, "POX: {}", pox.text());
    assert!(
        pox.text().contains("<Server>imap.example.test</Server>"),
        "{}",
        pox.text()
    );

    let json = world
        .fetch(
            &ad,
            &format!("/autodiscover/autodiscover.json/v1.0/{address}?Protocol=AutodiscoverV1"),
            None,
        )
        .await;
    assert_eq!(json.status, 200, "autodiscover.json: {}", json.text());
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["Protocol"], "AutodiscoverV1");
    assert_eq!(
        v["Url"],
        format!("https://autodiscover.{domain}/autodiscover/autodiscover.xml")
    );

    let sts = world
        .fetch(
            &format!("mta-sts.{domain}"),
            "/.well-known/mta-sts.txt",
            None,
        )
        .await;
    assert_eq!(sts.status, 200, "mta-sts: {}", sts.text());
    assert!(sts.text().contains("version: STSv1"), "{}", sts.text());
    assert!(sts.text().contains("mx: mx.example.test"), "{}", sts.text());

    let profile = world
        .fetch(&ac, &format!("/mobileconfig?emailaddress={encoded}"), None)
        .await;
    assert_eq!(profile.status, 200, "mobileconfig: {}", profile.text());
    let signed = world.dir.path().join(format!("{domain}.mobileconfig"));
    std::fs::write(&signed, &profile.body).unwrap();
    // CAfile = Pebble's root only: the intermediate must come from the CMS itself.
    let out = Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .arg("-in")
        .arg(&signed)
        .arg("-CAfile")
        .arg(&world.pebble.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let payload = String::from_utf8_lossy(&out.stdout);
    assert!(payload.contains("imap.example.test"), "{payload}");
    assert!(payload.contains(&address), "{payload}");
}

// ---------------------------------------------------------------- the real binary

/// `mailconfd serve` as a child process, its log in a file; killed on drop.
pub(crate) struct Binary {
    child: Option<Child>,
    log: PathBuf,
}

impl Binary {
    pub(crate) fn start(world: &World, log_name: &str) -> Binary {
        let log = world.dir.path().join(log_name);
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["serve", "-c"])
            .arg(world.config_path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Binary {
            child: Some(child),
            log,
        }
    }

    pub(crate) fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// kill -9 and reap.
    pub(crate) fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM; must exit 0 in time.
    pub(crate) async fn stop(self) {
        let log = self.log.clone();
        let status = self.terminate().await;
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert_eq!(status.code(), Some(0), "{log}");
    }

    /// SIGTERM; the exit status, which must come in time.
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        until("exit after SIGTERM", WAIT_TIMEOUT, || {
            let s = child.try_wait().unwrap();
            async move { s }
        })
        .await
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `mailconfd certs -c FILE`.
pub(crate) fn certs_command(world: &World) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["certs", "-c"])
        .arg(world.config_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mailconfd certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------- scenarios

/// Pebble and the command-line clients every test here runs.
pub(crate) fn ca_tools() -> bool {
    require_program("pebble", "pebble")
        && require_program("pebble-challtestsrv", "pebble")
        && require_program("curl", "curl")
        && require_program("openssl", "openssl")
}

async fn issue_and_serve_everything(challenge: &'static str) {
    let (http, https) = bind_pair().await;
    let world = World::new(challenge, port(&http), port(&https)).await;
    world.write_config(&["example.test"], 5);
    let started = Instant::now();
    let daemon = InProcess::start(&world, http, https);
    world.wait_served("example.test", ISSUE_TIMEOUT).await;
    eprintln!("{challenge}: issued in {:?}", started.elapsed());
    // Validated through the configured challenge: HTTP-01 requests reached
    // our port 80 stand-in for every name, or none did.
    let log = in_process_log();
    for name in names("example.test") {
        let http01 = format!(
            "host=\"{name}:{}\" path=\"/.well-known/acme-challenge/",
            world.http_port
        );
        let answered = log
            .lines()
            .any(|l| l.contains(&http01) && l.contains("status=200"));
        assert_eq!(answered, challenge == "http-01", "{name}: {log}");
    }
    world.check_documents("example.test").await;
    world.wait_reported("example.test", "valid").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_and_every_document_verifies() {
    if !ca_tools() {
        return;
    }
    issue_and_serve_everything("tls-alpn-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_issues_and_every_document_verifies() {
    if !ca_tools() {
        return;
    }
    issue_and_serve_everything("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_missing_sni_gets_no_certificate() {
    if !ca_tools() {
        return;
    }
    let (http, https) = bind_pair().await;
    let world = World::new("tls-alpn-01", port(&http), port(&https)).await;
    world.write_config(&["example.test"], 5);
    let daemon = InProcess::start(&world, http, https);
    world.wait_served("example.test", ISSUE_TIMEOUT).await;
    for sni in [
        "autoconfig.unknown.test",
        "www.example.test",
        "example.test",
        "imap.example.test",
    ] {
        assert_refused(world.handshake(Some(sni)).await, sni);
    }
    assert_refused(world.handshake(None).await, "no SNI");
    // A validation-style hello (ALPN acme-tls/1 only) outside an order gets
    // nothing either: neither a stale challenge nor the real certificate.
    assert_refused(
        handshake_alpn(
            world.https_port,
            Some("autoconfig.example.test"),
            &world.pebble.root,
            b"acme-tls/1",
        )
        .await,
        "acme-tls/1 with no order in flight",
    );
    assert!(
        world
            .handshake(Some("autoconfig.example.test"))
            .await
            .is_ok()
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_the_stored_certificate() {
    if !ca_tools() {
        return;
    }
    let (http, https) = bind_pair().await;
    let (http_port, https_port) = (port(&http), port(&https));
    let world = World::new("tls-alpn-01", http_port, https_port).await;
    world.write_config(&["example.test"], 5);
    let daemon = InProcess::start(&world, http, https);
    let first = world.wait_served("example.test", ISSUE_TIMEOUT).await;
    let orders = world.pebble.orders();
    assert_eq!(orders, 1, "{}", world.pebble.log());
    daemon.stop().await;

    let (http, https) = (rebind(http_port).await, rebind(https_port).await);
    let daemon = InProcess::start(&world, http, https);
    // Served at once: the first handshake after start, no waiting for the CA.
    let chain = world
        .handshake(Some("autoconfig.example.test"))
        .await
        .expect("stored certificate served at once after restart");
    assert_eq!(chain[0], first, "the same certificate");
    // The manager's first pass runs at start; give it a moment to (wrongly) order.
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet_until {
        assert_eq!(world.pebble.orders(), orders, "a new order after restart");
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        world.handshake(Some("mta-sts.example.test")).await.unwrap()[0],
        first
    );
    world.wait_reported("example.test", "valid").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_domains() {
    if !ca_tools() {
        return;
    }
    let (http, https) = bind_pair().await;
    let world = World::new("tls-alpn-01", port(&http), port(&https)).await;
    world.write_config(&["example.test", "other.test"], 5);
    let daemon = InProcess::start(&world, http, https);
    world.wait_served("example.test", ISSUE_TIMEOUT).await;
    world.wait_served("other.test", ISSUE_TIMEOUT).await;
    assert_refused(
        world.handshake(Some("autoconfig.third.test")).await,
        "before the reload",
    );

    world.write_config(&["example.test", "other.test", "third.test"], 5);
    daemon.reload().await;
    world.wait_served("third.test", ISSUE_TIMEOUT).await;
    world.check_documents("third.test").await;

    world.write_config(&["example.test", "third.test"], 5);
    daemon.reload().await;
    world.wait_not_served("other.test").await;
    until("other.test gone from certs.json", WAIT_TIMEOUT, || async {
        let report = world.report();
        (report.len() == 2 && world.report_row("other.test").is_none()).then_some(())
    })
    .await;
    world.wait_served("example.test", Duration::ZERO).await;
    world.wait_served("third.test", Duration::ZERO).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_gone_mid_run_backs_off_and_keeps_serving() {
    if !ca_tools() {
        return;
    }
    let (http_port, https_port) = (free_tcp_port(), free_tcp_port());
    let mut world = World::new("tls-alpn-01", http_port, https_port).await;
    world.write_config(&["example.test"], 5);
    let daemon = Binary::start(&world, "daemon.log");
    let leaf = world.wait_served("example.test", ISSUE_TIMEOUT).await;

    world.pebble.kill_ca();
    world.write_config(&["example.test", "other.test"], 5);
    daemon.signal("HUP");
    let row = until("other.test failing in certs.json", WAIT_TIMEOUT, || async {
        world
            .report_row("other.test")
            .filter(|r| r["state"] == "failing")
    })
    .await;
    let now = mailconfd::certs::unix_now();
    let next = row["next_attempt"].as_i64().expect("a next attempt");
    assert!(
        next > now + 30,
        "backing off: next attempt {next}, now {now}"
    );
    let error = row["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("Connection refused"), "{row}");

    let table = certs_command(&world);
    let (_, other) = table.split_once("\nother.test\n").expect(&table);
    assert!(other.contains("state:       failing"), "{table}");
    assert!(other.contains("last error:"), "{table}");
    assert!(other.contains("next try:"), "{table}");

    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("certificate order failed"))
        .unwrap_or_else(|| panic!("no failure logged: {log}"));
    assert!(line.contains("other.test"), "{line}");
    assert!(line.contains("error="), "{line}");
    assert!(line.contains("Connection refused"), "the reason: {line}");

    // The old domain keeps its certificate.
    assert_eq!(
        world.wait_served("example.test", Duration::ZERO).await,
        leaf
    );
    assert_refused(
        world.handshake(Some("autoconfig.other.test")).await,
        "no certificate for the new domain",
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_issuance_then_restart_recovers() {
    if !ca_tools() {
        return;
    }
    let domains = [
        "d1.test", "d2.test", "d3.test", "d4.test", "d5.test", "d6.test",
    ];
    let (http_port, https_port) = (free_tcp_port(), free_tcp_port());
    let world = World::new("tls-alpn-01", http_port, https_port).await;
    world.write_config(&domains, 3);
    let daemon = Binary::start(&world, "first.log");
    until("orders in flight", WAIT_TIMEOUT, || async {
        (daemon.log().matches("ordering certificate").count() >= 3).then_some(())
    })
    .await;
    daemon.kill9();
    let first = std::fs::read_to_string(world.dir.path().join("first.log")).unwrap();
    let deployed_before_kill = first.matches("certificate deployed").count();
    assert!(
        deployed_before_kill < domains.len(),
        "killed too late, nothing was in flight: {first}"
    );

    let daemon = Binary::start(&world, "second.log");
    for d in domains {
        world.wait_served(d, ISSUE_TIMEOUT).await;
    }
    until("every domain valid in certs.json", WAIT_TIMEOUT, || async {
        let report = world.report();
        (report.len() == domains.len() && report.iter().all(|r| r["state"] == "valid"))
            .then_some(())
    })
    .await;
    let log = daemon.log();
    // What was stored before the kill is served from the store at once (a
    // certificate may have been stored just before its "deployed" line).
    let restored: usize = log
        .split("stored certificates deployed deployed=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        restored >= deployed_before_kill && restored < domains.len(),
        "{restored} restored, {deployed_before_kill} deployed before the kill: {log}"
    );
    // (Tests run as root, so the "running as root" advice is expected.)
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains("ERROR") || l.contains("WARN")) && !l.contains("mailconfd::privileges")
        })
        .collect();
    assert!(problems.is_empty(), "{log}");
    daemon.stop().await;
    // With the daemon gone, `certs` opens the database itself: nothing corrupt.
    let table = certs_command(&world);
    assert_eq!(
        table.matches("state:       valid").count(),
        domains.len(),
        "{table}"
    );
}

/// The real Thunderbird, over HTTPS on 127.0.0.1:443 with Pebble's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thunderbird_finds_the_configured_servers_over_acme_https() {
    if !ca_tools() || !require_program("thunderbird", "thunderbird") {
        return;
    }
    let _ports = PRIVILEGED_PORTS.lock().await;
    let bind = |p: u16| async move {
        until(&format!("127.0.0.1:{p} free"), WAIT_TIMEOUT, || async {
            TcpListener::bind(("127.0.0.1", p)).await.ok()
        })
        .await
    };
    let (http, https) = (bind(80).await, bind(443).await);
    let world = World::new("tls-alpn-01", 80, 443).await;
    world.write_config(&["example.test"], 5);
    let daemon = InProcess::start(&world, http, https);
    world.wait_served("example.test", ISSUE_TIMEOUT).await;

    for (mode, sub_source) in [
        ("autoconfig", "xml-from-isp-https"),
        ("exchange", "exchange-from-url1"),
    ] {
        let v = tb_probe(mode, &world.pebble.root).await;
        let config = &v["config"];
        assert_eq!(config["subSource"], sub_source, "{mode}: {v:#}");
        // Exactly the configured servers: one IMAP, one SMTP, nothing else.
        for (key, kind, host, port) in [
            ("incoming", "imap", "imap.example.test", 993),
            ("outgoing", "smtp", "smtp.example.test", 465),
        ] {
            let server = &config[key];
            assert_eq!(server["type"], kind, "{mode} {key}: {server}");
            assert_eq!(server["hostname"], host, "{mode} {key}: {server}");
            assert_eq!(server["port"], port, "{mode} {key}: {server}");
            assert_eq!(server["socketType"], "SSL", "{mode} {key}: {server}");
            assert_eq!(
                server["auth"], "passwordCleartext",
                "{mode} {key}: {server}"
            );
            assert_eq!(
                v["config_expanded"][key]["username"], ADDRESS,
                "{mode} {key}: {v:#}"
            );
        }
        for key in ["incomingAlternatives", "outgoingAlternatives"] {
            assert_eq!(config[key], serde_json::json!([]), "{mode} {key}: {v:#}");
        }
    }
    daemon.stop().await;
}

async fn tb_probe(mode: &'static str, root: &Path) -> serde_json::Value {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/tb-probe");
    let root = root.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        // coreutils `timeout` bounds the whole run, Thunderbird's start and quit included.
        Command::new("timeout")
            .args(["-k", "5", "120"])
            .arg(&tool)
            .args([
                "--email",
                ADDRESS,
                "--mode",
                mode,
                "--timeout",
                "30",
                "--ca",
            ])
            .arg(&root)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "tb-probe {mode}: {e}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "tb-probe {mode}: {v:#}");
    v
}

// ---------------------------------------------------------------- renewal, EAB, nonces, concurrency

/// The leaf's serial number (hex) and validity (unix seconds).
fn leaf_info(leaf: &CertificateDer<'_>) -> (String, i64, i64) {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let validity = cert.validity();
    (
        cert.raw_serial_as_string(),
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    )
}

/// Log lines of the in-process daemons about `domain` (tests run in parallel
/// and share the log, so every test uses domains of its own).
pub(crate) fn log_lines_for(domain: &str) -> Vec<String> {
    let tag = format!("domain={domain} ");
    in_process_log()
        .lines()
        .filter(|l| l.contains(&tag) || l.ends_with(&format!("domain={domain}")))
        .map(str::to_owned)
        .collect()
}

/// Certificates of 12 s: renewed at half the lifetime (lifetime under 10
/// days), the new one served in place of the old, and not one handshake fails
/// in between, validations of the renewal included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed() {
    if !ca_tools() {
        return;
    }
    const VALIDITY: u64 = 12;
    let test_started = Instant::now();
    let (http, https) = bind_pair().await;
    let options = PebbleOptions {
        validity_secs: Some(VALIDITY),
        // Every renewal validates afresh: TLS-ALPN-01 hellos while serving.
        authz_reuse_percent: Some(0),
        ..PebbleOptions::default()
    };
    let world = World::new_with("tls-alpn-01", port(&http), port(&https), options).await;
    world.write_config(&["renew.test"], 5);
    let daemon = InProcess::start(&world, http, https);
    let first = world.wait_served("renew.test", ISSUE_TIMEOUT).await;
    let (first_serial, first_nb, first_na) = leaf_info(&first);
    let lifetime = first_na - first_nb;
    assert!(
        (VALIDITY as i64 - 2..=VALIDITY as i64).contains(&lifetime),
        "Pebble's lifetime {lifetime} s"
    );
    eprintln!(
        "first certificate served after {:?}, serial {first_serial}, lifetime {lifetime} s",
        test_started.elapsed()
    );

    // Handshakes on every name, back to back, until each serves the new leaf.
    // Bounded by the old certificate's expiry plus a margin: after that the
    // old one would fail verification anyway.
    let deadline = Instant::now() + Duration::from_secs(VALIDITY + 3);
    let mut renewed: Vec<Option<(String, i64)>> = vec![None; 3];
    let mut handshakes = 0;
    while renewed.iter().any(Option::is_none) {
        for (i, name) in names("renew.test").iter().enumerate() {
            let now = mailconfd::certs::unix_now();
            let chain = world.handshake(Some(name)).await.unwrap_or_else(|e| {
                panic!(
                    "{name}: handshake failed at {now} (old certificate {first_nb}..{first_na}, \
                     after {handshakes} good handshakes): {e}"
                )
            });
            handshakes += 1;
            let (serial, nb, _) = leaf_info(&chain[0]);
            if serial != first_serial && renewed[i].is_none() {
                renewed[i] = Some((serial, nb));
            }
        }
        assert!(
            Instant::now() < deadline,
            "not renewed within {:?} of the first issuance (renewed per name: {renewed:?}): {}",
            Duration::from_secs(VALIDITY + 3),
            log_lines_for("renew.test").join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (serial, renewed_nb) = renewed[0].clone().unwrap();
    // One certificate for the three names.
    assert!(
        renewed
            .iter()
            .all(|r| r.as_ref().unwrap().0 == serial || r.as_ref().unwrap().1 > renewed_nb),
        "{renewed:?}"
    );
    let observed = mailconfd::certs::unix_now();
    assert!(
        observed < first_na,
        "the new certificate was served only at {observed}, the old one expired at {first_na}"
    );
    // Half the lifetime (not two thirds): the order starts at first_nb +
    // lifetime/2 and takes about a second.
    let delay = renewed_nb - first_nb;
    assert!(
        (lifetime / 2 - 1..=lifetime / 2 + 3).contains(&delay),
        "renewed {delay} s after issuance, lifetime {lifetime} s"
    );
    eprintln!(
        "renewed {delay} s after issuance (serial {serial}), {handshakes} handshakes, none failed, \
         test took {:?}",
        test_started.elapsed()
    );
    let orders = log_lines_for("renew.test")
        .iter()
        .filter(|l| l.contains("ordering certificate"))
        .count();
    assert!(orders >= 2, "{orders} orders");
    assert!(world.pebble.orders() >= 2, "{}", world.pebble.log());
    world.wait_reported("renew.test", "valid").await;
    daemon.stop().await;
    assert!(
        test_started.elapsed() < Duration::from_secs(30),
        "{:?}",
        test_started.elapsed()
    );
}

/// A CA that requires external account binding: the daemon with
/// `acme.eab_kid`/`acme.eab_hmac_key` gets an account and a certificate; one
/// without fails with the CA's reason in certs.json and the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_sent() {
    if !ca_tools() {
        return;
    }
    // base64url, as a CA hands it out (Pebble's sample key).
    const KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let (http, https) = bind_pair().await;
    let options = PebbleOptions {
        eab_keys: vec![("kid-1".to_owned(), KEY.to_owned())],
        ..PebbleOptions::default()
    };
    let world = World::new_with("tls-alpn-01", port(&http), port(&https), options).await;

    // With EAB: issues.
    let text = world.config_text(
        &world.state_dir(),
        &["eab.test"],
        5,
        &format!("eab_kid = \"kid-1\"\neab_hmac_key = \"{KEY}\""),
    );
    std::fs::write(world.config_path(), text).unwrap();
    let daemon = InProcess::start(&world, http, https);
    world.wait_served("eab.test", ISSUE_TIMEOUT).await;
    world.wait_reported("eab.test", "valid").await;
    daemon.stop().await;

    // Without: a second daemon, own state and ports, same CA.
    let state = world.dir.path().join("state-without-eab");
    let config_path = world.dir.path().join("without-eab.toml");
    let text = world.config_text(&state, &["noeab.test"], 5, "");
    std::fs::write(&config_path, text).unwrap();
    // Its own listeners (the CA never gets as far as validating).
    let (http, https) = bind_pair().await;
    let daemon = InProcess::start_at(&config_path, http, https);
    let report = |state: &Path| -> Option<serde_json::Value> {
        let bytes = std::fs::read(state.join("certs.json")).ok()?;
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
        rows.into_iter()
            .find(|r| r["domain"] == "noeab.test" && r["state"] == "failing")
    };
    let row = until("noeab.test failing in certs.json", WAIT_TIMEOUT, || async {
        report(&state)
    })
    .await;
    let error = row["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("externalAccountRequired"), "{row}");
    let now = mailconfd::certs::unix_now();
    assert!(
        row["next_attempt"].as_i64().unwrap_or(0) > now + 30,
        "{row}"
    );
    let lines = log_lines_for("noeab.test");
    let failed = lines
        .iter()
        .find(|l| l.contains("certificate order failed"))
        .unwrap_or_else(|| panic!("no failure logged: {lines:?}"));
    assert!(failed.contains("externalAccountRequired"), "{failed}");
    daemon.stop().await;
}

/// A fifth of all nonces rejected as badNonce (four times Pebble's default):
/// instant-acme retries a rejected request 3 times, and an order that still
/// fails on one is started again at once (up to 5 orders) instead of being
/// backed off, so the daemon gets its certificate promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nonces_are_retried() {
    if !ca_tools() {
        return;
    }
    let started = Instant::now();
    let (http, https) = bind_pair().await;
    let options = PebbleOptions {
        nonce_reject_percent: 20,
        ..PebbleOptions::default()
    };
    let world = World::new_with("tls-alpn-01", port(&http), port(&https), options).await;
    world.write_config(&["nonce.test"], 5);
    let daemon = InProcess::start(&world, http, https);
    let deadline = Instant::now() + ISSUE_TIMEOUT;
    for name in names("nonce.test") {
        while world.handshake(Some(&name)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "{name} not served within {ISSUE_TIMEOUT:?}; certs.json: {:?}\n{}",
                world.report_row("nonce.test"),
                log_lines_for("nonce.test").join("\n")
            );
            tokio::time::sleep(POLL).await;
        }
    }
    let lines = log_lines_for("nonce.test");
    let rejected = world.pebble.log().matches("badNonce").count();
    eprintln!(
        "issued after {:?}, {} order attempts, {rejected} badNonce lines in Pebble's log",
        started.elapsed(),
        lines
            .iter()
            .filter(|l| l.contains("ordering certificate"))
            .count()
    );
    daemon.stop().await;
}

/// 12 domains, `max_concurrent_orders = 3`: never more than 3 orders between
/// "ordering certificate" and its end in the log, and the cap is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_orders_is_respected() {
    if !ca_tools() {
        return;
    }
    let domains: Vec<String> = (1..=12).map(|i| format!("cap{i:02}.test")).collect();
    let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
    let (http, https) = bind_pair().await;
    let world = World::new("tls-alpn-01", port(&http), port(&https)).await;
    world.write_config(&refs, 3);
    let started = Instant::now();
    let daemon = InProcess::start(&world, http, https);
    for d in &refs {
        world.wait_served(d, ISSUE_TIMEOUT).await;
    }
    eprintln!("12 domains issued in {:?}", started.elapsed());
    // A job logs "ordering certificate" after the manager counts it in flight
    // and its end before the manager stops counting it, so the log never
    // shows more than the manager had in flight.
    let mut in_flight = HashSet::new();
    let mut most = 0;
    for line in in_process_log().lines() {
        let Some(domain) = refs.iter().find(|d| {
            line.contains(&format!("domain={d} ")) || line.ends_with(&format!("domain={d}"))
        }) else {
            continue;
        };
        if line.contains("ordering certificate") {
            assert!(in_flight.insert(*domain), "{domain} ordered twice: {line}");
        } else if line.contains("certificate deployed") || line.contains("certificate order failed")
        {
            assert!(in_flight.remove(domain), "{domain} ended unordered: {line}");
        }
        most = most.max(in_flight.len());
    }
    assert!(in_flight.is_empty(), "still in flight: {in_flight:?}");
    assert_eq!(most, 3, "most orders in flight at once");
    assert_eq!(world.pebble.orders(), 12, "{}", world.pebble.log());
    daemon.stop().await;
}
