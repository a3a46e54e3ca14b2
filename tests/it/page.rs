//! The settings page over real sockets (a table of requests -> status,
//! headers, body checks), then in a real browser: Debian's chromium driven by
//! playwright-core (tests/browser/page.mjs).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Daemon};

const CONFIG: &str = r#"
[server]
state_dir = "/nonexistent-not-used-in-off-mode"

[tls]
mode = "off"

[[provider]]
id = "example.test"
name = "Example <Mail> & \"Friends\""
short_name = "Example"
domains = ["example.test", "bücher.example"]
support = "mailto:help@example.test"
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

[[provider]]
id = "other.example"
name = "Other"
domains = ["other.example"]
logo_url = "https://www.other.example/logo.svg"
support = "https://www.other.example/help"
  [[provider.server]]
  type = "imap"
  host = "mail.other.example"
  [[provider.server]]
  type = "smtp"
  host = "mail.other.example"
"#;

const HTML: &str = "text/html; charset=utf-8";
const AC: &str = "autoconfig.example.test";

struct Case {
    name: &'static str,
    method: &'static str,
    host: &'static str,
    target: &'static str,
    accept_language: Option<&'static str>,
    status: u16,
    content_type: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body_has: &'static [&'static str],
    body_lacks: &'static [&'static str],
}

const CASE: Case = Case {
    name: "",
    method: "GET",
    host: AC,
    target: "/",
    accept_language: None,
    status: 200,
    content_type: HTML,
    headers: &[],
    body_has: &[],
    body_lacks: &[],
};

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("vary", "Accept-Language"),
];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "form on autoconfig",
            headers: &[("cache-control", "public, max-age=300")],
            body_has: &[
                "<html lang=\"en\">",
                "<label for=\"emailaddress\">",
                "name=\"emailaddress\"",
                "Example &lt;Mail&gt; &amp; &quot;Friends&quot;",
                "href=\"mailto:help@example.test\"",
            ],
            body_lacks: &["<script", "<table"],
            ..CASE
        },
        Case {
            name: "form on autodiscover",
            host: "autodiscover.example.test",
            body_has: &["<form method=\"get\" action=\"/\">"],
            ..CASE
        },
        Case {
            name: "head has no body",
            method: "HEAD",
            ..CASE
        },
        Case {
            name: "settings for a served address",
            target: "/?emailaddress=al%2Bice%40example.test",
            headers: &[("cache-control", "no-store")],
            body_has: &[
                "Settings for al+ice@example.test",
                "imap.example.test",
                "<td class=\"mono\">993</td>",
                "SSL/TLS (encrypted from the start)",
                "STARTTLS (encrypted after connecting)",
                "<td class=\"mono\">al+ice@example.test</td>",
                "<td class=\"mono\">al+ice</td>",
                "Normal password",
                "href=\"/mobileconfig?emailaddress=al%2Bice@example.test\"",
                "<svg xmlns=\"http://www.w3.org/2000/svg\"",
                "Thunderbird",
                "Android",
            ],
            body_lacks: &["<script"],
            ..CASE
        },
        Case {
            name: "idn domain expands in the host name",
            target: "/?email=bob%40b%C3%BCcher.example",
            body_has: &[
                "Settings for bob@xn--bcher-kva.example",
                "imap.xn--bcher-kva.example",
            ],
            ..CASE
        },
        Case {
            name: "german by accept-language",
            target: "/?emailaddress=bob%40example.test",
            accept_language: Some("de-CH, de;q=0.9, en;q=0.5"),
            body_has: &[
                "<html lang=\"de\">",
                "Einstellungen für bob@example.test",
                "Profil herunterladen",
                "SSL/TLS (von Anfang an verschlüsselt)",
            ],
            ..CASE
        },
        Case {
            name: "invalid address shows the form again",
            target: "/?emailaddress=alice.example.test",
            status: 400,
            headers: &[("cache-control", "no-store")],
            body_has: &[
                "class=\"error\"",
                "An e-mail address needs an @",
                "value=\"alice.example.test\"",
                "aria-invalid",
            ],
            ..CASE
        },
        Case {
            name: "empty address asks for one",
            target: "/?emailaddress=",
            status: 400,
            body_has: &["Please enter your e-mail address."],
            ..CASE
        },
        Case {
            name: "hostile input is escaped",
            target: "/?emailaddress=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E%40x",
            status: 400,
            body_has: &["value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;@x\""],
            body_lacks: &["<script"],
            ..CASE
        },
        Case {
            name: "unknown domain is a polite 404 page",
            target: "/?emailaddress=bob%40unknown.example",
            status: 404,
            headers: &[("cache-control", "no-store")],
            body_has: &[
                "No settings for bob@unknown.example",
                "we do not provide e-mail for unknown.example",
            ],
            body_lacks: &["<table"],
            ..CASE
        },
        Case {
            name: "the address's provider brands the page and its logo origin is allowed",
            target: "/?emailaddress=carol%40other.example",
            headers: &[(
                "content-security-policy",
                "img-src data: https://www.other.example;",
            )],
            body_has: &[
                "<img src=\"https://www.other.example/logo.svg\"",
                "<p class=\"brand\">Other</p>",
                "href=\"https://www.other.example/help\"",
                "mail.other.example",
            ],
            ..CASE
        },
        Case {
            name: "unknown host stays plain",
            host: "autoconfig.unknown.example",
            status: 404,
            content_type: "text/plain; charset=utf-8",
            ..CASE
        },
        Case {
            name: "not on the mail domain itself",
            host: "example.test",
            status: 404,
            content_type: "text/plain; charset=utf-8",
            ..CASE
        },
        Case {
            name: "post is not allowed",
            method: "POST",
            status: 405,
            content_type: "text/plain; charset=utf-8",
            ..CASE
        },
    ]
}

#[tokio::test]
async fn page_answers_each_request_as_the_table_says() {
    let d = Daemon::start(CONFIG).await;
    for c in cases() {
        let accept = c
            .accept_language
            .map(|v| format!("Accept-Language: {v}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n{accept}Content-Length: 0\r\nConnection: close\r\n\r\n",
            c.method, c.target, c.host
        );
        let r = d.send(raw.as_bytes()).await;
        let body = r.text();
        assert_eq!(r.status, c.status, "{}: {body}", c.name);
        assert_eq!(r.header("content-type"), Some(c.content_type), "{}", c.name);
        if c.content_type == HTML {
            for (name, value) in SECURITY_HEADERS.iter().chain(c.headers) {
                let got = r.header(name).unwrap_or_default();
                assert!(got.contains(value), "{}: {name}: {got}", c.name);
            }
            let csp = r.header("content-security-policy").unwrap_or_default();
            for directive in [
                "default-src 'none'",
                "style-src 'sha256-",
                "form-action 'self'",
                "base-uri 'none'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(directive), "{}: {csp}", c.name);
            }
        }
        if c.method == "HEAD" {
            assert!(r.body.is_empty(), "{}", c.name);
            let get = d.get(c.host, c.target).await;
            assert_eq!(
                r.header("content-length"),
                Some(get.body.len().to_string().as_str())
            );
        }
        for s in c.body_has {
            assert!(body.contains(s), "{}: missing {s:?} in {body}", c.name);
        }
        for s in c.body_lacks {
            assert!(!body.contains(s), "{}: unexpected {s:?}", c.name);
        }
    }
    d.stop().await;
}

/// `npm ci` in tests/browser when package-lock.json changed since the last one.
fn npm_ci(dir: &Path) {
    let lock = std::fs::read(dir.join("package-lock.json")).unwrap();
    let stamp = dir.join("node_modules/.mailconfd-lock");
    if std::fs::read(&stamp).is_ok_and(|s| s == lock) {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .expect("running npm");
    assert!(status.success(), "npm ci failed in {}", dir.display());
    std::fs::write(stamp, lock).unwrap();
}

fn artifact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}

#[tokio::test]
async fn browser_fills_the_form_downloads_the_profile_and_scans_the_qr_code() {
    if !support::require_program("chromium", "chromium") || !support::require_program("npm", "npm")
    {
        return;
    }
    let d = Daemon::start(CONFIG).await;
    let url = format!("http://{AC}:{}/", d.addr.port());
    let address = "al+ice@example.test";
    let artifacts = artifact_dir();
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let script_artifacts = artifacts.clone();
    // Blocking work off the runtime thread: the daemon must keep answering.
    let output = tokio::task::spawn_blocking(move || {
        npm_ci(&browser_dir);
        Command::new("node")
            .arg(browser_dir.join("page.mjs"))
            .args([url.as_str(), address])
            .arg(&script_artifacts)
            .output()
            .expect("running node")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "page.mjs failed: {stderr}");
    let out: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert!(out["error"].is_null(), "{}", out["error"]);

    assert_eq!(out["formStatus"], 200);
    assert_eq!(out["lang"], "en");
    assert_eq!(
        out["title"],
        "E-mail settings – Example <Mail> & \"Friends\""
    );
    assert_eq!(
        out["firstFocus"], "emailaddress",
        "keyboard reaches the field first"
    );
    assert_eq!(out["focusOutline"], "3px", "focus is visible");

    assert_eq!(out["settingsStatus"], 200);
    assert_eq!(
        out["settingsUrl"],
        format!(
            "http://{AC}:{}/?emailaddress=al%2Bice%40example.test",
            d.addr.port()
        )
    );
    assert_eq!(out["headers"]["cache-control"], "no-store");
    assert_eq!(out["h1"], "Settings for al+ice@example.test");
    let tables = serde_json::json!([
        {"caption": "Incoming mail (IMAP)", "rows": [
            ["Server", "imap.example.test"], ["Port", "993"],
            ["Security", "SSL/TLS (encrypted from the start)"],
            ["User name", "al+ice@example.test"], ["Sign-in", "Normal password"]]},
        {"caption": "Outgoing mail (SMTP)", "rows": [
            ["Server", "smtp.example.test"], ["Port", "587"],
            ["Security", "STARTTLS (encrypted after connecting)"],
            ["User name", "al+ice"], ["Sign-in", "Normal password"]]},
    ]);
    assert_eq!(out["tables"], tables);
    assert_eq!(
        out["steps"],
        serde_json::json!([
            "iPhone and iPad",
            "Mac",
            "Thunderbird",
            "Outlook",
            "Android"
        ])
    );

    assert_eq!(
        out["qr"],
        "https://autoconfig.example.test/mobileconfig?emailaddress=al%2Bice@example.test",
        "the QR code holds the absolute profile URL"
    );
    assert_eq!(
        out["downloadHref"],
        "/mobileconfig?emailaddress=al%2Bice@example.test"
    );
    assert_eq!(out["downloadStatus"], 200);
    assert_eq!(
        out["downloadContentType"],
        "application/x-apple-aspen-config"
    );
    assert!(
        out["downloadStart"].as_str().unwrap().starts_with("<?xml"),
        "{}",
        out["downloadStart"]
    );
    assert_eq!(out["invalidStatus"], 400);
    assert_eq!(
        out["invalidError"],
        "An e-mail address needs an @, like name@example.com."
    );
    assert_eq!(
        out["invalidFocus"], "emailaddress",
        "the field to fix has focus"
    );
    let console = out["console"].as_array().unwrap();
    assert!(
        console.is_empty(),
        "console messages (CSP violations?): {console:?}"
    );
    for name in [
        "page.png",
        "page-desktop.png",
        "page-desktop-dark.png",
        "page-form.png",
        "page-invalid.png",
    ] {
        assert!(artifacts.join(name).is_file(), "{name}");
    }
    eprintln!(
        "screenshots in {}; timings {}",
        artifacts.display(),
        out["timingsMs"]
    );
    d.stop().await;
}
