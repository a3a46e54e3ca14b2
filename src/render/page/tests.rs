use super::*;
use crate::model::{Auth, Endpoint, Security, ServerKind};

fn provider() -> Provider {
    let server = |kind, host: &str, port, security| Server {
        kind,
        endpoint: Endpoint::Host {
            host: host.to_owned(),
            port,
            security,
        },
        auth: vec![Auth::PasswordCleartext],
        username: "%EMAILLOCALPART%".to_owned(),
    };
    Provider {
        id: "example.com".to_owned(),
        name: "<script>alert(1)</script> & \"Co\" 'x'".to_owned(),
        short_name: "Ex".to_owned(),
        domains: vec!["example.com".to_owned()],
        servers: vec![
            server(ServerKind::Imap, "imap.%EMAILDOMAIN%", 993, Security::Tls),
            server(
                ServerKind::Smtp,
                "smtp.example.com",
                587,
                Security::StartTls,
            ),
        ],
        mta_sts: None,
        logo_url: Some("https://Static.Example.com:8443/logo.svg?a=1&b=2".to_owned()),
        support: Some("mailto:help@example.com".to_owned()),
        oauth2: None,
        publish_pacc: false,
        user_display_name: None,
    }
}

fn body(r: &Rendered) -> &str {
    std::str::from_utf8(&r.document.body).unwrap()
}

#[test]
fn hostile_provider_name_and_typed_input_are_escaped() {
    let error = AddressError::MissingAt;
    let typed = "\"><script>alert(1)</script>";
    let r = render(
        &provider(),
        View::Invalid {
            typed,
            error: &error,
        },
        Lang::En,
    );
    let html = body(&r);
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot; &#39;x&#39;")
    );
    assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert!(html.contains("aria-invalid"));
    assert!(html.contains(strings::EN.error_no_at));
    assert_eq!(r.outcome, Outcome::Invalid);
}

#[test]
fn settings_show_expanded_servers_profile_link_and_qr() {
    let a = EmailAddress::parse("al+ice@example.com").unwrap();
    let r = render(&provider(), View::Settings { address: &a }, Lang::En);
    let html = body(&r);
    assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
    assert!(html.contains("imap.example.com"));
    assert!(html.contains(">993<"));
    assert!(html.contains(strings::EN.security_words.starttls));
    assert!(html.contains("<td class=\"mono\">al+ice</td>"));
    assert!(html.contains("href=\"/mobileconfig?emailaddress=al%2Bice@example.com\""));
    assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(html.contains("href=\"mailto:help@example.com\""));
    assert!(!html.contains("<script"));
    assert_eq!(r.outcome, Outcome::Settings);
    assert!(r.outcome.is_personal());
    assert_eq!(
        profile_url(&a),
        "https://autoconfig.example.com/mobileconfig?emailaddress=al%2Bice@example.com"
    );
}

#[test]
fn german_page_is_german() {
    let a = EmailAddress::parse("bob@example.com").unwrap();
    let r = render(&provider(), View::Settings { address: &a }, Lang::De);
    let html = body(&r);
    assert!(html.contains("<html lang=\"de\">"));
    assert!(html.contains("Einstellungen für bob@example.com"));
    assert!(html.contains("Profil herunterladen"));
}

#[test]
fn csp_allows_the_style_hash_and_only_an_https_logo_origin() {
    let r = render(&provider(), View::Form, Lang::En);
    assert!(r.csp.starts_with("default-src 'none'; style-src 'sha256-"));
    assert!(
        r.csp
            .contains("img-src data: https://static.example.com:8443;")
    );
    assert!(r.csp.contains("frame-ancestors 'none'"));
    assert!(body(&r).contains("<img src=\"https://Static.Example.com:8443/logo.svg?a=1&amp;b=2\""));
    assert!(!r.outcome.is_personal());

    let mut p = provider();
    for url in ["http://example.com/logo.png", "https://%EMAILDOMAIN%/x.png"] {
        p.logo_url = Some(url.to_owned());
        let r = render(&p, View::Form, Lang::En);
        assert!(r.csp.contains("img-src data:;"), "{url}: {}", r.csp);
        assert!(!body(&r).contains("<img"), "{url}");
    }
}

#[test]
fn style_hash_matches_the_style_element() {
    let r = render(&provider(), View::Form, Lang::En);
    let html = body(&r);
    let css = html
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .unwrap()
        .0;
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(css));
    assert!(r.csp.contains(&format!("'sha256-{digest}'")));
}

#[test]
fn unknown_domain_is_polite_and_names_the_domain() {
    let a = EmailAddress::parse("x@elsewhere.example").unwrap();
    let r = render(&provider(), View::UnknownDomain { address: &a }, Lang::En);
    assert!(body(&r).contains("we do not provide e-mail for elsewhere.example"));
    assert_eq!(r.outcome, Outcome::UnknownDomain);
}

#[test]
fn same_input_same_bytes() {
    let a = EmailAddress::parse("bob@example.com").unwrap();
    let one = render(&provider(), View::Settings { address: &a }, Lang::En);
    let two = render(&provider(), View::Settings { address: &a }, Lang::En);
    assert_eq!(one.document, two.document);
}
