//! `mailconfd doctor` against real servers on loopback: NSD (Debian's `nsd`)
//! serving a good zone (exactly what `mailconfd dns` prints, plus addresses)
//! and a broken one, the daemon with its local CA on 127.8.0.1:443, and
//! `openssl s_server` as the IMAP (993) and SMTP (465) TLS listeners and
//! Dovecot for IMAP and POP3 STARTTLS (143, 110), with certificates from a CA
//! made here. Each breakage in the broken zone must be
//! named in the report. `named-checkzone` (bind9-utils) checks `dns` output.
//!
//! Needs root (ports 53, 443, 465, 993 on 127.8.0.x, which no other test uses).
//! `with_pebble` runs the daemon with certificates from Pebble on 127.8.1.x;
//! `servers` starts what both tests need.

mod servers;
mod with_pebble;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::pebble::free_tcp_port;
use crate::support::{eventually, is_root, require_program};
use servers::{Killed, TestCa, has, mailconfd, start_nsd, start_s_server, zone};

const DAEMON_IP: &str = "127.8.0.1";
const MAIL_IP: &str = "127.8.0.2";
const DNS_IP: &str = "127.8.0.3";
const STARTTLS_IP: &str = "127.8.0.4";
const NOTHING_IP: &str = "127.8.0.9";
/// Not loopback and not this host's (RFC 5737 documentation range).
const FOREIGN_IP: &str = "192.0.2.10";

#[test]
fn doctor_names_every_breakage_against_real_dns_https_and_tls() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root");
        eprintln!("SKIPPED: doctor test needs root (ports 53/443/465/993 on 127.8.0.x)");
        return;
    }
    if !require_program("nsd", "nsd")
        || !require_program("openssl", "openssl")
        || !require_program("named-checkzone", "bind9-utils")
        || !require_program("dovecot", "dovecot-imapd dovecot-pop3d")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let http_port = free_tcp_port();
    let config = d.join("mailconfd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
http_listen = ["{DAEMON_IP}:{http_port}"]
https_listen = ["{DAEMON_IP}:443"]
state_dir = "{state}"

[tls]
mode = "local"

[[provider]]
id = "good.test"
name = "Doctor Test Mail"
# unserved.test: in no zone NSD serves, so every lookup is refused
domains = ["good.test", "broken.test", "unserved.test"]
  [[provider.server]]
  type = "imap"
  host = "mail.%EMAILDOMAIN%"
  [[provider.server]]
  type = "smtp"
  host = "mail.%EMAILDOMAIN%"
  [[provider.server]]
  type = "imap"
  host = "mail2.%EMAILDOMAIN%"
  security = "starttls"
  [[provider.server]]
  type = "pop3"
  host = "mail2.%EMAILDOMAIN%"
  security = "starttls"
  [provider.mta_sts]
  mode = "enforce"
  mx = ["mail.good.test"]
"#,
            state = d.join("state").display()
        ),
    )
    .unwrap();

    // The zones: good = what `dns` prints plus addresses; broken = edited.
    let good = zone(
        &config,
        "good.test",
        DNS_IP,
        &format!(
            "@ IN CAA 0 issue \"letsencrypt.org\"\nautoconfig IN A {DAEMON_IP}\nautodiscover IN A {DAEMON_IP}\nmta-sts IN A {DAEMON_IP}\nmail IN A {MAIL_IP}\nmail2 IN A {STARTTLS_IP}\n"
        ),
        |l| Some(l.to_owned()),
    );
    let broken = zone(
        &config,
        "broken.test",
        DNS_IP,
        // autoconfig points where nothing listens; autodiscover at an
        // address not of this host (TEST-NET-1); mta-sts and mail2 are
        // missing; mail reaches a server whose certificate names other
        // hosts; one SRV has a sibling `dns` does not print.
        &format!(
            "@ IN CAA 0 issue \"pki.goog\"\nautoconfig IN A {NOTHING_IP}\nautodiscover IN A {FOREIGN_IP}\nmail IN A {MAIL_IP}\n_submissions._tcp IN SRV 10 1 587 mail.broken.test.\n"
        ),
        |l| {
            if l.starts_with("_imaps._tcp.") {
                None // an SRV record not published
            } else if l.starts_with("_mta-sts.") {
                Some(l.replace("id=", "id=0ld")) // a stale policy id
            } else {
                Some(l.to_owned())
            }
        },
    );
    std::fs::write(d.join("good.test.zone"), &good).unwrap();
    std::fs::write(d.join("broken.test.zone"), &broken).unwrap();
    // `dns` output is valid master-file syntax.
    for name in ["good.test", "broken.test"] {
        let out = Command::new("named-checkzone")
            .arg(name)
            .arg(d.join(format!("{name}.zone")))
            .output()
            .unwrap();
        assert!(out.status.success(), "named-checkzone {name}: {out:?}");
    }
    // A CA of our own for the mail servers' certificate.
    let ca = TestCa::new();
    ca.leaf(d, "mail", &["mail.good.test", "mail2.good.test"], None);

    let mut children = Killed(Vec::new());
    children
        .0
        .push(start_nsd(d, DNS_IP, &["good.test", "broken.test"]));
    for port in [993, 465] {
        children.0.push(start_s_server(
            &format!("{MAIL_IP}:{port}"),
            d,
            "mail",
            &[],
            d,
        ));
    }
    std::fs::create_dir_all(d.join("dovecot/home")).unwrap();
    std::fs::write(
        d.join("dovecot/dovecot.conf"),
        format!(
            "protocols = imap pop3\nlisten = {STARTTLS_IP}\nbase_dir = {dir}/dovecot/run\nlog_path = {dir}/dovecot/log\n\
             ssl = required\nssl_cert = <{dir}/mail.pem\nssl_key = <{dir}/mail.key\n\
             passdb {{\n  driver = static\n  args = password=unused\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={dir}/dovecot/home\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = 143\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 110\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n",
            dir = d.display()
        ),
    )
    .unwrap();
    children.0.push(
        Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(d.join("dovecot/dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    children.0.push(
        Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["serve", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ca_file = d.join("trusted.pem");
    eventually("the local CA", || d.join("state/local-ca.pem").exists());
    std::fs::write(
        &ca_file,
        std::fs::read_to_string(d.join("state/local-ca.pem")).unwrap() + &ca.pem,
    )
    .unwrap();
    eventually("NSD and the TLS listeners", || {
        std::net::TcpStream::connect((MAIL_IP, 993)).is_ok()
            && std::net::TcpStream::connect((MAIL_IP, 465)).is_ok()
            && std::net::TcpStream::connect((DNS_IP, 53)).is_ok()
            && std::net::TcpStream::connect((STARTTLS_IP, 143)).is_ok()
            && std::net::TcpStream::connect((STARTTLS_IP, 110)).is_ok()
            && std::net::TcpStream::connect((DAEMON_IP, 443)).is_ok()
    });

    let doctor = |extra: &[&str]| {
        let mut args = vec![
            "doctor",
            "-c",
            config.to_str().unwrap(),
            "--resolver",
            "127.8.0.3:53",
            "--ca-file",
            ca_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        mailconfd(&args)
    };

    // The good domain: every check passes (the daemon's certificate may take a moment).
    let mut out = doctor(&["--domain", "good.test"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !out.status.success() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        out = doctor(&["--domain", "good.test"]);
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    assert!(
        out.status.success(),
        "good.test: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("FAIL"), "{text}");
    for wanted in [
        "_imaps._tcp.good.test SRV",
        "_mta-sts.good.test TXT",
        "https://autoconfig.good.test/mail/config-v1.1.xml: valid certificate",
        "https://autodiscover.good.test/autodiscover/autodiscover.xml: valid certificate",
        "https://mta-sts.good.test/.well-known/mta-sts.txt: valid certificate",
        "mail.good.test:993 (IMAP, TLS): TLS",
        "mail.good.test:465 (SMTP, TLS): TLS",
        "mail2.good.test:143 (IMAP, STARTTLS): TLS",
        "mail2.good.test:110 (POP3, STARTTLS): TLS",
        "points at this host",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?} in\n{text}");
    }

    let out = doctor(&["--domain", "broken.test"]);
    assert_eq!(out.status.code(), Some(1), "failures must exit 1");
    println!("{}", String::from_utf8_lossy(&out.stdout));

    // Both domains, as JSON: each breakage of broken.test is named.
    let out = doctor(&["--json"]);
    assert_eq!(out.status.code(), Some(1), "failures must exit 1");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = json["findings"].as_array().unwrap();
    let failed = |subject: &str, detail: &str| {
        findings.iter().any(|f| {
            f["status"] == "fail"
                && f["subject"].as_str().unwrap().contains(subject)
                && f["detail"].as_str().unwrap().contains(detail)
        })
    };
    let dump = serde_json::to_string_pretty(&json).unwrap();
    assert!(
        failed("_imaps._tcp.broken.test SRV", "not published"),
        "{dump}"
    );
    assert!(
        failed("_mta-sts.broken.test TXT", "published \"v=STSv1; id=0ld"),
        "{dump}"
    );
    assert!(
        failed("https://autoconfig.broken.test", "127.8.0.9:443"),
        "{dump}"
    );
    assert!(failed("mta-sts.broken.test", "does not resolve"), "{dump}");
    assert!(
        failed("mail2.broken.test:143", "does not resolve"),
        "{dump}"
    );
    assert!(
        failed("mail.broken.test:993", "not valid for mail.broken.test"),
        "{dump}"
    );
    // A record mailconfd does not print beside the ones it does.
    assert!(
        has(
            findings,
            "warn",
            "_submissions._tcp.broken.test SRV",
            "plus records mailconfd does not print: \"10 1 587 mail.broken.test\"",
            "remove the extra records"
        ),
        "{dump}"
    );
    // A name at an address that is not this host's, and nothing answering there.
    assert!(
        has(
            findings,
            "warn",
            "autodiscover.broken.test",
            "resolves to 192.0.2.10, not an address of this host",
            "behind NAT or a load balancer"
        ),
        "{dump}"
    );
    assert!(
        failed("https://autodiscover.broken.test", "192.0.2.10:443"),
        "{dump}"
    );
    // A zone the name server refuses: every lookup fails, and says so.
    for (area, subject) in [
        ("dns", "_imaps._tcp.unserved.test SRV"),
        ("address", "autoconfig.unserved.test"),
        ("mail", "mail.unserved.test:993"),
    ] {
        assert!(
            findings.iter().any(|f| f["status"] == "fail"
                && f["area"] == area
                && f["subject"].as_str().unwrap().starts_with(subject)
                && f["detail"].as_str().unwrap()
                    == "lookup failed: the name server answered REFUSED"
                && f["fix"].as_str().unwrap().contains("name servers answer")),
            "{area} {subject}: {dump}"
        );
    }
    assert!(
        findings
            .iter()
            .filter(|f| f["status"] == "fail")
            .all(|f| f["fix"].is_string()),
        "every failure says what to do: {dump}"
    );
    assert!(
        !findings
            .iter()
            .any(|f| f["status"] == "fail" && f["domain"] == "good.test"),
        "{dump}"
    );

    // POP3 with STARTTLS configured on Dovecot's IMAP port: the STARTTLS
    // dialogue fails and the report says how.
    let wrong_port = d.join("wrong-port.toml");
    std::fs::write(
        &wrong_port,
        std::fs::read_to_string(&config).unwrap().replace(
            "  [provider.mta_sts]",
            "  [[provider.server]]\n  type = \"pop3\"\n  host = \"mail2.%EMAILDOMAIN%\"\n  port = 143\n  security = \"starttls\"\n  [provider.mta_sts]",
        ),
    )
    .unwrap();
    let out = mailconfd(&[
        "doctor",
        "-c",
        wrong_port.to_str().unwrap(),
        "--resolver",
        "127.8.0.3:53",
        "--ca-file",
        ca_file.to_str().unwrap(),
        "--domain",
        "good.test",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wrong = json["findings"].as_array().unwrap();
    assert!(
        has(
            wrong,
            "fail",
            "mail2.good.test:143 (POP3, STARTTLS)",
            "via 127.8.0.4:143: unexpected greeting: * OK",
            "check the mail server's listener"
        ),
        "{}",
        serde_json::to_string_pretty(&json).unwrap()
    );
    // The IMAP server on that port is still checked, and passes.
    assert!(
        has(
            wrong,
            "ok",
            "mail2.good.test:143 (IMAP, STARTTLS)",
            "valid certificate for mail2.good.test",
            ""
        ),
        "{}",
        serde_json::to_string_pretty(&json).unwrap()
    );

    // CAA is checked for the CA in use: the same zones under an ACME config
    // for Let's Encrypt (no daemon needed for this part of the report).
    let acme_config = d.join("acme.toml");
    std::fs::write(
        &acme_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("mode = \"local\"", "mode = \"acme\"\n[acme]\ndirectory = \"letsencrypt\"\ncontact = [\"mailto:postmaster@good.test\"]"),
    )
    .unwrap();
    let caa_of = |config: &Path, domain: &str| -> Vec<serde_json::Value> {
        let out = mailconfd(&[
            "doctor",
            "-c",
            config.to_str().unwrap(),
            "--resolver",
            "127.8.0.3:53",
            "--domain",
            domain,
            "--json",
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["area"] == "caa")
            .cloned()
            .collect()
    };
    let caa = |domain: &str| caa_of(&acme_config, domain);
    let unserved_caa = caa("unserved.test");
    assert!(
        unserved_caa.iter().any(|f| f["status"] == "warn"
            && f["detail"]
                .as_str()
                .unwrap()
                .contains("CAA lookup at autoconfig.unserved.test failed")
            && f["fix"].as_str().unwrap().contains("answer CAA queries")),
        "{unserved_caa:?}"
    );
    let good_caa = caa("good.test");
    assert!(!good_caa.is_empty());
    assert!(
        good_caa.iter().all(|f| f["status"] == "ok"
            && f["detail"]
                .as_str()
                .unwrap()
                .contains("allows letsencrypt.org")),
        "{good_caa:?}"
    );
    let broken_caa = caa("broken.test");
    assert!(
        broken_caa.iter().any(|f| f["status"] == "fail"
            && f["subject"] == "autoconfig.broken.test"
            && f["detail"]
                .as_str()
                .unwrap()
                .contains("letsencrypt.org may not issue")
            && f["fix"]
                .as_str()
                .unwrap()
                .contains("CAA 0 issue \"letsencrypt.org\"")),
        "{broken_caa:?}"
    );

    // A CA whose directory cannot be read: its CAA identity is unknown, and
    // the warning says why.
    let unreachable_config = d.join("unreachable-ca.toml");
    std::fs::write(
        &unreachable_config,
        std::fs::read_to_string(&acme_config).unwrap().replace(
            "directory = \"letsencrypt\"",
            &format!("directory = \"https://{NOTHING_IP}:1/dir\""),
        ),
    )
    .unwrap();
    let unknown_caa = caa_of(&unreachable_config, "good.test");
    assert!(
        !unknown_caa.is_empty()
            && unknown_caa.iter().all(|f| f["status"] == "warn"
                && f["detail"].as_str().unwrap().contains(&format!(
                    "the CAA identity of https://{NOTHING_IP}:1/dir is unknown (its directory could not be read: connect to {NOTHING_IP}:1"
                ))),
        "{unknown_caa:?}"
    );
}
