//! The real Thunderbird (153 ESR, driven headless by `tests/tools/tb-probe`,
//! see `tests/tools/tb-probe.md`) against the daemon on 127.0.0.1:80/443: its
//! own account-setup code must come back with exactly the configured servers.
//!
//! Thunderbird only talks to ports 80 and 443 (every host name resolves to
//! 127.0.0.1 inside the probe), so these tests hold `PrivilegedPorts` and run
//! one after the other. Each probe starts a fresh Thunderbird: about 4-5 s.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Daemon, PrivilegedPorts, require_program};

const EMAIL: &str = "alice@example.test";

/// One provider for example.test: IMAP and POP3 over implicit TLS, SMTP on
/// 465 (implicit TLS) and 587 (STARTTLS), CalDAV, and JMAP (the trailing
/// `<incomingServer type="jmap">` must be skipped, leaving exactly the mail
/// servers). `TLS` is replaced by the `[server]`/`[tls]` sections of each case.
const PROVIDER: &str = r#"
[[provider]]
id = "example.test"
name = "Example Test Mail"
short_name = "Example"
domains = ["example.test"]
  [[provider.server]]
  type = "imap"
  host = "imap.example.test"
  port = 993
  security = "tls"
  username = "%EMAILADDRESS%"
  [[provider.server]]
  type = "pop3"
  host = "pop.example.test"
  port = 995
  security = "tls"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.test"
  port = 465
  security = "tls"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.test"
  port = 587
  security = "starttls"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "caldav"
  url = "https://dav.example.test/cal/"
  [[provider.server]]
  type = "jmap"
  url = "https://jmap.example.test/jmap/session"
"#;

/// The servers as Thunderbird's `AccountConfig` must hold them, in order
/// (the first of each direction is the default, the rest alternatives).
/// Thunderbird's names: "SSL" = implicit TLS, "alwaysSTARTTLS" = STARTTLS.
fn expected_incoming() -> Vec<Value> {
    vec![
        json!({"type": "imap", "hostname": "imap.example.test", "port": 993,
               "socketType": "SSL", "auth": "passwordCleartext",
               "username": "alice@example.test"}),
        json!({"type": "pop3", "hostname": "pop.example.test", "port": 995,
               "socketType": "SSL", "auth": "passwordCleartext",
               "username": "alice@example.test"}),
    ]
}

fn expected_outgoing() -> Vec<Value> {
    vec![
        json!({"type": "smtp", "hostname": "smtp.example.test", "port": 465,
               "socketType": "SSL", "auth": "passwordCleartext", "username": "alice"}),
        json!({"type": "smtp", "hostname": "smtp.example.test", "port": 587,
               "socketType": "alwaysSTARTTLS", "auth": "passwordCleartext",
               "username": "alice"}),
    ]
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(240);
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoconfig_over_http() {
    if !require_program("thunderbird", "thunderbird") {
        return;
    }
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let daemon = Daemon::start_bound(&off_config()).await;
    let out = tb_probe(&["--no-ca", "--mode", "autoconfig"]).await;
    daemon.stop().await;

    let config = assert_found(&out);
    assert_eq!(out["config"]["source"], "xml", "{out:#}");
    assert_eq!(out["config"]["subSource"], "xml-from-isp-http", "{out:#}");
    assert_eq!(out["config"]["id"], "example.test", "{out:#}");
    assert_eq!(out["config"]["displayName"], "Example Test Mail", "{out:#}");
    assert_servers(config);
    assert_winning_url(&out, "http://autoconfig.example.test/mail/config-v1.1.xml?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_autodiscover_over_http() {
    if !require_program("thunderbird", "thunderbird") {
        return;
    }
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let daemon = Daemon::start_bound(&off_config()).await;
    // No password: the http URL (url3) never carries credentials anyway.
    let out = tb_probe(&["--no-ca", "--mode", "exchange"]).await;
    daemon.stop().await;

    // Thunderbird reads POX <SSL>on</SSL> by port: 587 becomes STARTTLS,
    // 993/995/465 implicit TLS; <SPA>off</SPA> gives a cleartext password;
    // <LoginName> the username. So the result equals the autoconfig one.
    let config = assert_found(&out);
    assert_eq!(out["config"]["source"], "exchange", "{out:#}");
    assert_eq!(out["config"]["subSource"], "exchange-from-url3", "{out:#}");
    assert_servers(config);
    assert_winning_url(
        &out,
        "http://autodiscover.example.test/autodiscover/autodiscover.xml",
    );
    let post = out["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == 200)
        .unwrap();
    assert_eq!(post["method"], "POST", "{out:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoconfig_over_https_with_the_local_ca() {
    if !require_program("thunderbird", "thunderbird") {
        return;
    }
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let state = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nhttp_listen = [\"127.0.0.1:80\"]\nhttps_listen = [\"127.0.0.1:443\"]\n\
         state_dir = {:?}\n\n[tls]\nmode = \"local\"\n{PROVIDER}",
        state.path().to_str().unwrap()
    );
    let daemon = Daemon::start_bound(&text).await;
    let ca = state.path().join("local-ca.pem");
    wait_for_https(&ca, "autoconfig.example.test").await;
    let out = tb_probe(&["--ca", ca.to_str().unwrap(), "--mode", "autoconfig"]).await;
    daemon.stop().await;

    let config = assert_found(&out);
    assert_eq!(
        out["trust"]["marionette_acceptInsecureCerts"], false,
        "{out:#}"
    );
    assert_eq!(out["config"]["subSource"], "xml-from-isp-https", "{out:#}");
    assert_servers(config);
    assert_winning_url(
        &out,
        "https://autoconfig.example.test/mail/config-v1.1.xml?",
    );
}

fn off_config() -> String {
    format!(
        "[server]\nhttp_listen = [\"127.0.0.1:80\"]\n\
         state_dir = \"/nonexistent-not-used-in-off-mode\"\n\n[tls]\nmode = \"off\"\n{PROVIDER}"
    )
}

/// Runs tb-probe for `EMAIL` (bounded), returns its JSON.
async fn tb_probe(args: &[&str]) -> Value {
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/tb-probe");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = std::process::Command::new(tool)
        .args([
            "--email",
            EMAIL,
            "--timeout",
            "20",
            "--startup-timeout",
            "90",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting tests/tools/tb-probe");
    // Polled, so that the daemon keeps serving; the first run on a machine
    // also creates the probe's venv (pip), hence the generous bound.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PROBE_TIMEOUT {
            // tb-probe kills its own Thunderbird on its --timeout; this is
            // the last resort.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tb-probe {args:?} did not finish within {PROBE_TIMEOUT:?}\nstderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = std::fs::read(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let json: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "tb-probe {args:?} printed no JSON ({e}), {status}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&stdout)
        )
    });
    eprintln!(
        "tb-probe {args:?}: {status} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "tb-probe {args:?} failed\n{json:#}\nstderr: {stderr}"
    );
    json
}

/// Thunderbird found a config; returns it with the placeholders expanded.
fn assert_found(out: &Value) -> &Value {
    assert_eq!(out["result"], "config", "{out:#}");
    assert_eq!(out["exit_code"], 0, "{out:#}");
    assert!(out["config"]["isComplete"] == true, "{out:#}");
    let expanded = &out["config_expanded"];
    assert!(expanded.is_object(), "no config_expanded: {out:#}");
    expanded
}

fn assert_servers(config: &Value) {
    let servers = |first: &str, rest: &str| -> Vec<Value> {
        std::iter::once(&config[first])
            .chain(config[rest].as_array().unwrap_or(&Vec::new()))
            .map(project)
            .collect()
    };
    assert_eq!(
        servers("incoming", "incomingAlternatives"),
        expected_incoming(),
        "incoming servers\n{config:#}"
    );
    assert_eq!(
        servers("outgoing", "outgoingAlternatives"),
        expected_outgoing(),
        "outgoing servers\n{config:#}"
    );
}

/// The fields a server product controls. Placeholders are expanded here too,
/// because Thunderbird's `replaceVariables` skips `outgoingAlternatives`
/// (mailconfd happens to expand them itself when the address is in the query).
fn project(server: &Value) -> Value {
    let username = server["username"]
        .as_str()
        .map(|u| {
            u.replace("%EMAILADDRESS%", EMAIL)
                .replace("%EMAILLOCALPART%", EMAIL.split('@').next().unwrap())
                .replace("%EMAILDOMAIN%", EMAIL.split('@').nth(1).unwrap())
        })
        .map_or(Value::Null, Value::String);
    json!({
        "type": server["type"],
        "hostname": server["hostname"],
        "port": server["port"],
        "socketType": server["socketType"],
        "auth": server["auth"],
        "username": username,
    })
}

/// The highest-priority 2xx request is `prefix...` (Thunderbird takes the
/// first URL in its priority order that succeeds at HTTP level).
fn assert_winning_url(out: &Value, prefix: &str) {
    let winner = out["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .find(|r| {
            r["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .unwrap_or_else(|| panic!("no successful request\n{out:#}"));
    assert!(
        winner["url"].as_str().unwrap().starts_with(prefix),
        "winner {winner} is not {prefix}\n{out:#}"
    );
}

/// Waits (bounded) until the local CA has issued the certificate for `name`
/// and port 443 completes a verified handshake and answers (`GET
/// /mail/config-v1.1.xml` with Host `name`; also used by the Delta Chat tests).
pub(crate) async fn wait_for_https(ca: &Path, name: &str) {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::from("local-ca.pem not written");
    while Instant::now() < deadline {
        if let Ok(pem) = std::fs::read(ca) {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.unwrap()).unwrap();
            }
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
            let attempt = async {
                let tcp = tokio::net::TcpStream::connect("127.0.0.1:443").await?;
                let server_name = ServerName::try_from(name.to_owned()).unwrap();
                let mut s = connector.connect(server_name, tcp).await?;
                s.write_all(
                    format!(
                        "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).await?;
                Ok::<_, std::io::Error>(buf)
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(buf)) if buf.starts_with(b"HTTP/1.1 200") => return,
                Ok(Ok(buf)) => last = String::from_utf8_lossy(&buf).into_owned(),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("https://{name} did not answer within 20 s: {last}");
}
