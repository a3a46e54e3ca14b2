//! Real client requests (the shared corpus) through the whole chain: parse the
//! body, validate the address, look up the provider, render, parse the answer
//! back and check it field by field.

use std::path::PathBuf;

use mailconfd::address::EmailAddress;
use mailconfd::config;
use mailconfd::render::autodiscover::{
    self, ErrorCode, MAX_REQUEST_BYTES, RequestError, ResponseSchema,
};
use quick_xml::Reader;
use quick_xml::events::Event;

const CONFIG: &str = r#"
[[provider]]
id = "example.com"
name = "Example <b>&amp;</b>"
domains = ["example.com", "example.org", "contoso.com"]
  [[provider.server]]
  type = "imap"
  host = "imap.%EMAILDOMAIN%"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.com"
  security = "starttls"
"#;

const EAS: &str = r#"
  [[provider.server]]
  type = "activesync"
  url = "https://eas.example.com/Microsoft-Server-ActiveSync"
"#;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/corpus/autodiscover-requests");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "corpus changed: {files:?}");
    files
}

/// Leaf elements as (slash-joined path, text), attributes as `path/@name`.
fn leaves(body: &[u8]) -> Vec<(String, String)> {
    let mut r = Reader::from_str(std::str::from_utf8(body).unwrap());
    r.config_mut().expand_empty_elements = true;
    let mut out = Vec::new();
    // (name, text so far, has child elements)
    let mut stack: Vec<(String, String, bool)> = Vec::new();
    loop {
        match r.read_event().unwrap() {
            Event::Start(s) => {
                if let Some(parent) = stack.last_mut() {
                    parent.2 = true;
                }
                let name = s.local_name().as_ref().to_owned();
                let mut path: Vec<&str> = stack.iter().map(|e| e.0.as_str()).collect();
                path.push(&name);
                for a in s.attributes() {
                    let a = a.unwrap();
                    let v = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap();
                    out.push((format!("{}/@{}", path.join("/"), a.key.0), v.into_owned()));
                }
                stack.push((name, String::new(), false));
            }
            Event::End(_) => {
                let path: Vec<&str> = stack.iter().map(|e| e.0.as_str()).collect();
                let path = path.join("/");
                let (_, text, has_children) = stack.pop().unwrap();
                if !has_children {
                    out.push((path, text));
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
    out
}

/// The `Protocol` blocks of an Outlook answer, each as (leaf name, text).
fn protocols(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let prefix = "Autodiscover/Response/Account/Protocol/";
    let mut blocks: Vec<Vec<(String, String)>> = Vec::new();
    for (path, text) in leaves(body) {
        let Some(leaf) = path.strip_prefix(prefix) else {
            continue;
        };
        if leaf == "Type" {
            blocks.push(Vec::new());
        }
        blocks.last_mut().unwrap().push((leaf.to_owned(), text));
    }
    blocks
}

fn get<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What the HTTP layer does with a POX body.
fn answer(config_text: &str, body: &[u8]) -> (EmailAddress, ResponseSchema, Vec<u8>) {
    let c = config::parse(config_text).unwrap();
    let req = autodiscover::parse_request(body).unwrap();
    let address = req.address().unwrap();
    let provider = c.provider_for_domain(address.domain()).unwrap();
    let doc = autodiscover::render_with_time(provider, &address, &req.schema, "10:11:12.0000000");
    assert_eq!(doc.content_type, "text/xml; charset=utf-8");
    (address, req.schema, doc.body)
}

fn check_outlook(name: &str, address: &EmailAddress, out: &[u8]) {
    let top = leaves(out);
    let shown = address.to_string();
    assert_eq!(
        get(&top, "Autodiscover/Response/User/DisplayName"),
        Some(shown.as_str()),
        "{name}"
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Account/AccountType"),
        Some("email")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Account/Action"),
        Some("settings")
    );
    let p = protocols(out);
    assert_eq!(
        p.len(),
        2,
        "{name}: ActiveSync never appears in Outlook answers"
    );
    let imap_host = format!("imap.{}", address.domain());
    let want = [
        [
            ("Type", "IMAP"),
            ("Server", imap_host.as_str()),
            ("Port", "993"),
            ("SSL", "on"),
            ("Encryption", "SSL"),
        ],
        [
            ("Type", "SMTP"),
            ("Server", "smtp.example.com"),
            ("Port", "587"),
            ("SSL", "on"),
            ("Encryption", "TLS"),
        ],
    ];
    for (block, want) in p.iter().zip(want) {
        for (k, v) in want {
            assert_eq!(get(block, k), Some(v), "{name} {k}");
        }
        assert_eq!(get(block, "LoginName"), Some(shown.as_str()), "{name}");
        assert_eq!(get(block, "SPA"), Some("off"));
        assert_eq!(get(block, "AuthRequired"), Some("on"));
        assert_eq!(get(block, "DomainRequired"), Some("off"));
    }
    assert_eq!(get(&p[0], "UsePOPAuth"), None);
    assert_eq!(get(&p[1], "UsePOPAuth"), Some("on"));
    assert_eq!(get(&p[1], "SMTPLast"), Some("off"));
}

#[test]
fn every_corpus_request_is_answered() {
    for eas in [false, true] {
        let config_text = if eas {
            format!("{CONFIG}{EAS}")
        } else {
            CONFIG.to_owned()
        };
        for (name, body) in corpus() {
            let (address, schema, out) = answer(&config_text, &body);
            let top = leaves(&out);
            let mobile = name.contains("mobilesync");
            let want_schema = if mobile {
                ResponseSchema::MobileSync2006
            } else {
                ResponseSchema::Outlook2006a
            };
            assert_eq!(schema, want_schema, "{name}");
            if !mobile {
                check_outlook(&name, &address, &out);
            } else if eas {
                let base = "Autodiscover/Response/Action/Settings/Server/";
                assert_eq!(get(&top, &format!("{base}Type")), Some("MobileSync"));
                let url = "https://eas.example.com/Microsoft-Server-ActiveSync";
                assert_eq!(get(&top, &format!("{base}Url")), Some(url));
                assert_eq!(get(&top, &format!("{base}Name")), Some(url));
                assert_eq!(
                    get(&top, "Autodiscover/Response/User/EMailAddress"),
                    Some(address.to_string().as_str())
                );
            } else {
                assert_eq!(
                    get(&top, "Autodiscover/Response/Error/ErrorCode"),
                    Some("601")
                );
                assert_eq!(
                    get(&top, "Autodiscover/Response/Error/@Time"),
                    Some("10:11:12.0000000")
                );
            }
        }
    }
}

fn with_email(inner: &str) -> String {
    format!("<Autodiscover><Request><EMailAddress>{inner}</EMailAddress></Request></Autodiscover>")
}

fn refused(name: &str, body: &[u8]) -> RequestError {
    match autodiscover::parse_request(body) {
        Err(e) => e,
        Ok(r) => panic!("{name}: accepted as {r:?}"),
    }
}

#[test]
fn external_entity_is_refused() {
    let xxe = r#"<?xml version="1.0"?>
<!DOCTYPE Autodiscover [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Autodiscover><Request><EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>"#;
    assert!(matches!(
        refused("xxe", xxe.as_bytes()),
        RequestError::Doctype
    ));
}

#[test]
fn entity_bomb_is_refused() {
    let mut bomb =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol0 \"lol\">\n");
    for i in 1..10 {
        let refs = format!("&lol{};", i - 1).repeat(10);
        bomb.push_str(&format!("<!ENTITY lol{i} \"{refs}\">\n"));
    }
    bomb.push_str("]>\n");
    bomb.push_str(&with_email("&lol9;"));
    assert!(matches!(
        refused("bomb", bomb.as_bytes()),
        RequestError::Doctype
    ));
    // Without the declarations the reference is simply unknown.
    assert!(matches!(
        refused("bare ref", with_email("&lol9;").as_bytes()),
        RequestError::UnknownEntity
    ));
}

#[test]
fn doctype_alone_is_refused() {
    let body = b"<!DOCTYPE Autodiscover><Autodiscover/>";
    assert!(matches!(refused("doctype", body), RequestError::Doctype));
}

#[test]
fn nine_kib_body_is_refused() {
    let body = with_email(&format!("{}@example.com", "a".repeat(9 * 1024)));
    assert!(body.len() > MAX_REQUEST_BYTES);
    assert!(matches!(
        refused("9 KiB", body.as_bytes()),
        RequestError::TooLarge
    ));
}

#[test]
fn invalid_utf8_is_refused() {
    let mut body = with_email("aX@example.com").into_bytes();
    let at = body.iter().position(|&b| b == b'X').unwrap();
    body[at] = 0xC3; // a lead byte followed by '@': not UTF-8
    assert!(matches!(refused("utf-8", &body), RequestError::NotUtf8));
}

#[test]
fn deep_nesting_is_refused() {
    let body = format!(
        "<Autodiscover>{}{}</Autodiscover>",
        "<a>".repeat(1_000),
        "</a>".repeat(1_000)
    );
    assert!(matches!(
        refused("deep", body.as_bytes()),
        RequestError::TooDeep
    ));
}

#[test]
fn missing_address_is_refused() {
    let body = b"<Autodiscover><Request><AcceptableResponseSchema>x</AcceptableResponseSchema></Request></Autodiscover>";
    assert!(matches!(
        refused("no address", body),
        RequestError::MissingEmail
    ));
}

#[test]
fn escaped_markup_in_the_address_is_refused_by_the_address_check() {
    for payload in [
        "&lt;script&gt;alert(1)&lt;/script&gt;@example.com",
        "a&lt;b@example.com",
        "<![CDATA[a<b]]>@example.com",
        "a&#x3c;b@example.com",
        "a&#10;b@example.com",
    ] {
        let req = autodiscover::parse_request(with_email(payload).as_bytes()).unwrap();
        assert!(
            req.email.contains(['<', '\n']),
            "{payload} -> {}",
            req.email
        );
        assert!(req.address().is_err(), "{payload} accepted");
    }
}

#[test]
fn legal_but_hostile_local_part_is_escaped_in_the_answer() {
    let body = with_email("o'&amp;{x}@example.com");
    let (address, _, out) = answer(CONFIG, body.as_bytes());
    assert_eq!(address.local_part(), "o'&{x}");
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(!text.contains("'&{"), "{text}");
    assert!(
        !text.contains("<b>"),
        "provider name leaked into the answer"
    );
    let p = protocols(&out);
    assert_eq!(get(&p[0], "LoginName"), Some("o'&{x}@example.com"));
}

#[test]
fn error_document_round_trips() {
    let d = autodiscover::render_error(ErrorCode::InvalidRequest, "23:59:59.1234567");
    let top = leaves(&d.body);
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/ErrorCode"),
        Some("600")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/Message"),
        Some("Invalid Request")
    );
    assert_eq!(
        get(&top, "Autodiscover/Response/Error/@Time"),
        Some("23:59:59.1234567")
    );
    let id = get(&top, "Autodiscover/Response/Error/@Id").unwrap();
    assert!(id.parse::<u32>().is_ok(), "{id}");
}

#[test]
fn json_answers_for_corpus_addresses() {
    let c = config::parse(CONFIG).unwrap();
    let a = EmailAddress::parse("john@example.com").unwrap();
    let p = c.provider_for_domain(a.domain()).unwrap();
    let ans = autodiscover::render_json(p, &a, "AutoDiscoverV1");
    assert_eq!(ans.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&ans.document.body).unwrap();
    assert_eq!(v["Protocol"], "AutodiscoverV1");
    assert_eq!(
        v["Url"],
        "https://autodiscover.example.com/autodiscover/autodiscover.xml"
    );
    let path = "/autodiscover/autodiscover.json/v1.0/john@example.com";
    assert_eq!(
        autodiscover::address_from_json_path(path),
        Some("john@example.com")
    );
}
