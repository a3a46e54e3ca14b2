//! The real Delta Chat core (PyPI `deltachat-rpc-server` 2.65.0, driven
//! headless by `tests/tools/dc-probe`, see `tests/tools/dc-probe.md`) against
//! the daemon on 127.0.0.1:443 with `tls.mode = "local"`: its own
//! auto-configuration must come back with exactly the configured servers,
//! taken from the document it fetched (not guessed), from the URL we expect.
//!
//! dc-probe runs Delta Chat in a private mount namespace whose DNS answers
//! every name with 127.0.0.1 (`--block` names get NXDOMAIN), pins our local
//! CA's certificates, and catches the logins on its own trap IMAP/SMTP
//! servers on 127.0.0.1 (ports 143, 993, 25, 465, 587). Each run takes 1-2 s.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Daemon, PrivilegedPorts};
use crate::thunderbird::wait_for_https;

const EMAIL: &str = "alice@example.com";
const AUTOCONFIG_URL: &str =
    "https://autoconfig.example.com/mail/config-v1.1.xml?emailaddress=alice%40example.com";
const WELL_KNOWN_URL: &str = "https://example.com/.well-known/autoconfig/mail/config-v1.1.xml";
const AUTODISCOVER_URL: &str = "https://autodiscover.example.com/autodiscover/autodiscover.xml";

/// IMAP on 993 (implicit TLS) with the address as login, SMTP on 587
/// (STARTTLS) with the local part: Delta Chat's fallback guesses would be
/// 993 and 465 with the address, so a guess cannot pass for the document.
/// The JMAP server (last in config-v1.1) must not disturb it.
const SERVERS: &str = r#"
  [[provider.server]]
  type = "imap"
  host = "mail.example.com"
  port = 993
  security = "tls"
  [[provider.server]]
  type = "smtp"
  host = "mail.example.com"
  port = 587
  security = "starttls"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "jmap"
  url = "https://mail.example.com/jmap/session"
"#;

const PROBE_TIMEOUT: Duration = Duration::from_secs(120);
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_v11_from_autoconfig() {
    let Some(rpc) = rpc_server() else { return };
    let out = run(&rpc, false, &[]).await;
    assert_took_settings(&out, "autoconfig", AUTOCONFIG_URL);
    // The first URL answered: nothing else was asked.
    assert_eq!(
        out["fetched"],
        serde_json::json!([AUTOCONFIG_URL]),
        "{out:#}"
    );
}

/// Issue 12: without `autoconfig.D`, Delta Chat GETs the POX URL with no
/// body; it must get the settings there, not an error it reads as "no servers".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pox_get_when_autoconfig_does_not_resolve() {
    let Some(rpc) = rpc_server() else { return };
    let out = run(&rpc, false, &["--block", "autoconfig.example.com"]).await;
    assert_took_settings(&out, "autodiscover", AUTODISCOVER_URL);
}

/// `bare_domain = true`: `https://D/.well-known/...` (Delta Chat's second URL)
/// answers with D in the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_known_on_the_bare_domain() {
    let Some(rpc) = rpc_server() else { return };
    let out = run(&rpc, true, &["--block", "autoconfig.example.com"]).await;
    assert_took_settings(&out, "autoconfig-wellknown", WELL_KNOWN_URL);
}

/// `deltachat-rpc-server`: `$DC_RPC_SERVER`, the venv dc-probe documents, or
/// PATH. Missing: skipped with the reason, a failure in CI.
fn rpc_server() -> Option<PathBuf> {
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/dc-probe/venv/bin/deltachat-rpc-server"));
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("deltachat-rpc-server"))
            .find(|p| p.is_file())
    });
    let found = std::env::var_os("DC_RPC_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain(venv)
        .chain(on_path)
        .find(|p| p.is_file());
    if found.is_none() {
        let how = "python3 -m venv ~/.cache/dc-probe/venv && \
                   ~/.cache/dc-probe/venv/bin/pip install deltachat-rpc-server==2.65.0";
        if std::env::var_os("CI").is_some() {
            panic!("deltachat-rpc-server is missing: {how}");
        }
        eprintln!("SKIPPED: deltachat-rpc-server is not installed ({how})");
    }
    found
}

/// Starts the daemon (local CA, 127.0.0.1:80/443), runs dc-probe for
/// `EMAIL` with `args`, stops the daemon, returns dc-probe's JSON.
async fn run(rpc: &std::path::Path, bare_domain: bool, args: &[&str]) -> Value {
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let state = tempfile::tempdir().unwrap();
    let bare = if bare_domain {
        "bare_domain = true\n"
    } else {
        ""
    };
    let text = format!(
        "[server]\nhttp_listen = [\"127.0.0.1:80\"]\nhttps_listen = [\"127.0.0.1:443\"]\n\
         state_dir = {:?}\n\n[tls]\nmode = \"local\"\n\n\
         [[provider]]\nid = \"example.com\"\nname = \"Example Mail\"\n{bare}\
         domains = [\"example.com\"]\n{SERVERS}",
        state.path().to_str().unwrap()
    );
    let daemon = Daemon::start_bound(&text).await;
    let ca = state.path().join("local-ca.pem");
    wait_for_https(&ca, "autoconfig.example.com").await;
    if bare_domain {
        wait_for_https(&ca, "example.com").await;
    }
    let out = dc_probe(rpc, &ca, args).await;
    daemon.stop().await;
    out
}

async fn dc_probe(rpc: &std::path::Path, ca: &std::path::Path, args: &[&str]) -> Value {
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/dc-probe");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = std::process::Command::new(tool)
        .args(["--email", EMAIL, "--timeout", "60", "--ca"])
        .arg(ca)
        .arg("--rpc-server")
        .arg(rpc)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting tests/tools/dc-probe");
    // Polled, so that the daemon on this runtime keeps serving.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PROBE_TIMEOUT {
            // dc-probe kills Delta Chat on its own --timeout; this is the last resort.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dc-probe {args:?} did not finish within {PROBE_TIMEOUT:?}\nstderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = std::fs::read(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let json: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "dc-probe {args:?} printed no JSON ({e}), {status}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&stdout)
        )
    });
    eprintln!(
        "dc-probe {args:?}: {status} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    json
}

/// Delta Chat took both servers from the document at `url` (source `source`)
/// and tried to log in exactly where the config says, with the configured
/// login names.
fn assert_took_settings(out: &Value, source: &str, url: &str) {
    assert_eq!(out["exit_code"], 0, "{out:#}");
    assert_eq!(out["source"], source, "{out:#}");
    assert_eq!(out["source_url"], url, "{out:#}");
    assert_eq!(out["imap"]["from"], "document", "{out:#}");
    assert_eq!(out["smtp"]["from"], "document", "{out:#}");
    // POX has only `SSL` on/off: Delta Chat tries implicit TLS first and
    // STARTTLS second on the given port, and ignores `LoginName` (it logs in
    // with the address). config-v1.1 says exactly which, and which login.
    let (imap, smtp, smtp_login) = if source == "autodiscover" {
        (
            vec!["mail.example.com:993:tls", "mail.example.com:993:starttls"],
            vec!["mail.example.com:587:tls", "mail.example.com:587:starttls"],
            EMAIL,
        )
    } else {
        (
            vec!["mail.example.com:993:tls"],
            vec!["mail.example.com:587:starttls"],
            "alice",
        )
    };
    assert_eq!(
        out["imap"]["candidates"],
        serde_json::json!(imap),
        "{out:#}"
    );
    assert_eq!(
        out["smtp"]["candidates"],
        serde_json::json!(smtp),
        "{out:#}"
    );
    // The trap saw the IMAP login with the configured name. Delta Chat stops
    // once IMAP fails (the trap refuses every login), so whether SMTP got as
    // far as logging in is a race; when it did, the name must be right.
    assert_eq!(out["imap"]["login"], EMAIL, "{out:#}");
    assert_eq!(
        out["imap"]["attempts"][0]["trap"]["tls"], "implicit",
        "{out:#}"
    );
    if !out["smtp"]["login"].is_null() {
        assert_eq!(out["smtp"]["login"], smtp_login, "{out:#}");
    }
}
