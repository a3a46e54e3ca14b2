use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use super::*;
use crate::model::{Auth, Endpoint};

/// What a client would read back: one entry per element path with its text
/// and attributes, in document order.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    version: String,
    id: String,
    domains: Vec<String>,
    name: String,
    short_name: String,
    servers: Vec<ParsedServer>,
    dav: Vec<ParsedServer>,
}

#[derive(Debug, Default, PartialEq, Clone)]
struct ParsedServer {
    element: String,
    kind: String,
    hostname: String,
    port: String,
    socket_type: String,
    auth: Vec<String>,
    username: String,
    url: String,
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> String {
    e.try_get_attribute(name)
        .unwrap()
        .map(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .unwrap()
                .into_owned()
        })
        .unwrap_or_default()
}

fn parse(xml: &[u8]) -> Parsed {
    let text = std::str::from_utf8(xml).unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
    let mut r = Reader::from_str(text);
    let mut out = Parsed::default();
    let mut path: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut server = ParsedServer::default();
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) => {
                let name = e.name().as_ref().to_owned();
                match name.as_str() {
                    "clientConfig" => out.version = attr(&e, "version"),
                    "emailProvider" => out.id = attr(&e, "id"),
                    "incomingServer" | "outgoingServer" | "calendar" | "addressBook" => {
                        server = ParsedServer {
                            element: name.clone(),
                            kind: attr(&e, "type"),
                            ..Default::default()
                        }
                    }
                    _ => {}
                }
                path.push(name);
                buf.clear();
            }
            Event::Text(t) => buf.push_str(&t.xml10_content()),
            Event::GeneralRef(g) => {
                let c = g.resolve_char_ref().unwrap();
                match c {
                    Some(c) => buf.push(c),
                    None => buf.push_str(resolve_predefined_entity(&g).unwrap()),
                }
            }
            Event::End(_) => {
                let name = path.pop().unwrap();
                let v = std::mem::take(&mut buf);
                match name.as_str() {
                    "domain" => out.domains.push(v),
                    "displayName" => out.name = v,
                    "displayShortName" => out.short_name = v,
                    "hostname" => server.hostname = v,
                    "port" => server.port = v,
                    "socketType" => server.socket_type = v,
                    "authentication" => server.auth.push(v),
                    "username" => server.username = v,
                    "serverURL" => server.url = v,
                    "incomingServer" | "outgoingServer" => out.servers.push(server.clone()),
                    "calendar" | "addressBook" => out.dav.push(server.clone()),
                    _ => {}
                }
            }
            Event::Eof => break,
            Event::Decl(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(path.is_empty());
    out
}

fn mail(kind: ServerKind, host: &str, port: u16, security: Security, auth: &[Auth]) -> Server {
    Server {
        kind,
        endpoint: Endpoint::Host {
            host: host.to_owned(),
            port,
            security,
        },
        auth: auth.to_vec(),
        username: "%EMAILADDRESS%".to_owned(),
    }
}

fn dav(kind: ServerKind, url: &str) -> Server {
    Server {
        kind,
        endpoint: Endpoint::Url(url.to_owned()),
        auth: vec![Auth::PasswordCleartext],
        username: "%EMAILLOCALPART%".to_owned(),
    }
}

fn provider() -> Provider {
    Provider {
        id: "example.org".to_owned(),
        name: "Example Mail".to_owned(),
        short_name: "Example".to_owned(),
        domains: vec!["example.org".to_owned(), "example.net".to_owned()],
        servers: vec![
            mail(
                ServerKind::Imap,
                "imap.example.org",
                993,
                Security::Tls,
                &[Auth::OAuth2, Auth::PasswordCleartext],
            ),
            dav(ServerKind::CalDav, "https://dav.example.org/cal/?a=1&b=2"),
            mail(
                ServerKind::Smtp,
                "smtp.%EMAILDOMAIN%",
                587,
                Security::StartTls,
                &[Auth::PasswordEncrypted],
            ),
            mail(
                ServerKind::Pop3,
                "pop.example.org",
                110,
                Security::Plain,
                &[Auth::PasswordCleartext],
            ),
            Server {
                kind: ServerKind::ActiveSync,
                endpoint: Endpoint::Url(
                    "https://eas.example.org/Microsoft-Server-ActiveSync".to_owned(),
                ),
                auth: vec![Auth::PasswordCleartext],
                username: "%EMAILADDRESS%".to_owned(),
            },
            dav(ServerKind::CardDav, "https://dav.example.org/card/"),
        ],
        mta_sts: None,
        logo_url: None,
        support: None,
        oauth2: None,
        publish_pacc: false,
        user_display_name: None,
    }
}

#[test]
fn placeholders_are_kept_without_an_address() {
    let doc = render(&provider(), "example.net", None);
    assert_eq!(doc.content_type, crate::render::XML);
    let p = parse(&doc.body);
    assert_eq!(p.version, "1.1");
    assert_eq!(p.id, "example.org");
    assert_eq!(p.domains, ["example.net"], "only the asked domain");
    assert_eq!(p.name, "Example Mail");
    assert_eq!(p.short_name, "Example");
    let got: Vec<_> = p
        .servers
        .iter()
        .map(|s| {
            (
                s.element.as_str(),
                s.kind.as_str(),
                s.hostname.as_str(),
                s.port.as_str(),
                s.socket_type.as_str(),
                s.auth.join(","),
                s.username.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "incomingServer",
                "imap",
                "imap.example.org",
                "993",
                "SSL",
                "OAuth2,password-cleartext".to_owned(),
                "%EMAILADDRESS%"
            ),
            (
                "outgoingServer",
                "smtp",
                "smtp.%EMAILDOMAIN%",
                "587",
                "STARTTLS",
                "password-encrypted".to_owned(),
                "%EMAILADDRESS%"
            ),
            (
                "incomingServer",
                "pop3",
                "pop.example.org",
                "110",
                "plain",
                "password-cleartext".to_owned(),
                "%EMAILADDRESS%"
            ),
        ]
    );
    assert_eq!(p.dav.len(), 2, "activesync is not rendered here");
    assert_eq!(p.dav[0].element, "calendar");
    assert_eq!(p.dav[0].kind, "caldav");
    assert_eq!(p.dav[0].username, "%EMAILLOCALPART%");
    assert_eq!(p.dav[0].auth, ["http-basic"]);
    assert_eq!(p.dav[0].url, "https://dav.example.org/cal/?a=1&b=2");
    assert_eq!(p.dav[1].element, "addressBook");
    assert_eq!(p.dav[1].kind, "carddav");
    assert_eq!(p.dav[1].url, "https://dav.example.org/card/");
}

#[test]
fn address_is_substituted_in_hostname_and_username() {
    let a = EmailAddress::parse("Bob+tag@Example.NET").unwrap();
    let p = parse(&render(&provider(), a.domain(), Some(&a)).body);
    assert_eq!(p.servers[0].username, "Bob+tag@example.net");
    assert_eq!(p.servers[1].hostname, "smtp.example.net");
    assert_eq!(p.dav[0].username, "Bob+tag");
    assert!(
        !String::from_utf8(render(&provider(), a.domain(), Some(&a)).body)
            .unwrap()
            .contains('%')
    );
}

#[test]
fn layout_is_indented_declared_and_deterministic() {
    let doc = render(&provider(), "example.org", None);
    let text = String::from_utf8(doc.body.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    assert_eq!(lines[1], r#"<clientConfig version="1.1">"#);
    assert_eq!(lines[2], r#"  <emailProvider id="example.org">"#);
    assert_eq!(lines[3], "    <domain>example.org</domain>");
    assert!(lines.contains(&r#"    <incomingServer type="imap">"#));
    assert!(lines.contains(&"      <port>993</port>"));
    assert!(lines.contains(&r#"  <calendar type="caldav">"#));
    assert_eq!(lines.last(), Some(&"</clientConfig>"));
    assert!(text.ends_with("</clientConfig>\n"));
    // `&` in a URL must arrive escaped.
    assert!(text.contains("?a=1&amp;b=2"));
    assert_eq!(render(&provider(), "example.org", None), doc);
}

#[test]
fn hostile_names_are_escaped_and_parse_back_exactly() {
    let mut p = provider();
    p.id = "xn--bcher-kva.example".to_owned();
    p.name = r#"<&>"' Bücher & Söhne </displayName><x>"#.to_owned();
    p.short_name = "\"'<&>'\"".to_owned();
    p.domains = vec!["xn--bcher-kva.example".to_owned()];
    p.servers[0].username = r#"%EMAILLOCALPART%<&>"'"#.to_owned();
    let doc = render(&p, "xn--bcher-kva.example", None);
    let text = String::from_utf8(doc.body.clone()).unwrap();
    assert!(!text.contains("<x>"));
    assert!(!text.contains("</displayName><x>"));
    let back = parse(&doc.body);
    assert_eq!(back.id, p.id);
    assert_eq!(back.domains, p.domains);
    assert_eq!(back.name, p.name);
    assert_eq!(back.short_name, p.short_name);
    assert_eq!(back.servers[0].username, p.servers[0].username);

    // An address with `+`, `&` and `'` (all legal atext) and an IDN domain.
    let a = EmailAddress::parse("jörg+o'neil&co@Bücher.example").unwrap();
    let back = parse(&render(&p, a.domain(), Some(&a)).body);
    assert_eq!(back.servers[0].username, r#"jörg+o'neil&co<&>"'"#);
    assert_eq!(
        back.servers[1].username,
        "jörg+o'neil&co@xn--bcher-kva.example"
    );
    assert_eq!(back.servers[1].hostname, "smtp.xn--bcher-kva.example");
}

#[test]
fn renders_a_validated_config_with_an_idn_domain() {
    let config = crate::config::parse(
        r#"
        [[provider]]
        id = "bücher.example"
        name = "Bücher"
        domains = ["Bücher.example"]
        [[provider.server]]
        type = "imap"
        host = "imap.bücher.example"
        [[provider.server]]
        type = "smtp"
        host = "smtp.bücher.example"
        security = "starttls"
        "#,
    )
    .unwrap();
    let p = parse(&render(&config.providers[0], "xn--bcher-kva.example", None).body);
    assert_eq!(p.id, "xn--bcher-kva.example");
    assert_eq!(p.domains, ["xn--bcher-kva.example"]);
    assert_eq!(p.short_name, "Bücher");
    assert_eq!(p.servers[0].hostname, "imap.xn--bcher-kva.example");
    assert_eq!(p.servers[0].port, "993");
    assert_eq!(p.servers[1].port, "587");
    assert_eq!(p.servers[1].socket_type, "STARTTLS");
}

/// A hoster's provider: 10,000 customer domains. The answer names the asked
/// domain and no other, and stays the same small size as for one domain.
#[test]
fn a_provider_of_10000_domains_answers_with_the_asked_domain_only() {
    let mut p = provider();
    p.domains = (0..10_000)
        .map(|i| format!("customer{i}.example"))
        .collect();
    let a = EmailAddress::parse("alice@customer4711.example").unwrap();
    for (domain, address) in [
        ("customer4711.example", Some(&a)),
        ("customer9999.example", None),
    ] {
        let doc = render(&p, domain, address);
        let text = String::from_utf8(doc.body.clone()).unwrap();
        let back = parse(&doc.body);
        assert_eq!(back.domains, [domain]);
        // Substituted usernames and hosts name it too; nothing names another.
        for (at, _) in text.match_indices("customer") {
            assert!(text[at..].starts_with(domain), "{text}");
        }
        assert!(doc.body.len() < 4096, "{} bytes", doc.body.len());
    }
}
