use quick_xml::Reader;
use quick_xml::events::Event;

use super::*;
use crate::config;

/// Every element's text, keyed by its slash-joined path, with the `Protocol`
/// blocks split out: `(top-level fields, [protocol fields])`.
type Fields = Vec<(String, String)>;

fn parse_back(body: &[u8]) -> (Fields, Vec<Fields>) {
    let mut r = Reader::from_str(std::str::from_utf8(body).unwrap());
    r.config_mut().expand_empty_elements = true;
    let (mut top, mut protocols) = (Vec::new(), Vec::<Fields>::new());
    // (name, text so far, has child elements)
    let mut stack: Vec<(String, String, bool)> = Vec::new();
    loop {
        match r.read_event().unwrap() {
            Event::Start(s) => {
                let name = s.local_name().as_ref().to_owned();
                if let Some(parent) = stack.last_mut() {
                    parent.2 = true;
                }
                if name == "Protocol" {
                    protocols.push(Vec::new());
                }
                let mut path: Vec<&str> = stack.iter().map(|e| e.0.as_str()).collect();
                path.push(&name);
                for a in s.attributes() {
                    let a = a.unwrap();
                    let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0);
                    let key = format!("{}/@{}", path.join("/"), a.key.0);
                    top.push((key, v.unwrap().into_owned()));
                }
                stack.push((name, String::new(), false));
            }
            Event::End(_) => {
                let path: Vec<&str> = stack.iter().map(|e| e.0.as_str()).collect();
                let path = path.join("/");
                let (name, text, has_children) = stack.pop().unwrap();
                if has_children || name == "Protocol" {
                    continue;
                }
                if stack.iter().any(|e| e.0 == "Protocol") {
                    protocols.last_mut().unwrap().push((name, text));
                } else {
                    top.push((path, text));
                }
            }
            Event::Text(t) => {
                if let Some(e) = stack.last_mut() {
                    e.1.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(g) => {
                let c = quick_xml::escape::resolve_predefined_entity(&g).unwrap();
                stack.last_mut().unwrap().1.push_str(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    (top, protocols)
}

fn get<'a>(fields: &'a Fields, key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const CONFIG: &str = r#"
[[provider]]
id = "example.com"
name = "Example <&> \"Mail\" 'x'"
domains = ["example.com"]
  [[provider.server]]
  type = "imap"
  host = "imap.%EMAILDOMAIN%"
  [[provider.server]]
  type = "caldav"
  url = "https://dav.example.com/cal/%EMAILADDRESS%"
  [[provider.server]]
  type = "pop3"
  host = "pop.example.com"
  security = "starttls"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.com"
  security = "starttls"
  [[provider.server]]
  type = "smtp"
  host = "legacy.example.com"
  security = "plain"
  port = 25
  auth = "none"
"#;

fn provider(text: &str) -> Provider {
    let c = config::parse(text).unwrap();
    c.provider_for_domain("example.com").unwrap().clone()
}

fn addr() -> EmailAddress {
    EmailAddress::parse("o'&x@Example.com").unwrap()
}

#[test]
fn outlook_settings_field_by_field() {
    let d = render(&provider(CONFIG), &addr(), &ResponseSchema::Outlook2006a);
    assert_eq!(d.content_type, crate::render::XML);
    let (top, protocols) = parse_back(&d.body);
    assert_eq!(get(&top, "Autodiscover/@xmlns"), Some(RESPONSE_NS));
    assert_eq!(
        get(&top, "Autodiscover/Response/@xmlns"),
        Some(OUTLOOK_RESPONSE_NS)
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/User/DisplayName"),
        Some("o'&x@example.com")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Account/AccountType"),
        Some("email")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Account/Action"),
        Some("settings")
    );
    let want: [&[(&str, &str)]; 5] = [
        &[
            ("Type", "IMAP"),
            ("Server", "imap.example.com"),
            ("Port", "993"),
            ("LoginName", "o'&x@example.com"),
            ("DomainRequired", "off"),
            ("SPA", "off"),
            ("SSL", "on"),
            ("Encryption", "SSL"),
            ("AuthRequired", "on"),
        ],
        &[
            ("Type", "POP3"),
            ("Server", "pop.example.com"),
            ("Port", "110"),
            ("LoginName", "o'&x"),
            ("DomainRequired", "off"),
            ("SPA", "off"),
            ("SSL", "on"),
            ("Encryption", "TLS"),
            ("AuthRequired", "on"),
        ],
        &[
            ("Type", "SMTP"),
            ("Server", "smtp.example.com"),
            ("Port", "587"),
            ("LoginName", "o'&x@example.com"),
            ("DomainRequired", "off"),
            ("SPA", "off"),
            ("SSL", "on"),
            ("Encryption", "TLS"),
            ("AuthRequired", "on"),
            ("UsePOPAuth", "on"),
            ("SMTPLast", "off"),
        ],
        &[
            ("Type", "SMTP"),
            ("Server", "legacy.example.com"),
            ("Port", "25"),
            ("LoginName", "o'&x@example.com"),
            ("DomainRequired", "off"),
            ("SPA", "off"),
            ("SSL", "off"),
            ("Encryption", "None"),
            ("AuthRequired", "off"),
            ("UsePOPAuth", "off"),
            ("SMTPLast", "off"),
        ],
        &[
            ("Type", "CalDAV"),
            ("Server", "https://dav.example.com/cal/o%27%26x@example.com"),
            ("DomainRequired", "off"),
            ("LoginName", "o'&x@example.com"),
        ],
    ];
    assert_eq!(protocols.len(), want.len());
    for (got, want) in protocols.iter().zip(want) {
        let want: Fields = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, &want);
    }
}

#[test]
fn hostile_text_is_escaped() {
    let d = render(&provider(CONFIG), &addr(), &ResponseSchema::Outlook2006a);
    let body = String::from_utf8(d.body).unwrap();
    assert!(body.contains("o&apos;&amp;x@example.com"), "{body}");
    assert!(!body.contains("'&x"));
    // The provider's display name has no slot in the Outlook schema.
    assert!(!body.contains("Example <"));
}

#[test]
fn spa_follows_ntlm_and_smtp_after_pop_sets_smtplast() {
    let text = CONFIG
        .replace(
            "host = \"imap.%EMAILDOMAIN%\"",
            "host = \"imap.%EMAILDOMAIN%\"\n  auth = [\"NTLM\", \"password-cleartext\"]",
        )
        .replace("auth = \"none\"", "auth = \"smtp-after-pop\"");
    let d = render(&provider(&text), &addr(), &ResponseSchema::Outlook2006a);
    let (_, protocols) = parse_back(&d.body);
    assert_eq!(get(&protocols[0], "SPA"), Some("on"));
    assert_eq!(get(&protocols[1], "SPA"), Some("off"));
    assert_eq!(get(&protocols[3], "SMTPLast"), Some("on"));
    assert_eq!(get(&protocols[3], "AuthRequired"), Some("off"));
}

#[test]
fn use_pop_auth_only_when_logins_match() {
    let text = CONFIG.replace(
        "host = \"smtp.example.com\"",
        "host = \"smtp.example.com\"\n  username = \"%EMAILLOCALPART%\"",
    );
    let d = render(&provider(&text), &addr(), &ResponseSchema::Outlook2006a);
    let (_, protocols) = parse_back(&d.body);
    assert_eq!(get(&protocols[2], "UsePOPAuth"), Some("off"));
    assert_eq!(get(&protocols[2], "LoginName"), Some("o'&x"));
}

const EAS: &str = r#"
  [[provider.server]]
  type = "activesync"
  url = "https://eas.%EMAILDOMAIN%/Microsoft-Server-ActiveSync"
"#;

#[test]
fn mobilesync_with_activesync() {
    let p = provider(&format!("{CONFIG}{EAS}"));
    let d = render(&p, &addr(), &ResponseSchema::MobileSync2006);
    let (top, protocols) = parse_back(&d.body);
    assert!(protocols.is_empty());
    let url = "https://eas.example.com/Microsoft-Server-ActiveSync";
    for (key, want) in [
        ("Autodiscover/Response/@xmlns", MOBILESYNC_RESPONSE_NS),
        ("Autodiscover/Response/Culture", "en:us"),
        (
            "Autodiscover/Response/User/EMailAddress",
            "o'&x@example.com",
        ),
        (
            "Autodiscover/Response/Action/Settings/Server/Type",
            "MobileSync",
        ),
        ("Autodiscover/Response/Action/Settings/Server/Url", url),
        ("Autodiscover/Response/Action/Settings/Server/Name", url),
    ] {
        assert_eq!(get(&top, key), Some(want), "{key}");
    }
    // The Outlook schema does not advertise ActiveSync.
    let d = render(&p, &addr(), &ResponseSchema::Outlook2006a);
    assert!(!String::from_utf8(d.body).unwrap().contains("eas."));
}

#[test]
fn mobilesync_without_activesync_is_error_601() {
    let d = render_with_time(
        &provider(CONFIG),
        &addr(),
        &ResponseSchema::MobileSync2006,
        "12:34:56.0000000",
    );
    let (top, _) = parse_back(&d.body);
    assert_eq!(
        get(&top, "Autodiscover/Response/@xmlns"),
        Some(MOBILESYNC_RESPONSE_NS)
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/ErrorCode"),
        Some("601")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/@Time"),
        Some("12:34:56.0000000")
    );
}

#[test]
fn other_schema_is_error_601() {
    let d = render(
        &provider(CONFIG),
        &addr(),
        &ResponseSchema::Other("urn:x".into()),
    );
    let (top, _) = parse_back(&d.body);
    assert_eq!(get(&top, "Autodiscover/Response/@xmlns"), None);
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/ErrorCode"),
        Some("601")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/Message"),
        Some("Requested schema is not available")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/@Time"),
        Some(FALLBACK_TIME_OF_DAY)
    );
}

#[test]
fn error_document_is_deterministic_and_escapes_time() {
    let a = render_error(ErrorCode::InvalidRequest, "1\"<&");
    assert_eq!(a, render_error(ErrorCode::InvalidRequest, "1\"<&"));
    let (top, _) = parse_back(&a.body);
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/@Time"),
        Some("1\"<&")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/@Id"),
        Some(error_id().as_str())
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/ErrorCode"),
        Some("600")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/Message"),
        Some("Invalid Request")
    );
    assert!(String::from_utf8(a.body).unwrap().contains("<DebugData/>"));
}

#[test]
fn same_input_same_bytes() {
    let p = provider(CONFIG);
    let s = ResponseSchema::Outlook2006a;
    assert_eq!(render(&p, &addr(), &s), render(&p, &addr(), &s));
}

#[test]
fn domain_answer_fills_the_domain_and_leaves_out_what_needs_an_address() {
    let d = render_for_domain(&provider(CONFIG), "example.com");
    let (top, protocols) = parse_back(&d.body);
    assert_eq!(
        get(&top, "Autodiscover/Response/@xmlns"),
        Some(OUTLOOK_RESPONSE_NS)
    );
    // Nobody's name or address: no <User>.
    assert!(top.iter().all(|(k, _)| !k.contains("/User")), "{top:?}");
    // imap.%EMAILDOMAIN% filled in; the default login (%EMAILADDRESS%) is
    // left out, so clients use the typed address.
    assert_eq!(get(&protocols[0], "Type"), Some("IMAP"));
    assert_eq!(get(&protocols[0], "Server"), Some("imap.example.com"));
    assert_eq!(get(&protocols[0], "LoginName"), None);
    assert_eq!(get(&protocols[1], "Type"), Some("POP3"));
    assert_eq!(get(&protocols[1], "LoginName"), None);
    assert_eq!(get(&protocols[2], "Type"), Some("SMTP"));
    assert_eq!(get(&protocols[3], "Type"), Some("SMTP"));
    // The CalDAV URL needs the address: left out, not sent with a placeholder.
    assert_eq!(protocols.len(), 4, "{protocols:?}");
    assert!(!String::from_utf8_lossy(&d.body).contains('%'));
}

#[test]
fn domain_answer_keeps_use_pop_auth_for_equal_templates() {
    let d = render_for_domain(&provider(CONFIG), "example.com");
    let (_, protocols) = parse_back(&d.body);
    // smtp.example.com and imap share the default %EMAILADDRESS% login.
    assert_eq!(get(&protocols[2], "UsePOPAuth"), Some("on"));
}

#[test]
fn address_answer_is_unchanged_by_the_domain_variant() {
    // The golden files pin the bytes; here: the address answer still has
    // every login and the DAV block.
    let d = render(&provider(CONFIG), &addr(), &ResponseSchema::Outlook2006a);
    let (_, protocols) = parse_back(&d.body);
    assert_eq!(protocols.len(), 5);
    assert!(protocols.iter().all(|p| get(p, "LoginName").is_some()));
}
