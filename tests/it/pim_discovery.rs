//! A discovery client we did not write as the oracle: io-pim-discovery's
//! `pim-discovery` (crates.io `io-pim-discovery` 0.9.0, `--features cli`)
//! against the real daemon on 127.0.0.1:443 (`tls.mode = "local"`) and a real
//! DNS server, NSD, on a loopback port serving exactly the zone lines that
//! `mailconfd dns` prints.
//!
//! pim-discovery asks DNS over TCP at `--server` and connects to HTTPS names
//! through the system resolver, so it runs in a private mount namespace
//! (`unshare -m`) whose /etc/hosts maps our names to 127.0.0.1; it trusts our
//! local CA through its own `--tls-cert`. It must find, as configured, IMAP,
//! SMTP, JMAP and the OAuth issuer in PACC (only after verifying the
//! `_ua-auto-config` TXT digest), the SRV records, and config-v1.1's servers.
//!
//! Its JMAP mechanism (SRV -> `/.well-known/jmap` -> session) is not run: it
//! accepts only a real JMAP session object, and no JMAP server runs here.
//!
//! The binary: `$MAILCONFD_PIM_DISCOVERY`, else `pim-discovery` on PATH.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Daemon, PrivilegedPorts, require_program};

const DOMAIN: &str = "example.test";
const EMAIL: &str = "bob@example.test";
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);
const RUN_SECS: u64 = 30;

const CONFIG: &str = r#"
[server]
http_listen = ["127.0.0.1:80"]
https_listen = ["127.0.0.1:443"]
public_name = "mailconf.example.test"
state_dir = "STATE"

[tls]
mode = "local"

[[provider]]
id = "example.test"
name = "Example Test Mail"
short_name = "ExTest"
domains = ["example.test", "other-customer.test"]
pacc = true

  [provider.oauth2]
  issuer = "https://id.example.test"
  scope = ["IMAP", "SMTP", "offline_access"]

  [[provider.server]]
  type = "imap"
  host = "imap.example.test"
  auth = ["OAuth2", "password-cleartext"]

  [[provider.server]]
  type = "smtp"
  host = "smtp.example.test"
  port = 587
  security = "starttls"
  auth = ["OAuth2", "password-cleartext"]

  [[provider.server]]
  type = "smtp"
  host = "smtp.example.test"
  auth = ["OAuth2", "password-cleartext"]

  [[provider.server]]
  type = "jmap"
  url = "https://jmap.example.test/jmap/session"
  auth = ["OAuth2", "password-cleartext"]

# No JMAP: io-pim-discovery 0.9.0 drops a whole config-v1.1 document that has
# a server type it does not know (its server type is an enum of imap, pop3,
# smtp), so config-v1.1 is checked on this provider.
[[provider]]
id = "plain.test"
name = "Plain Test Mail"
domains = ["plain.test"]

  [provider.oauth2]
  issuer = "https://id.plain.test"
  scope = "IMAP SMTP"
  auth_url = "https://id.plain.test/authorize"
  token_url = "https://id.plain.test/token"

  [[provider.server]]
  type = "imap"
  host = "imap.plain.test"
  auth = ["OAuth2", "password-cleartext"]

  [[provider.server]]
  type = "smtp"
  host = "smtp.plain.test"
  port = 587
  security = "starttls"
  auth = ["OAuth2", "password-cleartext"]

  [[provider.server]]
  type = "smtp"
  host = "smtp.plain.test"
"#;

fn pim_discovery() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MAILCONFD_PIM_DISCOVERY") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pim-discovery"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let how = "cargo install io-pim-discovery --version 0.9.0 --features cli --locked";
        if std::env::var_os("CI").is_some() {
            panic!("pim-discovery is missing: {how}");
        }
        eprintln!("SKIPPED: pim-discovery is not installed ({how})");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pim_discovery_finds_what_is_configured() {
    let Some(bin) = pim_discovery() else { return };
    if !require_program("nsd", "nsd") || !require_program("unshare", "util-linux") {
        return;
    }
    let _ports = PrivilegedPorts::lock(LOCK_TIMEOUT).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = CONFIG.replace("STATE", state.to_str().unwrap());
    let daemon = Daemon::start_bound(&config).await;
    let ca = state.join("local-ca.pem");
    crate::thunderbird::wait_for_https(&ca, &format!("autoconfig.{DOMAIN}")).await;

    // The zone as `mailconfd dns` prints it for the operator, plus what any
    // zone needs; NSD refuses a zone it cannot parse.
    let zone = dns_lines(&daemon.config_path);
    assert!(zone.contains("_ua-auto-config.example.test."), "{zone}");
    let mut nsd = Nsd::start(dir.path(), &zone).await;

    let hosts = [
        format!("ua-auto-config.{DOMAIN}"),
        format!("autoconfig.{DOMAIN}"),
        format!("autodiscover.{DOMAIN}"),
        DOMAIN.to_owned(),
        "autoconfig.plain.test".to_owned(),
    ];
    let port = nsd.port;
    let run = |mechanism, email| Run {
        bin: &bin,
        dir: dir.path(),
        names: &hosts,
        ca: &ca,
        dns_port: port,
        mechanism,
        email,
    };
    let pacc = run("pacc", EMAIL).exec().await;
    let srv = run("srv", EMAIL).exec().await;
    let autoconfig = run("autoconfig", "carol@plain.test").exec().await;
    nsd.stop();

    // The operator changed the settings and did not publish the new digest:
    // the same document must now be refused.
    let served = mailconfd::render::pacc::digest_record(b"");
    let current = zone
        .lines()
        .find(|l| l.starts_with("_ua-auto-config."))
        .and_then(|l| l.split('"').nth(1))
        .unwrap()
        .to_owned();
    let mut stale_nsd = Nsd::start(dir.path(), &zone.replace(&current, &served)).await;
    let stale = Run {
        dns_port: stale_nsd.port,
        ..run("pacc", EMAIL)
    }
    .exec()
    .await;
    stale_nsd.stop();
    daemon.stop().await;
    assert!(
        summarize(&stale).is_empty(),
        "stale digest accepted: {stale}"
    );

    // PACC: found only with a matching digest; every field as configured.
    let got = summarize(&pacc);
    assert_eq!(
        got,
        [
            "pacc imap tcp imap.example.test:993 tls oauthIssuer:https://id.example.test,password",
            "pacc smtp tcp smtp.example.test:465 tls oauthIssuer:https://id.example.test,password",
            "pacc jmap http https://jmap.example.test/jmap/session oauthIssuer:https://id.example.test,password",
        ],
        "{pacc}"
    );
    // config-v1.1 with its <oAuth2>: every server in the operator's order,
    // OAuth2 (from <oAuth2>) before the password.
    assert_eq!(
        summarize(&autoconfig),
        [
            "ispMain imap tcp imap.plain.test:993 tls oauthAuthorizationCodeGrant:?,password",
            "ispMain smtp tcp smtp.plain.test:587 starttls oauthAuthorizationCodeGrant:?,password",
            "ispMain smtp tcp smtp.plain.test:465 tls password",
        ],
        "{autoconfig}"
    );
    // RFC 6186 SRV from the zone `mailconfd dns` printed.
    let got = summarize(&srv);
    assert!(
        got.iter()
            .any(|l| l.contains("imap tcp imap.example.test:993 tls")),
        "{srv}"
    );
    assert!(
        got.iter()
            .any(|l| l.contains("smtp tcp smtp.example.test:465 tls")),
        "{srv}"
    );
}

/// `mailconfd dns` from the real binary, for the asked domain.
fn dns_lines(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["dns", "-c"])
        .arg(config)
        .args(["--domain", DOMAIN])
        .output()
        .expect("running mailconfd dns");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// One line per config pim-discovery reported: source, service, endpoint,
/// auth. Panics on output that is not its JSON list.
fn summarize(json: &str) -> Vec<String> {
    let json = json.split(LOG_MARK).next().unwrap_or_default();
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let list = v.as_array().unwrap_or_else(|| panic!("not a list: {json}"));
    list.iter()
        .map(|c| {
            let endpoint = &c["endpoint"];
            let endpoint = if let Some(tcp) = endpoint.get("tcp") {
                format!(
                    "tcp {}:{} {}",
                    tcp["host"].as_str().unwrap_or("?"),
                    tcp["port"],
                    tcp["security"].as_str().unwrap_or("?")
                )
            } else if let Some(url) = endpoint.get("http") {
                format!("http {}", url.as_str().unwrap_or("?"))
            } else {
                format!("{endpoint}")
            };
            let auth: Vec<String> = c["auth"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| match m {
                            Value::String(s) => s.clone(),
                            Value::Object(o) => o
                                .iter()
                                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("?")))
                                .collect::<Vec<_>>()
                                .join(","),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} {} {} {}",
                c["source"].as_str().unwrap_or("?"),
                c["service"].as_str().unwrap_or("?"),
                endpoint,
                auth.join(",")
            )
        })
        .collect()
}

/// One `pim-discovery --json email <mechanism> <email>` run.
struct Run<'a> {
    bin: &'a Path,
    dir: &'a Path,
    /// Names /etc/hosts maps to 127.0.0.1 in its namespace.
    names: &'a [String],
    ca: &'a Path,
    dns_port: u16,
    mechanism: &'a str,
    email: &'a str,
}

impl Run<'_> {
    /// Its JSON, then `LOG_MARK` and its debug log.
    async fn exec(&self) -> String {
        let Run {
            bin,
            dir,
            names,
            ca,
            dns_port,
            mechanism,
            email,
        } = *self;
        let args = ["email", mechanism];
        let hosts = dir.join("hosts");
        let resolv = dir.join("resolv.conf");
        std::fs::write(&hosts, format!("127.0.0.1 localhost {}\n", names.join(" "))).unwrap();
        // Names not in hosts (Thunderbird's ISPDB) go to a resolver that is not
        // there: nothing leaves the machine.
        std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
        let stdout_path = dir.join("pim.out");
        let stderr_path = dir.join("pim.err");
        // $1 hosts, $2 resolv.conf, $3 seconds, then the command: no quoting games.
        let script = "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf \
                  && t=\"$3\" && shift 3 && exec timeout -k 5 \"$t\" \"$@\"";
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "sh", "-c", script, "sh"])
            .arg(&hosts)
            .arg(&resolv)
            .arg(RUN_SECS.to_string())
            .arg(bin)
            .args(["--json", "--log-level", "debug", "--tls-cert"])
            .arg(ca)
            .args(args)
            .args(["--server", &format!("127.0.0.1:{dns_port}"), email])
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("starting unshare");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(RUN_SECS + 30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("pim-discovery outlived its timeout");
            }
            // Polled so that the daemon on this runtime keeps serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        eprintln!(
            "pim-discovery {args:?}: {status} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(
            status.success(),
            "pim-discovery {args:?}: {status}\n{out}\n{err}"
        );
        // Its debug log rides along for the assertion messages.
        format!("{out}\n{LOG_MARK}\n{err}")
    }
}

/// Separates pim-discovery's JSON from its log in `Run::exec`'s result.
const LOG_MARK: &str = "--- pim-discovery log ---";

/// NSD serving `example.test` from `mailconfd dns` lines on a loopback port.
struct Nsd {
    child: std::process::Child,
    port: u16,
}

impl Nsd {
    async fn start(dir: &Path, records: &str) -> Nsd {
        let nsd_dir = dir.join("nsd");
        std::fs::create_dir_all(&nsd_dir).unwrap();
        // A free port: bound, then released for NSD (it binds TCP and UDP).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let zone = format!(
            "$ORIGIN {DOMAIN}.\n$TTL 3600\n\
             @ IN SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 300\n\
             @ IN NS ns.{DOMAIN}.\n\
             ns IN A 127.0.0.1\n\
             mailconf IN A 127.0.0.1\n\
             {records}"
        );
        std::fs::write(nsd_dir.join("zone"), zone).unwrap();
        let d = nsd_dir.to_str().unwrap();
        std::fs::write(
            nsd_dir.join("nsd.conf"),
            format!(
                "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  zonesdir: \"{d}\"\n  \
                 pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
                 database: \"\"\n  username: \"\"\n  chroot: \"\"\n  logfile: \"{d}/nsd.log\"\n  \
                 server-count: 1\n  verbosity: 2\n\
                 remote-control:\n  control-enable: no\n\
                 zone:\n  name: {DOMAIN}\n  zonefile: \"{d}/zone\"\n"
            ),
        )
        .unwrap();
        let child = Command::new("nsd")
            .args(["-d", "-c"])
            .arg(nsd_dir.join("nsd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(nsd_dir.join("stderr")).unwrap())
            .spawn()
            .expect("starting nsd");
        let mut nsd = Nsd { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            let log = std::fs::read_to_string(nsd_dir.join("nsd.log")).unwrap_or_default();
            if Instant::now() > deadline || nsd.child.try_wait().unwrap().is_some() {
                nsd.stop();
                let err = std::fs::read_to_string(nsd_dir.join("stderr")).unwrap_or_default();
                panic!("nsd did not start\n{log}\n{err}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nsd
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        self.stop();
    }
}
