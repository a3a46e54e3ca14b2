//! Invariant checks shared by the fuzz targets: what "well-formed" means for
//! each kind of document mailconfd sends. A failed check panics, which
//! libFuzzer records as a crash with the input that caused it.

use mailconfd::address::{EmailAddress, check_hostname};
use mailconfd::config::Config;
use mailconfd::model::Provider;
use mailconfd::render::{self, Document, autodiscover, mobileconfig, mta_sts, thunderbird};
use quick_xml::Reader;
use quick_xml::events::Event;

/// A config with every kind of server, MTA-STS, and an IDN provider whose
/// names need escaping: the router and render checks run against it.
pub const ROUTER_CONFIG: &str = concat!(
    include_str!("../../tests/golden/full/config.toml"),
    "\n",
    include_str!("../../tests/golden/hostile/config.toml"),
);

/// `ROUTER_CONFIG`, parsed once per process.
pub fn router_config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| mailconfd::config::parse(ROUTER_CONFIG).expect("fuzz router config"))
}

/// Reads `body` to the end with quick-xml: one root element, matching end
/// tags, UTF-8, no text outside the root.
pub fn assert_well_formed_xml(body: &[u8]) {
    well_formed_xml(body, false);
}

/// As `assert_well_formed_xml`; a plist carries Apple's fixed DOCTYPE.
fn well_formed_xml(body: &[u8], plist: bool) {
    let text = std::str::from_utf8(body).expect("XML document is UTF-8");
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
            }
            Ok(Event::Empty(_)) => {
                if depth == 0 {
                    roots += 1;
                }
            }
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::Text(t)) => {
                let s = t.xml10_content();
                if depth == 0 {
                    assert!(
                        s.chars().all(|c| c.is_ascii_whitespace()),
                        "text outside the root element: {text}"
                    );
                }
                assert_xml_chars(&s, text);
            }
            Ok(Event::CData(c)) => assert_xml_chars(&c.xml10_content(), text),
            Ok(Event::GeneralRef(r)) => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => assert_xml_chars(&c.to_string(), text),
                        _ => panic!("bad character reference in {text}"),
                    }
                } else {
                    assert!(
                        quick_xml::escape::resolve_predefined_entity(&r).is_some(),
                        "undefined entity in {text}"
                    );
                }
            }
            Ok(Event::Eof) => break,
            Ok(Event::DocType(d)) => assert!(
                plist && d.trim_start().starts_with("plist PUBLIC"),
                "DOCTYPE in a document we wrote: {text}"
            ),
            Ok(_) => {}
            Err(e) => panic!("not well-formed: {e}\n{text}"),
        }
    }
    assert_eq!(depth, 0, "unclosed element: {text}");
    assert_eq!(roots, 1, "not exactly one root element: {text}");
}

/// XML 1.0 `Char`: no C0 controls but tab/CR/LF, no U+FFFE/U+FFFF.
fn assert_xml_chars(s: &str, doc: &str) {
    assert!(
        !s.chars()
            .any(|c| (c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
                || c == '\u{fffe}'
                || c == '\u{ffff}'),
        "character XML 1.0 does not allow: {doc}"
    );
}

/// Checks a document by its content type: XML well-formed, JSON parses,
/// a mobileconfig is a plist, text is UTF-8.
pub fn assert_document(doc: &Document) {
    match doc.content_type {
        render::XML => assert_well_formed_xml(&doc.body),
        render::JSON => {
            serde_json::from_slice::<serde_json::Value>(&doc.body).expect("JSON parses");
        }
        render::MOBILECONFIG => {
            plist::from_bytes::<plist::Value>(&doc.body).expect("plist parses");
            well_formed_xml(&doc.body, true);
        }
        _ => {
            std::str::from_utf8(&doc.body).expect("text document is UTF-8");
        }
    }
    if let Some(name) = &doc.filename {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')),
            "unsafe file name {name:?}"
        );
    }
}

/// What every accepted address must satisfy (see `address.rs`'s promise).
pub fn assert_valid_address(a: &EmailAddress) {
    let s = a.to_string();
    assert_eq!(s, format!("{}@{}", a.local_part(), a.domain()));
    assert!(s.len() <= mailconfd::address::MAX_ADDRESS_BYTES, "{s:?}");
    assert!(
        !a.local_part().is_empty() && a.local_part().len() <= 64,
        "{s:?}"
    );
    assert!(
        !s.chars().any(|c| c.is_control() || c.is_whitespace()),
        "control or space in {s:?}"
    );
    assert!(!s.contains(['<', '>', '"', '\\']), "markup in {s:?}");
    check_hostname(a.domain()).unwrap_or_else(|e| panic!("domain of {s:?}: {e}"));
    // Round trip: what we print parses back to the same address.
    let again = EmailAddress::parse(&s).unwrap_or_else(|e| panic!("{s:?} does not re-parse: {e}"));
    assert_eq!(&again, a, "{s:?} re-parses differently");
}

/// Renders every client document for `provider`'s mail domain `domain` (and
/// `address`, when the provider serves it) and checks each one.
pub fn assert_renders(provider: &Provider, domain: &str, address: Option<&EmailAddress>) {
    assert_document(&thunderbird::render(provider, domain, address));
    if let Some(a) = address {
        for schema in [
            autodiscover::ResponseSchema::Outlook2006a,
            autodiscover::ResponseSchema::MobileSync2006,
            autodiscover::ResponseSchema::Other("x".into()),
        ] {
            assert_document(&autodiscover::render(provider, a, &schema));
        }
        assert_document(&mobileconfig::render(provider, a).clone());
        for protocol in ["AutodiscoverV1", "ActiveSync", "x"] {
            assert_document(&autodiscover::render_json(provider, a, protocol).document);
        }
    }
    if let Some(policy) = &provider.mta_sts {
        assert_document(&mta_sts::render(policy));
    }
}
