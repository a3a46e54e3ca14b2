//! KMail's auto-configuration client: `/usr/bin/ispdb` from Debian's
//! `accountwizard` (22.12), run headless (`QT_QPA_PLATFORM=offscreen`)
//! against the daemon on 127.0.0.1:80/443. Seen in its log: it asks
//! `autoconfig.D/mail/config-v1.1.xml` (https refused -> http), then
//! `https://D/.well-known/autoconfig/mail/config-v1.1.xml` (https only), then
//! Thunderbird's ISPDB, and starts over while nothing works.
//!
//! It runs in a private mount namespace (`unshare -m`) whose /etc/hosts maps
//! our names to 127.0.0.1 and whose resolv.conf names a loopback resolver
//! that does not exist, so nothing leaves the machine and ISPDB fails at
//! once; for https its /etc/ssl/certs holds only our local CA. ispdb prints
//! what it found only in its debug log and loops forever when nothing works,
//! so it is bounded by `timeout`. One run takes about 3 s.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Daemon, PrivilegedPorts, require_program};

const EMAIL: &str = "alice@example.test";
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// ispdb's own bound (`timeout`) and ours around it.
const ISPDB_SECS: u64 = 30;

const CONFIG: &str = r#"
[server]
http_listen = ["127.0.0.1:80"]
state_dir = "/nonexistent-not-used-in-off-mode"

[tls]
mode = "off"

[[provider]]
id = "example.test"
name = "Example Test Mail"
domains = ["example.test"]
  [[provider.server]]
  type = "pop3"
  host = "pop.example.test"
  port = 995
  security = "tls"
  [[provider.server]]
  type = "imap"
  host = "imap.%EMAILDOMAIN%"
  port = 993
  security = "tls"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.test"
  port = 587
  security = "starttls"
  username = "%EMAILLOCALPART%"
  # Last in config-v1.1; KMail must skip it.
  [[provider.server]]
  type = "jmap"
  url = "https://jmap.example.test/jmap/session"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ispdb_reads_config_v11_over_http() {
    if !require_program("ispdb", "accountwizard") || !require_program("unshare", "util-linux") {
        return;
    }
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let daemon = Daemon::start_bound(CONFIG).await;
    let log = ispdb(&["autoconfig.example.test", "example.test"], None).await;
    daemon.stop().await;

    // The summary ispdb logs after parsing (accountwizard's ispdb.cpp
    // `dumpServer`): KMail's words, "SSL" = implicit TLS, "TLS" = STARTTLS.
    let summary = summary(&log);
    assert_eq!(
        summary,
        [
            "Imap servers:",
            "\thostname: \"imap.example.test\" - port: 993 - encryption: \"SSL\" - username: \"alice@example.test\" - authentication: \"plain\"",
            "pop3 servers:",
            "\thostname: \"pop.example.test\" - port: 995 - encryption: \"SSL\" - username: \"alice@example.test\" - authentication: \"plain\"",
            "smtp servers:",
            "\thostname: \"smtp.example.test\" - port: 587 - encryption: \"TLS\" - username: \"alice\" - authentication: \"plain\"",
        ],
        "{log}"
    );
}

/// `bare_domain = true` and no `autoconfig.D`: KMail's https request to the
/// mail domain itself gets the document, with D in the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ispdb_reads_the_well_known_url_on_the_bare_domain() {
    if !require_program("ispdb", "accountwizard") || !require_program("unshare", "util-linux") {
        return;
    }
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let state = tempfile::tempdir().unwrap();
    let text = CONFIG
        .replace(
            "[server]\n",
            &format!(
                "[server]\nhttps_listen = [\"127.0.0.1:443\"]\nstate_dir = {:?}\n",
                state.path().to_str().unwrap()
            ),
        )
        .replace("state_dir = \"/nonexistent-not-used-in-off-mode\"\n", "")
        .replace("mode = \"off\"", "mode = \"local\"")
        .replace(
            "name = \"Example Test Mail\"\n",
            "name = \"Example Test Mail\"\nbare_domain = true\n",
        );
    let daemon = Daemon::start_bound(&text).await;
    let ca = state.path().join("local-ca.pem");
    crate::thunderbird::wait_for_https(&ca, "example.test").await;
    // autoconfig.example.test does not resolve.
    let log = ispdb(&["example.test"], Some(&ca)).await;
    daemon.stop().await;
    assert!(
        summary(&log)
            .iter()
            .any(|l| l.contains("\"imap.example.test\" - port: 993")),
        "{log}"
    );
    assert!(
        !log.contains("Fetching failed \"Could not connect to host example.test"),
        "{log}"
    );
}

/// The second, detailed server listing of ispdb's debug summary.
fn summary(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("org.kde.pim.accountwizard: "))
        .collect();
    let start = lines
        .iter()
        .position(|l| l.contains("hostname: "))
        .and_then(|first_detail| {
            lines[..first_detail]
                .iter()
                .rposition(|l| *l == "Imap servers:")
        })
        .unwrap_or_else(|| panic!("no server summary in ispdb's log:\n{log}"));
    lines[start..]
        .iter()
        .take_while(|l| l.starts_with('\t') || l.ends_with("servers:"))
        .map(|l| (*l).to_owned())
        .collect()
}

/// Runs ispdb for `EMAIL` with `names` resolving to 127.0.0.1 and, for
/// https, `ca` as the only trusted root; returns its stderr (the debug log).
async fn ispdb(names: &[&str], ca: Option<&std::path::Path>) -> String {
    let dir = tempfile::tempdir().unwrap();
    // OpenSSL (under Qt) looks roots up by subject hash in /etc/ssl/certs.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    if let Some(ca) = ca {
        std::fs::copy(ca, certs.join("ca-certificates.crt")).unwrap();
        let hash = std::process::Command::new("openssl")
            .args(["x509", "-hash", "-noout", "-in"])
            .arg(ca)
            .output()
            .expect("openssl x509 -hash");
        let hash = String::from_utf8(hash.stdout).unwrap();
        std::fs::copy(ca, certs.join(format!("{}.0", hash.trim()))).unwrap();
    }
    let hosts = dir.path().join("hosts");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&hosts, format!("127.0.0.1 localhost {}\n", names.join(" "))).unwrap();
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let stderr_path = dir.path().join("stderr");
    let started = Instant::now();
    // $1 hosts, $2 resolv.conf, $3 CA dir, $4 seconds, $5 address: no quoting games.
    let script = "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf \
                  && mount --bind \"$3\" /etc/ssl/certs \
                  && exec timeout -k 5 \"$4\" ispdb --email \"$5\"";
    let mut child = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&hosts)
        .arg(&resolv)
        .arg(&certs)
        .arg(ISPDB_SECS.to_string())
        .arg(EMAIL)
        .env("QT_QPA_PLATFORM", "offscreen")
        .env("QT_LOGGING_RULES", "org.kde.pim.accountwizard.debug=true")
        .env("HOME", dir.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting unshare");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(ISPDB_SECS + 30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ispdb outlived its timeout");
        }
        // Polled so that the daemon on this runtime keeps serving.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    eprintln!(
        "ispdb: {status} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // 124: `timeout` had to stop it, i.e. it found nothing it could use.
    assert_eq!(status.code(), Some(0), "ispdb {status}\n{log}");
    log
}
