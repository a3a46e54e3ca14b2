//! `doctor` against the daemon with certificates from a real ACME CA (Pebble,
//! `crate::pebble`), on 127.8.1.x: NSD serves two zones; `pebble.test`
//! points at the daemon, `elsewhere.test` at another web server (`openssl
//! s_server -HTTP`) whose certificate expires in three days, which answers
//! one path right, one with a 404 and one with a document that is not this
//! config's. The mail servers' certificate expires in three days too. Then a
//! config the daemon does not run (other servers, a plain one, a per-user
//! host) is checked against it.
//!
//! Pebble's validator reaches the daemon on 127.0.0.1 (its mock DNS answers
//! 127.0.0.1 for every name), so the daemon listens there as well.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::servers::{Killed, TestCa, has, mailconfd, start_nsd, start_s_server, zone};
use crate::pebble::{Pebble, PebbleOptions, free_tcp_port};
use crate::support::{eventually, is_root, require_program};

const DAEMON_IP: &str = "127.8.1.1";
const MAIL_IP: &str = "127.8.1.2";
const DNS_IP: &str = "127.8.1.3";
const WEB_IP: &str = "127.8.1.5";
/// elsewhere.test's mail server, whose certificate has expired.
const EXPIRED_IP: &str = "127.8.1.6";
/// Pebble issues in about a second; room for a loaded CI box.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(60);

fn config_text(d: &Path, http_port: u16, tls_port: u16, pebble: &Pebble, servers: &str) -> String {
    format!(
        r#"
[server]
http_listen = ["127.0.0.1:{http_port}"]
https_listen = ["{DAEMON_IP}:443", "127.0.0.1:{tls_port}"]
state_dir = "{state}"

[tls]
mode = "acme"

[acme]
directory = "{directory}"
ca_file = "{api_ca}"
challenge = "tls-alpn-01"
contact = ["mailto:hostmaster@pebble.test"]

[[provider]]
id = "pebble.test"
name = "Doctor Pebble Mail"
domains = ["pebble.test", "elsewhere.test"]
{servers}
  [provider.mta_sts]
  mode = "enforce"
  mx = ["mail.pebble.test"]
"#,
        state = d.join("state").display(),
        directory = pebble.directory_url,
        api_ca = pebble.api_ca.display(),
    )
}

const SERVERS: &str = r#"
  [[provider.server]]
  type = "imap"
  host = "mail.%EMAILDOMAIN%"
  [[provider.server]]
  type = "smtp"
  host = "mail.%EMAILDOMAIN%"
"#;

/// What an operator may have edited but not reloaded: the bare domain
/// served (the daemon has no certificate for it), other hosts, a plain
/// server, a host that depends on the user.
const STALE_SERVERS: &str = r#"
bare_domain = ["pebble.test"]
  [[provider.server]]
  type = "imap"
  host = "imap.%EMAILDOMAIN%"
  [[provider.server]]
  type = "pop3"
  host = "mail.%EMAILDOMAIN%"
  port = 110
  security = "plain"
  [[provider.server]]
  type = "smtp"
  host = "%EMAILLOCALPART%.smtp.pebble.test"
"#;

/// `curl` a document from the daemon, trusting `root`.
fn fetch_from_daemon(name: &str, path: &str, root: &Path) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-sSf", "--max-time", "5", "--resolve"])
        .arg(format!("{name}:443:{DAEMON_IP}"))
        .arg("--cacert")
        .arg(root)
        .arg(format!("https://{name}{path}"))
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// A raw HTTP/1.0 answer file for `openssl s_server -HTTP`.
fn http_file(dir: &Path, path: &str, status: &str, body: &[u8]) {
    let file = dir.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut text = format!("HTTP/1.0 {status}\r\nContent-Type: text/plain\r\n\r\n").into_bytes();
    text.extend_from_slice(body);
    std::fs::write(file, text).unwrap();
}

fn findings(out: &std::process::Output) -> Vec<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    json["findings"].as_array().unwrap().clone()
}

#[test]
fn doctor_checks_pebble_certificates_stale_documents_and_expiring_certificates() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root");
        eprintln!("SKIPPED: doctor test needs root (ports 53/443/465/993 on 127.8.1.x)");
        return;
    }
    if !require_program("nsd", "nsd")
        || !require_program("openssl", "openssl")
        || !require_program("pebble", "pebble")
        || !require_program("curl", "curl")
    {
        return;
    }
    let http_port = free_tcp_port();
    let tls_port = free_tcp_port();
    let pebble = Pebble::start_with(http_port, tls_port, PebbleOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("mailconfd.toml");
    std::fs::write(
        &config,
        config_text(d, http_port, tls_port, &pebble, SERVERS),
    )
    .unwrap();
    let stale = d.join("stale.toml");
    std::fs::write(
        &stale,
        config_text(d, http_port, tls_port, &pebble, STALE_SERVERS),
    )
    .unwrap();

    let pebble_zone = zone(
        &config,
        "pebble.test",
        DNS_IP,
        &format!(
            "@ IN CAA 0 issue \"letsencrypt.org\"\n@ IN A {DAEMON_IP}\nautoconfig IN A {DAEMON_IP}\nautodiscover IN A {DAEMON_IP}\nmta-sts IN A {DAEMON_IP}\nmail IN A {MAIL_IP}\n"
        ),
        |l| Some(l.to_owned()),
    );
    let elsewhere_zone = zone(
        &config,
        "elsewhere.test",
        DNS_IP,
        &format!(
            "autoconfig IN A {WEB_IP}\nautodiscover IN A {WEB_IP}\nmta-sts IN A {WEB_IP}\nmail IN A {EXPIRED_IP}\n"
        ),
        |l| Some(l.to_owned()),
    );
    std::fs::write(d.join("pebble.test.zone"), pebble_zone).unwrap();
    std::fs::write(d.join("elsewhere.test.zone"), elsewhere_zone).unwrap();

    // The mail servers' and the other web server's certificates: a CA of
    // the test's own, three days left.
    let ca = TestCa::new();
    ca.leaf(
        d,
        "mail-short",
        &["mail.pebble.test", "mail.elsewhere.test"],
        Some(3),
    );
    ca.leaf(
        d,
        "mail",
        &["mail.pebble.test", "mail.elsewhere.test"],
        None,
    );
    ca.leaf(d, "mail-expired", &["mail.elsewhere.test"], Some(-1));
    ca.leaf(
        d,
        "web-short",
        &[
            "autoconfig.elsewhere.test",
            "autodiscover.elsewhere.test",
            "mta-sts.elsewhere.test",
        ],
        Some(3),
    );
    let trusted = d.join("trusted.pem");
    std::fs::write(
        &trusted,
        std::fs::read_to_string(&pebble.root).unwrap() + &ca.pem,
    )
    .unwrap();

    let mut children = Killed(Vec::new());
    children
        .0
        .push(start_nsd(d, DNS_IP, &["pebble.test", "elsewhere.test"]));
    children.0.push(start_s_server(
        &format!("{MAIL_IP}:993"),
        d,
        "mail-short",
        &[],
        d,
    ));
    children
        .0
        .push(start_s_server(&format!("{MAIL_IP}:465"), d, "mail", &[], d));
    children.0.push(start_s_server(
        &format!("{EXPIRED_IP}:993"),
        d,
        "mail-expired",
        &[],
        d,
    ));
    let log = std::fs::File::create(d.join("daemon.log")).unwrap();
    children.0.push(
        Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["serve", "-c"])
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // The daemon's own document, as the other web server will serve it.
    let deadline = Instant::now() + ISSUE_TIMEOUT;
    let right = loop {
        if let Some(doc) = fetch_from_daemon(
            "autoconfig.elsewhere.test",
            "/mail/config-v1.1.xml",
            &pebble.root,
        ) {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate from Pebble within {ISSUE_TIMEOUT:?}: {}\n{}",
            std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default(),
            pebble.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let web = d.join("web");
    http_file(&web, "/mail/config-v1.1.xml", "200 OK", &right);
    http_file(
        &web,
        "/autodiscover/autodiscover.xml",
        "404 Not Found",
        b"no\n",
    );
    http_file(
        &web,
        "/.well-known/mta-sts.txt",
        "200 OK",
        b"version: STSv1\nmode: testing\nmx: mx.example.net\nmax_age: 86400\n",
    );
    children.0.push(start_s_server(
        &format!("{WEB_IP}:443"),
        d,
        "web-short",
        &["-HTTP"],
        &web,
    ));
    eventually("NSD and the TLS listeners", || {
        [
            (DNS_IP, 53),
            (MAIL_IP, 993),
            (MAIL_IP, 465),
            (WEB_IP, 443),
            (EXPIRED_IP, 993),
        ]
        .iter()
        .all(|a| std::net::TcpStream::connect(a).is_ok())
    });

    let doctor = |config: &Path, domain: &str, json: bool| {
        let mut args = vec![
            "doctor",
            "-c",
            config.to_str().unwrap(),
            "--resolver",
            "127.8.1.3:53",
            "--ca-file",
            trusted.to_str().unwrap(),
            "--domain",
            domain,
        ];
        if json {
            args.push("--json");
        }
        mailconfd(&args)
    };

    // pebble.test: Pebble's certificates verify for every name; the mail
    // certificate's near end is a warning, not a failure.
    let out = doctor(&config, "pebble.test", false);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    assert!(out.status.success(), "{text}");
    let out = doctor(&config, "pebble.test", true);
    assert!(out.status.success());
    let found = findings(&out);
    let dump = serde_json::to_string_pretty(&found).unwrap();
    for name in ["autoconfig", "autodiscover", "mta-sts"] {
        assert!(
            has(
                &found,
                "ok",
                &format!("https://{name}.pebble.test/"),
                "valid certificate",
                ""
            ),
            "{name}: {dump}"
        );
        assert!(text.contains(&format!("https://{name}.pebble.test/")));
    }
    assert!(
        text.contains(
            "ok    https    https://autoconfig.pebble.test/mail/config-v1.1.xml: valid certificate"
        ),
        "{text}"
    );
    assert!(
        text.contains("  WARN  mail     mail.pebble.test:993 (IMAP, TLS): TLS ok via 127.8.1.2:993, but the certificate expires in 2 day(s)\n        fix: renew the mail server's certificate\n"),
        "{text}"
    );
    // Pebble names no CAA identity: a CAA set that allows only another CA is
    // a warning that says so, never an "allowed".
    assert!(
        has(
            &found,
            "warn",
            "autoconfig.pebble.test",
            &format!(
                "the CAA identity of {} is unknown (its directory names no caaIdentities)",
                pebble.directory_url
            ),
            "look up the CA's CAA identity"
        ),
        "{dump}"
    );
    assert!(
        !found
            .iter()
            .any(|f| f["area"] == "caa" && f["status"] == "ok"),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "warn",
            "mail.pebble.test:993 (IMAP, TLS)",
            "but the certificate expires in 2 day(s)",
            "renew the mail server's certificate"
        ),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "ok",
            "mail.pebble.test:465 (SMTP, TLS)",
            "valid certificate for mail.pebble.test",
            ""
        ),
        "{dump}"
    );

    // Without the CA file, Pebble's certificates are not trusted (as a
    // staging CA's would not be).
    let out = mailconfd(&[
        "doctor",
        "-c",
        config.to_str().unwrap(),
        "--resolver",
        "127.8.1.3:53",
        "--domain",
        "pebble.test",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let untrusted = findings(&out);
    assert!(
        has(
            &untrusted,
            "fail",
            "https://autoconfig.pebble.test/mail/config-v1.1.xml",
            "the certificate's issuer is not trusted (self-signed, a private CA, or a staging CA)",
            "check `mailconfd certs`"
        ),
        "{}",
        serde_json::to_string_pretty(&untrusted).unwrap()
    );

    // elsewhere.test: another server answers for its names, and its mail
    // server's certificate has expired.
    let out = doctor(&config, "elsewhere.test", false);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    assert_eq!(out.status.code(), Some(1));
    for wanted in [
        "  WARN  https    https://autoconfig.elsewhere.test/mail/config-v1.1.xml: right document, but the certificate expires in 2 day(s)\n        fix: if mailconfd serves this name, `mailconfd certs` shows the renewal's last error; otherwise renew that server's certificate\n",
        "  FAIL  https    https://mta-sts.elsewhere.test/.well-known/mta-sts.txt: answers, but not with this config's document\n        fix: another server answers for this name, or the daemon runs an older config (systemctl reload mailconfd)\n",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?} in\n{text}");
    }
    let found = findings(&doctor(&config, "elsewhere.test", true));
    let dump = serde_json::to_string_pretty(&found).unwrap();
    assert!(
        has(
            &found,
            "warn",
            "https://autoconfig.elsewhere.test/mail/config-v1.1.xml",
            "right document, but the certificate expires in 2 day(s)",
            "mailconfd certs"
        ),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "fail",
            "https://autodiscover.elsewhere.test/autodiscover/autodiscover.xml",
            "answered HTTP 404",
            "another server answers for this name"
        ),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "fail",
            "https://mta-sts.elsewhere.test/.well-known/mta-sts.txt",
            "answers, but not with this config's document",
            "another server answers for this name"
        ),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "fail",
            "mail.elsewhere.test:993 (IMAP, TLS)",
            "the certificate has expired",
            "check the mail server's listener and its certificate"
        ),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "ok",
            "autoconfig.elsewhere.test",
            "no CAA record: any CA may issue",
            ""
        ),
        "{dump}"
    );

    // A config the daemon does not run: its documents are not what is served.
    let out = doctor(&stale, "pebble.test", false);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("  FAIL  https    https://autoconfig.pebble.test/mail/config-v1.1.xml: answers, but not with this config's document\n        fix: another server answers for this name, or the daemon runs an older config (systemctl reload mailconfd)\n"),
        "{text}"
    );
    let found = findings(&doctor(&stale, "pebble.test", true));
    let dump = serde_json::to_string_pretty(&found).unwrap();
    assert!(
        has(
            &found,
            "fail",
            "https://autoconfig.pebble.test/mail/config-v1.1.xml",
            "answers, but not with this config's document",
            "the daemon runs an older config (systemctl reload mailconfd)"
        ),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "fail",
            "https://pebble.test/.well-known/autoconfig/mail/config-v1.1.xml",
            "the server refused the handshake for pebble.test",
            "check `mailconfd certs`"
        ),
        "{dump}"
    );
    assert!(
        has(
            &found,
            "warn",
            "mail.pebble.test:110 (POP3, plain)",
            "plain: passwords cross the network unencrypted",
            "offer implicit TLS"
        ),
        "{dump}"
    );
    assert!(
        found.iter().any(|f| f["status"] == "warn"
            && f["subject"] == "%EMAILLOCALPART%.smtp.pebble.test"
            && f["detail"] == "the host depends on the user: not checked"
            && f["fix"]
                .as_str()
                .unwrap()
                .contains("openssl s_client -connect HOST:465")),
        "{dump}"
    );
}
