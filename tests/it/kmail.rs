//! KMail's auto-configuration client: `/usr/bin/ispdb` from Debian's
//! `accountwizard` (22.12), run headless (`QT_QPA_PLATFORM=offscreen`)
//! against the daemon on 127.0.0.1:80. KMail only asks over plain http:
//! `http://autoconfig.D/mail/config-v1.1.xml`, then
//! `http://D/.well-known/autoconfig/...`, then Thunderbird's ISPDB.
//!
//! It runs in a private mount namespace (`unshare -m`) whose /etc/hosts maps
//! our names to 127.0.0.1 and whose resolv.conf names a loopback resolver
//! that does not exist, so nothing leaves the machine and ISPDB fails at
//! once. ispdb prints what it found only in its debug log and loops forever
//! when nothing works, so it is bounded by `timeout`. One run takes about 3 s.

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
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ispdb_reads_config_v11_over_http() {
    if !require_program("ispdb", "accountwizard") || !require_program("unshare", "util-linux") {
        return;
    }
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let daemon = Daemon::start_bound(CONFIG).await;
    let log = ispdb(&["autoconfig.example.test", "example.test"]).await;
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

/// Runs ispdb for `EMAIL` with `names` resolving to 127.0.0.1, returns its
/// stderr (the debug log).
async fn ispdb(names: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
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
    // $1 hosts, $2 resolv.conf, $3 seconds, $4 address: no quoting games.
    let script = "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf \
                  && exec timeout -k 5 \"$3\" ispdb --email \"$4\"";
    let mut child = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&hosts)
        .arg(&resolv)
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
