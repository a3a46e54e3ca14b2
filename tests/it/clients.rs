//! Thunderbird for Android's acceptance rules (`src/render/tb_android.rs`,
//! ported from thunderbird/thunderbird-android at a59bd679859d: its
//! `RealAutoconfigParser.kt`, `RealAutoconfigFetcher.kt` and
//! `GetAutoDiscovery.kt`) against every config-v1.1 answer mailconfd gives for
//! the golden and example configs: each one is taken by the app with the
//! operator's first IMAP and first SMTP server, or `mailconfd check` (the real
//! binary) warns for that provider, naming the client.

use std::path::{Path, PathBuf};
use std::process::Command;

use mailconfd::address::EmailAddress;
use mailconfd::config::Config;
use mailconfd::model::{Provider, Security, ServerKind, expand};
use mailconfd::render::tb_android::{self, ServerSettings};
use mailconfd::render::thunderbird;

use crate::support::{CONFIG, Daemon};

fn config_files() -> Vec<(PathBuf, Option<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        (root.join("etc/mailconfd.toml"), None),
        (root.join("etc/local.toml"), None),
    ];
    let mut golden: Vec<PathBuf> = std::fs::read_dir(root.join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    golden.sort();
    for dir in golden {
        let request = std::fs::read_to_string(dir.join("request.txt")).unwrap();
        files.push((dir.join("config.toml"), Some(request.trim_end().to_owned())));
    }
    files
}

/// `mailconfd check`'s stderr (warnings) and stdout (the client report).
fn check(path: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["check", "-c"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What the app must hold when it takes the document: the operator's first
/// server of each kind, placeholders filled in.
fn expected(provider: &Provider, kind: ServerKind, a: &EmailAddress) -> ServerSettings {
    let s = provider.first(kind).expect("validated: one of each");
    let (host, port, security) = s.host_port().unwrap();
    ServerSettings {
        hostname: expand(host, Some(a)).into_owned(),
        port,
        socket_type: match security {
            Security::Tls => "SSL",
            Security::StartTls => "STARTTLS",
            Security::Plain => "plain",
        }
        .to_owned(),
        authentication: s
            .auth
            .iter()
            .map(|m| m.thunderbird_name().to_owned())
            .filter(|m| m == "password-cleartext" || m == "password-encrypted")
            .collect(),
        username: expand(&s.username, Some(a)).into_owned(),
    }
}

#[test]
fn every_autoconfig_answer_passes_thunderbird_for_android_or_check_warns() {
    let (mut accepted, mut warned) = (0, 0);
    for (path, request) in config_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let config: Config = mailconfd::config::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {:?}", path.display(), e.lines()));
        let (stderr, stdout) = check(&path);
        for (i, provider) in config.providers.iter().enumerate() {
            let mut addresses: Vec<EmailAddress> = provider
                .domains
                .iter()
                .take(5)
                .map(|d| EmailAddress::parse(&format!("user@{d}")).unwrap())
                .collect();
            if let Some(r) = &request {
                let a = EmailAddress::parse(r).unwrap();
                if provider.domains.iter().any(|d| d == a.domain()) {
                    addresses.push(a);
                }
            }
            for a in &addresses {
                // With the address in the query (filled in by us) and
                // without (filled in by the app): both answers we serve.
                for doc in [
                    thunderbird::render(provider, a.domain(), Some(a)),
                    thunderbird::render(provider, a.domain(), None),
                ] {
                    let body = String::from_utf8_lossy(&doc.body);
                    match tb_android::evaluate(&doc.body, a) {
                        Ok(took) => {
                            accepted += 1;
                            assert_eq!(
                                took.imap,
                                expected(provider, ServerKind::Imap, a),
                                "{}\n{body}",
                                path.display()
                            );
                            let mut smtp = expected(provider, ServerKind::Smtp, a);
                            // OAuth2 stays only for hosts the app knows (none here).
                            smtp.authentication.retain(|m| m != "OAuth2");
                            assert_eq!(took.smtp, smtp, "{}\n{body}", path.display());
                        }
                        Err(reason) => {
                            warned += 1;
                            let named = stderr.lines().any(|l| {
                                l.starts_with(&format!("warning: provider[{i}]"))
                                    && l.contains("Thunderbird for Android")
                            });
                            assert!(
                                named,
                                "{}: Thunderbird for Android rejects the answer for {a} ({reason}) \
                                 but check does not warn for provider[{i}]\n{stderr}\n{body}",
                                path.display()
                            );
                            assert!(
                                stdout.contains(
                                    "Thunderbird for Android: throws the autoconfig answer away"
                                ),
                                "{stdout}"
                            );
                        }
                    }
                }
            }
        }
    }
    // Both outcomes occur (the quirk-* goldens are built to be refused), so
    // neither branch is dead.
    assert!(
        accepted > 10 && warned > 3,
        "accepted {accepted}, warned {warned}"
    );
}

#[test]
fn check_names_the_server_each_single_server_client_gets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = CONFIG.replace(
        "  [[provider.server]]\n  type = \"imap\"\n  host = \"imap.example.com\"",
        "  [[provider.server]]\n  type = \"imap\"\n  host = \"legacy.example.com\"\n  port = 143\n  security = \"plain\"\n  \
         [[provider.server]]\n  type = \"imap\"\n  host = \"imap.example.com\"",
    );
    std::fs::write(&path, &text).unwrap();
    let (stderr, stdout) = check(&path);
    assert!(
        stdout.contains(
            "  Apple profile (iOS, macOS): imap imap.example.com:993 tls, smtp smtp.example.com:587 starttls"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  Thunderbird for Android: throws the autoconfig answer away: "),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "provider[1] (other.example), for user@other.example:\n  Apple profile (iOS, macOS): imap mail.other.example:993 tls, smtp mail.other.example:465 tls\n  Thunderbird for Android: imap mail.other.example:993 SSL, smtp mail.other.example:465 SSL"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("Thunderbird for Android reject the whole autoconfig document"),
        "{stderr}"
    );
}

/// Item 1 over a real socket: GET and an empty POST give the settings, a
/// GET with an address uses it, the real request still works.
#[tokio::test]
async fn pox_get_and_empty_post_answer_the_settings() {
    let d = Daemon::start(CONFIG).await;
    for raw in [
        "GET /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.net\r\nConnection: close\r\n\r\n".to_owned(),
        "POST /Autodiscover/Autodiscover.xml HTTP/1.1\r\nHost: example.net\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let r = d.send(raw.as_bytes()).await;
        assert_eq!(r.status, 200, "{raw}");
        let body = r.text();
        assert!(body.contains("outlook/responseschema/2006a"), "{body}");
        assert!(body.contains("<Server>imap.example.com</Server>"), "{body}");
        assert!(body.contains("<Port>993</Port>"), "{body}");
        assert!(!body.contains("<User>") && !body.contains('%'), "{body}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    }
    let r = d
        .get(
            "autodiscover.example.com",
            "/autodiscover/autodiscover.xml?emailaddress=bob%40example.net",
        )
        .await;
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(
        body.contains("<DisplayName>bob@example.net</DisplayName>"),
        "{body}"
    );
    assert!(body.contains("<LoginName>bob</LoginName>"), "{body}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    d.stop().await;
}

/// Item 6: automx2's `/mobileconfig/` spelling answers like `/mobileconfig`.
#[tokio::test]
async fn mobileconfig_with_a_trailing_slash() {
    let d = Daemon::start(CONFIG).await;
    let a = d
        .get(
            "autoconfig.example.com",
            "/mobileconfig?emailaddress=bob%40example.com",
        )
        .await;
    let b = d
        .get(
            "autoconfig.example.com",
            "/mobileconfig/?emailaddress=bob%40example.com",
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    assert_eq!(
        b.header("content-type"),
        Some("application/x-apple-aspen-config")
    );
    assert_eq!(a.body, b.body);
    d.stop().await;
}

/// Item 2: `bare_domain` puts D into `dns` and `check`, and HTTP-01
/// challenges for D reach the challenge table only when it is on.
#[tokio::test]
async fn bare_domain_is_explained_and_routed_only_when_on() {
    let on = CONFIG.replace(
        "short_name = \"Example\"\n",
        "short_name = \"Example\"\nbare_domain = [\"example.net\"]\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &on).unwrap();
    let (_, stdout) = check(&path);
    assert!(
        stdout.contains("  bare_domain: https://example.net/ is served and example.net is in its certificate: example.net's A/AAAA records must point here"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("https://example.com/ is served"),
        "{stdout}"
    );
    let dns = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["dns", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let dns = String::from_utf8_lossy(&dns.stdout);
    assert!(
        dns.contains("(bare_domain is on): https://example.net/ is answered by mailconfd"),
        "{dns}"
    );
    assert!(
        dns.contains("; the mail domain itself: not served (bare_domain is off)"),
        "{dns}"
    );

    let challenge = "/.well-known/acme-challenge/tok";
    let d = Daemon::start(&on).await;
    // On: the request reaches the (empty) challenge table.
    let r = d.get("example.net", challenge).await;
    assert_eq!((r.status, r.text().as_str()), (404, "no such challenge\n"));
    // Off for example.com: not a path the bare name serves.
    let r = d.get("example.com", challenge).await;
    assert_eq!((r.status, r.text().as_str()), (404, "not found\n"));
    d.stop().await;
}

/// With `tls.mode = "files"`, `check` says when a bare domain is on but no
/// certificate file covers it; a file that covers it silences that.
#[test]
fn check_warns_when_no_certificate_file_covers_a_bare_domain() {
    let dir = tempfile::tempdir().unwrap();
    let write_pair = |names: Vec<String>| {
        let pair = rcgen::generate_simple_self_signed(names).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        (cert, key)
    };
    let config = |cert: &Path, key: &Path| {
        format!(
            "[server]\nstate_dir = {:?}\n[tls]\nmode = \"files\"\n[[tls.files]]\ncert = {:?}\nkey = {:?}\n\
             [[provider]]\nid = \"example.com\"\nname = \"Example\"\nbare_domain = true\n\
             domains = [\"example.com\"]\n[[provider.server]]\ntype = \"imap\"\nhost = \"mail.example.com\"\n\
             [[provider.server]]\ntype = \"smtp\"\nhost = \"mail.example.com\"\n",
            dir.path().join("state"),
            cert,
            key
        )
    };
    let path = dir.path().join("c.toml");
    let warning = "bare_domain is on but no certificate covers example.com";

    let (cert, key) = write_pair(vec![
        "autoconfig.example.com".into(),
        "autodiscover.example.com".into(),
    ]);
    std::fs::write(&path, config(&cert, &key)).unwrap();
    let (stderr, _) = check(&path);
    assert!(stderr.contains(warning), "{stderr}");

    let (cert, key) = write_pair(vec![
        "autoconfig.example.com".into(),
        "autodiscover.example.com".into(),
        "example.com".into(),
    ]);
    std::fs::write(&path, config(&cert, &key)).unwrap();
    let (stderr, _) = check(&path);
    assert!(!stderr.contains(warning), "{stderr}");
}
