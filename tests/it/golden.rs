//! Golden files: `tests/golden/<case>/` holds `config.toml`, `request.txt` (the
//! address, one line) and every document rendered for them. Each run renders
//! them again and compares bytes; `UPDATE_GOLDEN=1 cargo test --test it golden`
//! rewrites them instead, and the diff is reviewed in the commit.
//!
//! Byte equality alone would bless whatever the renderer once wrote, so every
//! output is also parsed back (quick-xml, plist, serde_json, line by line) and
//! checked field by field against the config.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mailconfd::address::EmailAddress;
use mailconfd::config::{self, Config};
use mailconfd::model::{Auth, Endpoint, Provider, Security, Server, ServerKind};
use mailconfd::render::autodiscover::{self, ResponseSchema};
use mailconfd::render::{dns, mobileconfig, mta_sts, pacc, thunderbird};
use plist::{Dictionary, Value};
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

/// The `Time` passed to the POX renderer; only error documents show it.
const FIXED_TIME: &str = "12:34:56.0000000";
const OUTLOOK_REQUEST_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
const MOBILESYNC_REQUEST_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006";

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

struct Case {
    name: String,
    config: Config,
    /// `config.toml` as plain TOML, to compare display strings with what the
    /// operator wrote rather than with what validation made of it.
    raw: toml::Table,
    address: EmailAddress,
}

impl Case {
    fn load(dir: &Path) -> Case {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        let config = config::parse(&text).unwrap_or_else(|e| panic!("{name}: {:?}", e.lines()));
        let raw: toml::Table = text.parse().unwrap();
        let request = std::fs::read_to_string(dir.join("request.txt")).unwrap();
        let request = request.strip_suffix('\n').unwrap_or(&request);
        assert!(!request.contains('\n'), "{name}: request.txt is one line");
        let address = EmailAddress::parse(request)
            .unwrap_or_else(|e| panic!("{name}: request.txt {request:?}: {e}"));
        Case {
            name,
            config,
            raw,
            address,
        }
    }

    fn provider(&self) -> &Provider {
        self.config
            .provider_for_domain(self.address.domain())
            .unwrap_or_else(|| panic!("{}: no provider for {}", self.name, self.address))
    }

    /// `provider[0].<key>` as written in config.toml.
    fn raw_provider_str(&self, key: &str) -> Option<&str> {
        self.raw["provider"].as_array().unwrap()[0]
            .get(key)
            .and_then(|v| v.as_str())
    }
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The POX request Outlook sends, written with an escaping writer so that
/// `&` and `'` in the address reach the parser as entities.
fn pox_request(address: &str, request_ns: &str, schema: &str) -> Vec<u8> {
    use quick_xml::Writer;
    use quick_xml::events::{BytesDecl, BytesText};
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .unwrap();
    w.create_element("Autodiscover")
        .with_attribute(("xmlns", request_ns))
        .write_inner_content(|w| {
            w.create_element("Request").write_inner_content(|w| {
                w.create_element("EMailAddress")
                    .write_text_content(BytesText::new(address))?;
                w.create_element("AcceptableResponseSchema")
                    .write_text_content(BytesText::new(schema))?;
                Ok(())
            })?;
            Ok(())
        })
        .unwrap();
    w.into_inner()
}

/// Every golden file of a case, rendered now. Order is the report order.
fn render_case(case: &Case) -> Vec<(&'static str, Vec<u8>)> {
    let p = case.provider();
    let a = &case.address;
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();

    let mut warnings = String::new();
    for w in &case.config.warnings {
        writeln!(warnings, "{w}").unwrap();
    }
    out.push(("warnings.txt", warnings.into_bytes()));

    out.push((
        "thunderbird.xml",
        thunderbird::render(p, a.domain(), Some(a)).body,
    ));
    out.push((
        "thunderbird-generic.xml",
        thunderbird::render(p, a.domain(), None).body,
    ));

    // The POX answer goes through the request parser, as over HTTP.
    let body = pox_request(
        &a.to_string(),
        OUTLOOK_REQUEST_NS,
        autodiscover::OUTLOOK_RESPONSE_NS,
    );
    let req = autodiscover::parse_request(&body).unwrap();
    assert_eq!(req.schema, ResponseSchema::Outlook2006a);
    assert_eq!(&req.address().unwrap(), a, "{}: POX request", case.name);
    out.push((
        "autodiscover.xml",
        autodiscover::render_with_time(p, a, &req.schema, FIXED_TIME).body,
    ));
    if p.first(ServerKind::ActiveSync).is_some() {
        let body = pox_request(
            &a.to_string(),
            MOBILESYNC_REQUEST_NS,
            autodiscover::MOBILESYNC_RESPONSE_NS,
        );
        let req = autodiscover::parse_request(&body).unwrap();
        assert_eq!(req.schema, ResponseSchema::MobileSync2006);
        out.push((
            "autodiscover-mobilesync.xml",
            autodiscover::render_with_time(p, a, &req.schema, FIXED_TIME).body,
        ));
    }

    let json = autodiscover::render_json(p, a, "AutodiscoverV1");
    assert_eq!(json.status, 200);
    out.push(("autodiscover.json", json.document.body));

    let profile = mobileconfig::render(p, a);
    assert_eq!(
        profile.filename.as_deref(),
        Some(format!("{}-mail.mobileconfig", a.domain()).as_str()),
        "{}",
        case.name
    );
    out.push(("profile.mobileconfig", profile.body));

    if let Some(policy) = &p.mta_sts {
        out.push(("mta-sts.txt", mta_sts::render(policy).body));
    }
    if let Some(doc) = pacc::render(p) {
        out.push(("pacc.json", doc.body));
    }
    out.push((
        "dns.txt",
        dns::render(p, &p.domains[0], case.config.server.public_name.as_deref()).into_bytes(),
    ));
    out
}

const INPUT_FILES: [&str; 2] = ["config.toml", "request.txt"];

#[test]
fn golden_files_match() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 6, "expected at least six golden cases");
    let mut failures = Vec::new();
    for dir in &dirs {
        let case = Case::load(dir);
        let rendered = render_case(&case);
        check_case(&case, &rendered);
        let expected: BTreeSet<&str> = rendered
            .iter()
            .map(|(f, _)| *f)
            .chain(INPUT_FILES)
            .collect();
        for entry in std::fs::read_dir(dir).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !expected.contains(file.as_str()) {
                if updating() {
                    std::fs::remove_file(dir.join(&file)).unwrap();
                } else {
                    failures.push(format!("{}/{file}: not rendered any more", case.name));
                }
            }
        }
        for (file, bytes) in &rendered {
            let path = dir.join(file);
            let old = std::fs::read(&path).ok();
            if old.as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            if updating() {
                std::fs::write(&path, bytes).unwrap();
                eprintln!("rewrote {}/{file}", case.name);
            } else {
                failures.push(describe_difference(&case.name, file, old.as_deref(), bytes));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 rewrites them; review the diff):\n{}",
        failures.join("\n")
    );
}

fn describe_difference(case: &str, file: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let Some(old) = old else {
        return format!("{case}/{file}: missing");
    };
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let line = old
        .split('\n')
        .zip(new.split('\n'))
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| old.split('\n').count().min(new.split('\n').count()));
    format!(
        "{case}/{file}: first difference at line {}:\n  golden:   {:?}\n  rendered: {:?}",
        line + 1,
        old.split('\n').nth(line).unwrap_or("<end>"),
        new.split('\n').nth(line).unwrap_or("<end>")
    )
}

// ---------------------------------------------------------------------------
// Expectations computed from the config, independently of the renderers.

/// config-v1.1 placeholder substitution, in one pass: text taken from the
/// address is never scanned for placeholders again.
fn expand(template: &str, a: Option<&EmailAddress>) -> String {
    expand_with(template, a, |v| v.to_owned())
}

/// As `expand`, for URLs: substituted values are percent-encoded (everything
/// but RFC 3986 unreserved characters and `@`).
fn expand_url(template: &str, a: Option<&EmailAddress>) -> String {
    expand_with(template, a, |v| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    })
}

fn expand_with(
    template: &str,
    a: Option<&EmailAddress>,
    encode: impl Fn(&str) -> String,
) -> String {
    let Some(a) = a else {
        return template.to_owned();
    };
    let full = a.to_string();
    let mut out = String::new();
    let mut rest = template;
    'outer: while !rest.is_empty() {
        for (ph, value) in [
            ("%EMAILADDRESS%", full.as_str()),
            ("%EMAILLOCALPART%", a.local_part()),
            ("%EMAILDOMAIN%", a.domain()),
        ] {
            if let Some(after) = rest.strip_prefix(ph) {
                out.push_str(&encode(value));
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn mail_servers(p: &Provider) -> impl Iterator<Item = (&Server, &str, u16, Security)> {
    p.servers.iter().filter_map(|s| match &s.endpoint {
        Endpoint::Host {
            host,
            port,
            security,
        } => Some((s, host.as_str(), *port, *security)),
        Endpoint::Url(_) => None,
    })
}

/// `(https, host, port)` of a validated URL.
fn url_host_port(url: &str) -> (bool, String, u16) {
    let (https, rest) = match url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (false, url.strip_prefix("http://").unwrap()),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap();
    match authority.rsplit_once(':') {
        Some((h, port)) => (https, h.to_owned(), port.parse().unwrap()),
        None => (https, authority.to_owned(), if https { 443 } else { 80 }),
    }
}

fn check_case(case: &Case, rendered: &[(&'static str, Vec<u8>)]) {
    let p = case.provider();
    let a = &case.address;
    let get = |f: &str| {
        rendered
            .iter()
            .find(|(n, _)| *n == f)
            .map(|(_, b)| b.as_slice())
    };
    let ctx = |f: &str| format!("{}/{f}", case.name);

    // The names as written in config.toml, trimmed as validation trims them.
    let raw_name = case.raw_provider_str("name").unwrap().trim();
    let raw_short = case
        .raw_provider_str("short_name")
        .map_or(raw_name, str::trim);
    assert_eq!(p.name, raw_name);
    assert_eq!(p.short_name, raw_short);

    check_thunderbird(
        &ctx("thunderbird.xml"),
        get("thunderbird.xml").unwrap(),
        p,
        a.domain(),
        Some(a),
    );
    check_thunderbird(
        &ctx("thunderbird-generic.xml"),
        get("thunderbird-generic.xml").unwrap(),
        p,
        a.domain(),
        None,
    );
    check_pox(
        &ctx("autodiscover.xml"),
        get("autodiscover.xml").unwrap(),
        p,
        a,
    );
    if let Some(body) = get("autodiscover-mobilesync.xml") {
        check_mobilesync(&ctx("autodiscover-mobilesync.xml"), body, p, a);
    }
    check_json(get("autodiscover.json").unwrap(), a);
    check_profile(
        &ctx("profile.mobileconfig"),
        get("profile.mobileconfig").unwrap(),
        p,
        a,
    );
    if let Some(policy) = &p.mta_sts {
        check_mta_sts(get("mta-sts.txt").unwrap(), policy);
    }
    check_dns(
        &ctx("dns.txt"),
        get("dns.txt").unwrap(),
        p,
        &case.config,
        get("mta-sts.txt"),
    );

    // Markup from the config never appears unescaped in a markup document.
    for (file, body) in rendered {
        if file.ends_with(".xml") || file.ends_with(".mobileconfig") {
            let text = std::str::from_utf8(body).unwrap();
            for s in [&p.name, &p.short_name] {
                if s.contains(['<', '&']) {
                    assert!(!text.contains(s.as_str()), "{}: raw {s:?}", ctx(file));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A small XML tree, read with quick-xml, strict about well-formedness.

#[derive(Debug, Default, Clone)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&Element> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    fn child(&self, name: &str) -> &Element {
        let found = self.all(name);
        assert_eq!(
            found.len(),
            1,
            "<{}> has {} <{name}>",
            self.name,
            found.len()
        );
        found[0]
    }

    fn text_of(&self, name: &str) -> &str {
        &self.child(name).text
    }

    fn texts(&self, name: &str) -> Vec<&str> {
        self.all(name).iter().map(|e| e.text.as_str()).collect()
    }
}

/// XML 1.0 `Char`: what may appear in a document at all.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// Parses a whole document; panics on anything not well-formed (or not UTF-8,
/// or a DOCTYPE, CDATA, comment or PI, none of which we ever write).
fn parse_xml(ctx: &str, body: &[u8]) -> Element {
    let text = std::str::from_utf8(body).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    if let Some(c) = text.chars().find(|&c| !is_xml_char(c)) {
        panic!("{ctx}: {c:?} is not an XML character");
    }
    let mut r = Reader::from_str(text);
    r.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let start = |e: &quick_xml::events::BytesStart<'_>| Element {
        name: e.name().as_ref().to_owned(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap_or_else(|err| panic!("{ctx}: attribute: {err}"));
                (
                    a.key.as_ref().to_owned(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap_or_else(|err| panic!("{ctx}: attribute value: {err}"))
                        .into_owned(),
                )
            })
            .collect(),
        ..Element::default()
    };
    let mut close = |stack: &mut Vec<Element>, e: Element| match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None => {
            assert!(root.is_none(), "{ctx}: two root elements");
            root = Some(e);
        }
    };
    loop {
        match r
            .read_event()
            .unwrap_or_else(|e| panic!("{ctx}: not well-formed: {e}"))
        {
            Event::Decl(_) => {}
            Event::Start(e) => stack.push(start(&e)),
            Event::Empty(e) => {
                let el = start(&e);
                close(&mut stack, el);
            }
            Event::End(_) => {
                let el = stack.pop().unwrap();
                close(&mut stack, el);
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&t),
                    None => assert!(t.trim().is_empty(), "{ctx}: text outside the root"),
                }
            }
            Event::GeneralRef(g) => {
                let resolved = match g.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => resolve_predefined_entity(&g)
                        .unwrap_or_else(|| panic!("{ctx}: unknown entity"))
                        .to_owned(),
                };
                stack
                    .last_mut()
                    .unwrap_or_else(|| panic!("{ctx}: reference outside the root"))
                    .text
                    .push_str(&resolved);
            }
            Event::Eof => break,
            other => panic!("{ctx}: unexpected {other:?}"),
        }
    }
    assert!(stack.is_empty(), "{ctx}: unclosed elements");
    root.unwrap_or_else(|| panic!("{ctx}: no root element"))
}

fn trimmed(e: &Element) -> Element {
    // Indentation is whitespace text in mixed content; leaf texts are exact.
    let mut e = e.clone();
    if !e.children.is_empty() {
        assert!(
            e.text.trim().is_empty(),
            "<{}> mixes text and elements",
            e.name
        );
        e.text.clear();
    }
    e.children = e.children.iter().map(trimmed).collect();
    e
}

fn socket_type(s: Security) -> &'static str {
    match s {
        Security::Tls => "SSL",
        Security::StartTls => "STARTTLS",
        Security::Plain => "plain",
    }
}

/// `domain`: the one the answer was asked for (the address's, else the Host's).
fn check_thunderbird(ctx: &str, body: &[u8], p: &Provider, domain: &str, a: Option<&EmailAddress>) {
    assert!(body.starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
    assert!(body.ends_with(b"</clientConfig>\n"), "{ctx}");
    let root = trimmed(&parse_xml(ctx, body));
    assert_eq!(root.name, "clientConfig");
    assert_eq!(root.attr("version"), Some("1.1"));
    let ep = root.child("emailProvider");
    assert_eq!(ep.attr("id"), Some(p.id.as_str()), "{ctx}");
    // Only the asked domain: a hoster's other customers stay out of the answer.
    assert_eq!(ep.texts("domain"), [domain], "{ctx}");
    assert!(p.domains.iter().any(|d| d == domain), "{ctx}");
    assert_eq!(ep.text_of("displayName"), p.name, "{ctx}");
    assert_eq!(ep.text_of("displayShortName"), p.short_name, "{ctx}");

    let all: Vec<&Element> = ep
        .children
        .iter()
        .filter(|c| c.name == "incomingServer" || c.name == "outgoingServer")
        .collect();
    // JMAP entries come last, after every IMAP, POP3 and SMTP server, so that
    // parsers taking the first incomingServer never get one.
    let first_jmap = all
        .iter()
        .position(|c| c.attr("type") == Some("jmap"))
        .unwrap_or(all.len());
    let (servers, jmap) = all.split_at(first_jmap);
    let want_jmap: Vec<&Server> = p
        .servers
        .iter()
        .filter(|s| s.kind == ServerKind::Jmap)
        .collect();
    assert_eq!(jmap.len(), want_jmap.len(), "{ctx}: JMAP entries last");
    for (got, s) in jmap.iter().zip(want_jmap) {
        assert_eq!(got.name, "incomingServer", "{ctx}");
        assert_eq!(got.text_of("url"), s.url().unwrap(), "{ctx}");
        assert_eq!(got.text_of("username"), expand(&s.username, a), "{ctx}");
    }
    let want: Vec<_> = mail_servers(p).collect();
    assert_eq!(
        servers.len(),
        want.len(),
        "{ctx}: one element per mail server"
    );
    for (got, (s, host, port, security)) in servers.iter().zip(want) {
        let (element, kind) = match s.kind {
            ServerKind::Imap => ("incomingServer", "imap"),
            ServerKind::Pop3 => ("incomingServer", "pop3"),
            ServerKind::Smtp => ("outgoingServer", "smtp"),
            _ => unreachable!(),
        };
        assert_eq!(got.name, element, "{ctx}");
        assert_eq!(got.attr("type"), Some(kind), "{ctx}");
        assert_eq!(got.text_of("hostname"), expand(host, a), "{ctx}");
        assert_eq!(got.text_of("port"), port.to_string(), "{ctx}");
        assert_eq!(got.text_of("socketType"), socket_type(security), "{ctx}");
        let auth: Vec<&str> = s.auth.iter().map(|m| m.thunderbird_name()).collect();
        assert_eq!(got.texts("authentication"), auth, "{ctx}");
        assert_eq!(got.text_of("username"), expand(&s.username, a), "{ctx}");
        if a.is_some() {
            assert!(!got.text_of("username").contains("%EMAIL"), "{ctx}");
        }
    }

    let dav: Vec<&Element> = root
        .children
        .iter()
        .filter(|c| c.name != "emailProvider" && c.name != "oAuth2")
        .collect();
    let oauth: Vec<&Element> = root
        .children
        .iter()
        .filter(|c| c.name == "oAuth2")
        .collect();
    match p.oauth2_hints().filter(|o| o.is_complete()) {
        Some(o) => {
            assert_eq!(oauth.len(), 1, "{ctx}: one <oAuth2>");
            assert_eq!(oauth[0].text_of("issuer"), o.issuer, "{ctx}");
        }
        None => assert!(oauth.is_empty(), "{ctx}: <oAuth2> without hints"),
    }
    let want: Vec<&Server> = p
        .servers
        .iter()
        .filter(|s| matches!(s.kind, ServerKind::CalDav | ServerKind::CardDav))
        .collect();
    assert_eq!(dav.len(), want.len(), "{ctx}: DAV hints");
    for (got, s) in dav.iter().zip(want) {
        let (element, kind) = if s.kind == ServerKind::CalDav {
            ("calendar", "caldav")
        } else {
            ("addressBook", "carddav")
        };
        assert_eq!((got.name.as_str(), got.attr("type")), (element, Some(kind)));
        assert_eq!(got.text_of("username"), expand(&s.username, a), "{ctx}");
        assert_eq!(got.text_of("authentication"), "http-basic");
        // The URL gets the address, percent-encoded (placeholders kept without one).
        assert_eq!(
            got.text_of("serverURL"),
            expand_url(s.url().unwrap(), a),
            "{ctx}"
        );
    }
}

fn check_pox(ctx: &str, body: &[u8], p: &Provider, a: &EmailAddress) {
    assert!(body.starts_with(b"<?xml version=\"1.0\" encoding=\"utf-8\"?>"));
    let root = trimmed(&parse_xml(ctx, body));
    assert_eq!(root.name, "Autodiscover");
    assert_eq!(root.attr("xmlns"), Some(autodiscover::RESPONSE_NS));
    let response = root.child("Response");
    assert_eq!(
        response.attr("xmlns"),
        Some(autodiscover::OUTLOOK_RESPONSE_NS)
    );
    assert_eq!(
        response.child("User").text_of("DisplayName"),
        a.to_string(),
        "{ctx}"
    );
    let account = response.child("Account");
    assert_eq!(account.text_of("AccountType"), "email");
    assert_eq!(account.text_of("Action"), "settings");
    let protocols = account.all("Protocol");

    let mut want: Vec<BTreeMap<&str, String>> = Vec::new();
    let incoming = p.incoming().next().unwrap();
    for (s, host, port, security) in mail_servers(p) {
        let first = s.auth.first().copied();
        let mut m = BTreeMap::new();
        let kind = match s.kind {
            ServerKind::Imap => "IMAP",
            ServerKind::Pop3 => "POP3",
            _ => "SMTP",
        };
        m.insert("Type", kind.to_owned());
        m.insert("Server", expand(host, Some(a)));
        m.insert("Port", port.to_string());
        m.insert("LoginName", expand(&s.username, Some(a)));
        m.insert("DomainRequired", "off".into());
        let on = |b: bool| if b { "on" } else { "off" }.to_owned();
        m.insert("SPA", on(first == Some(Auth::Ntlm)));
        m.insert("SSL", on(security != Security::Plain));
        let encryption = match security {
            Security::Tls => "SSL",
            Security::StartTls => "TLS",
            Security::Plain => "None",
        };
        m.insert("Encryption", encryption.into());
        let no_login = matches!(
            first,
            Some(Auth::None | Auth::ClientIpAddress | Auth::SmtpAfterPop)
        );
        m.insert("AuthRequired", on(!no_login));
        if s.kind == ServerKind::Smtp {
            let pw = |s: &Server| s.auth.first().is_some_and(|m| m.uses_password());
            let same = pw(s)
                && pw(incoming)
                && expand(&s.username, Some(a)) == expand(&incoming.username, Some(a));
            m.insert("UsePOPAuth", on(same));
            m.insert("SMTPLast", on(first == Some(Auth::SmtpAfterPop)));
        }
        want.push(m);
    }
    for s in &p.servers {
        let kind = match s.kind {
            ServerKind::CalDav => "CalDAV",
            ServerKind::CardDav => "CardDAV",
            _ => continue,
        };
        let mut m = BTreeMap::new();
        m.insert("Type", kind.to_owned());
        m.insert("Server", expand_url(s.url().unwrap(), Some(a)));
        m.insert("DomainRequired", "off".into());
        m.insert("LoginName", expand(&s.username, Some(a)));
        want.push(m);
    }
    assert_eq!(protocols.len(), want.len(), "{ctx}");
    for (got, want) in protocols.iter().zip(&want) {
        let got: BTreeMap<&str, String> = got
            .children
            .iter()
            .map(|c| {
                assert!(c.children.is_empty());
                (c.name.as_str(), c.text.clone())
            })
            .collect();
        assert_eq!(&got, want, "{ctx}");
    }
    assert!(
        !String::from_utf8_lossy(body).contains("ActiveSync"),
        "{ctx}: the Outlook schema does not carry EAS"
    );
}

fn check_mobilesync(ctx: &str, body: &[u8], p: &Provider, a: &EmailAddress) {
    let root = trimmed(&parse_xml(ctx, body));
    assert_eq!(root.attr("xmlns"), Some(autodiscover::RESPONSE_NS));
    let response = root.child("Response");
    assert_eq!(
        response.attr("xmlns"),
        Some(autodiscover::MOBILESYNC_RESPONSE_NS)
    );
    let user = response.child("User");
    assert_eq!(user.text_of("EMailAddress"), a.to_string(), "{ctx}");
    assert_eq!(user.text_of("DisplayName"), a.to_string(), "{ctx}");
    let servers = response.child("Action").child("Settings").all("Server");
    let want: Vec<String> = p
        .servers
        .iter()
        .filter(|s| s.kind == ServerKind::ActiveSync)
        .map(|s| expand_url(s.url().unwrap(), Some(a)))
        .collect();
    assert_eq!(servers.len(), want.len(), "{ctx}");
    for (got, url) in servers.iter().zip(want) {
        assert_eq!(got.text_of("Type"), "MobileSync");
        assert_eq!(got.text_of("Url"), url, "{ctx}");
        assert_eq!(got.text_of("Name"), url, "{ctx}");
    }
}

fn check_json(body: &[u8], a: &EmailAddress) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "Protocol": "AutodiscoverV1",
            "Url": format!("https://autodiscover.{}/autodiscover/autodiscover.xml", a.domain()),
        })
    );
}

fn dict<'v>(v: &'v Value, ctx: &str) -> &'v Dictionary {
    v.as_dictionary()
        .unwrap_or_else(|| panic!("{ctx}: not a dict"))
}

fn string<'d>(d: &'d Dictionary, key: &str) -> &'d str {
    d.get(key)
        .and_then(Value::as_string)
        .unwrap_or_else(|| panic!("{key} is not a string"))
}

fn integer(d: &Dictionary, key: &str) -> u64 {
    d.get(key)
        .and_then(Value::as_unsigned_integer)
        .unwrap_or_else(|| panic!("{key} is not an integer"))
}

fn boolean(d: &Dictionary, key: &str) -> bool {
    d.get(key)
        .and_then(Value::as_boolean)
        .unwrap_or_else(|| panic!("{key} is not a boolean"))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_digit() || ('A'..='F').contains(&c)
            }
        })
}

fn check_profile(ctx: &str, body: &[u8], p: &Provider, a: &EmailAddress) {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.contains("<!DOCTYPE plist"), "{ctx}");
    assert!(text.chars().all(is_xml_char), "{ctx}");
    let value: Value = plist::from_bytes(body).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let top = dict(&value, ctx);
    let addr = a.to_string();
    assert_eq!(string(top, "PayloadType"), "Configuration");
    assert_eq!(integer(top, "PayloadVersion"), 1);
    assert_eq!(string(top, "PayloadOrganization"), p.name, "{ctx}");
    let shown = string(top, "PayloadDisplayName");
    assert!(
        shown.starts_with(&p.name) && shown.contains(&addr),
        "{ctx}: {shown:?}"
    );
    assert!(string(top, "PayloadDescription").contains(&addr));
    let identifier = string(top, "PayloadIdentifier");
    assert!(
        identifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
        "{ctx}: {identifier}"
    );
    let mut uuids = BTreeSet::new();
    assert!(uuids.insert(string(top, "PayloadUUID").to_owned()));

    let content = top.get("PayloadContent").unwrap().as_array().unwrap();
    let mut payloads = content.iter().map(|v| dict(v, ctx));
    let mail = payloads.next().unwrap();
    let incoming = p.incoming().next().unwrap();
    let outgoing = p.outgoing().next().unwrap();
    let (in_host, in_port, in_sec) = incoming.host_port().unwrap();
    let (out_host, out_port, out_sec) = outgoing.host_port().unwrap();
    assert_eq!(string(mail, "PayloadType"), "com.apple.mail.managed");
    assert_eq!(
        string(mail, "EmailAccountType"),
        if incoming.kind == ServerKind::Pop3 {
            "EmailTypePOP"
        } else {
            "EmailTypeIMAP"
        }
    );
    assert_eq!(string(mail, "EmailAddress"), addr, "{ctx}");
    assert_eq!(string(mail, "EmailAccountDescription"), addr, "{ctx}");
    assert_eq!(
        string(mail, "IncomingMailServerHostName"),
        expand(in_host, Some(a))
    );
    assert_eq!(
        integer(mail, "IncomingMailServerPortNumber"),
        u64::from(in_port)
    );
    assert_eq!(
        boolean(mail, "IncomingMailServerUseSSL"),
        in_sec == Security::Tls
    );
    assert_eq!(
        string(mail, "IncomingMailServerUsername"),
        expand(&incoming.username, Some(a)),
        "{ctx}"
    );
    assert_eq!(
        string(mail, "OutgoingMailServerHostName"),
        expand(out_host, Some(a))
    );
    assert_eq!(
        integer(mail, "OutgoingMailServerPortNumber"),
        u64::from(out_port)
    );
    assert_eq!(
        boolean(mail, "OutgoingMailServerUseSSL"),
        out_sec == Security::Tls
    );
    assert_eq!(
        string(mail, "OutgoingMailServerUsername"),
        expand(&outgoing.username, Some(a)),
        "{ctx}"
    );
    assert!(boolean(mail, "OutgoingPasswordSameAsIncomingPassword"));
    for d in content.iter().map(|v| dict(v, ctx)) {
        assert!(
            d.keys()
                .all(|k| !k.contains("Password") || k == "OutgoingPasswordSameAsIncomingPassword"),
            "{ctx}: no passwords in profiles"
        );
        assert!(is_uuid(string(d, "PayloadUUID")));
        assert!(uuids.insert(string(d, "PayloadUUID").to_owned()), "{ctx}");
        assert!(string(d, "PayloadIdentifier").starts_with(identifier));
    }
    for (kind, prefix, payload_type) in [
        (ServerKind::CalDav, "CalDAV", "com.apple.caldav.account"),
        (ServerKind::CardDav, "CardDAV", "com.apple.carddav.account"),
    ] {
        let Some(s) = p.first(kind) else {
            assert!(
                !content
                    .iter()
                    .any(|v| string(dict(v, ctx), "PayloadType") == payload_type),
                "{ctx}"
            );
            continue;
        };
        let d = payloads.next().unwrap();
        assert_eq!(string(d, "PayloadType"), payload_type);
        let url = expand_url(s.url().unwrap(), Some(a));
        let (https, host, port) = url_host_port(&url);
        assert_eq!(string(d, &format!("{prefix}HostName")), host, "{ctx}");
        assert_eq!(integer(d, &format!("{prefix}Port")), u64::from(port));
        assert_eq!(boolean(d, &format!("{prefix}UseSSL")), https);
        assert_eq!(
            string(d, &format!("{prefix}Username")),
            expand(&s.username, Some(a)),
            "{ctx}"
        );
        assert_eq!(string(d, &format!("{prefix}AccountDescription")), addr);
    }
    assert!(payloads.next().is_none(), "{ctx}: unexpected payload");
}

fn check_mta_sts(body: &[u8], policy: &mailconfd::model::MtaSts) {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\r\n"));
    let lines: Vec<(&str, &str)> = text
        .strip_suffix("\r\n")
        .unwrap()
        .split("\r\n")
        .map(|l| l.split_once(": ").unwrap())
        .collect();
    let mut want = vec![("version", "STSv1"), ("mode", policy.mode.name())];
    want.extend(policy.mx.iter().map(|m| ("mx", m.as_str())));
    let max_age = policy.max_age.to_string();
    want.push(("max_age", &max_age));
    assert_eq!(lines, want);
}

fn check_dns(ctx: &str, body: &[u8], p: &Provider, config: &Config, policy: Option<&[u8]>) {
    let text = std::str::from_utf8(body).unwrap();
    let domain = &p.domains[0];
    // owner -> [(type, rdata)], for records (not comments).
    let mut records: BTreeMap<&str, Vec<(&str, String)>> = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let mut f = line.split_whitespace();
        let owner = f.next().unwrap();
        assert!(owner.is_ascii() && owner.ends_with('.'), "{ctx}: {line}");
        assert_eq!(f.next(), Some(dns::TTL_SECS.to_string().as_str()));
        assert_eq!(f.next(), Some("IN"));
        let rtype = f.next().unwrap();
        let rdata = f.collect::<Vec<_>>().join(" ");
        records.entry(owner).or_default().push((rtype, rdata));
    }
    let has = |owner: String, rtype: &str, rdata: String| {
        let found = records
            .get(owner.as_str())
            .is_some_and(|rs| rs.iter().any(|(t, d)| *t == rtype && *d == rdata));
        assert!(found, "{ctx}: no {owner} {rtype} {rdata}\n{text}");
    };
    has(
        format!("_autodiscover._tcp.{domain}."),
        "SRV",
        format!("0 0 443 autodiscover.{domain}."),
    );
    let mut names = vec!["autoconfig", "autodiscover"];
    if p.mta_sts.is_some() {
        names.push("mta-sts");
    }
    for label in names {
        let owner = format!("{label}.{domain}.");
        match &config.server.public_name {
            Some(target) => has(owner, "CNAME", format!("{target}.")),
            None => assert!(
                text.contains(&format!("; {owner}")),
                "{ctx}: no A/AAAA hint for {owner}"
            ),
        }
    }
    // Every mail server whose host does not depend on the user has its SRV record.
    for (s, host, port, security) in mail_servers(p) {
        let host = host.replace("%EMAILDOMAIN%", domain);
        if host.contains('%') {
            continue;
        }
        let service = match (s.kind, security == Security::Tls) {
            (ServerKind::Imap, true) => "_imaps",
            (ServerKind::Imap, false) => "_imap",
            (ServerKind::Pop3, true) => "_pop3s",
            (ServerKind::Pop3, false) => "_pop3",
            (ServerKind::Smtp, true) => "_submissions",
            (ServerKind::Smtp, false) => "_submission",
            _ => unreachable!(),
        };
        let owner = format!("{service}._tcp.{domain}.");
        let found = records[owner.as_str()].iter().any(|(t, d)| {
            *t == "SRV" && d.ends_with(&format!(" 1 {port} {host}.")) && !d.starts_with("0 0 0")
        });
        assert!(found, "{ctx}: no SRV for {owner} -> {host}:{port}");
    }
    match (&p.mta_sts, policy) {
        (Some(m), Some(policy)) => {
            let id = mta_sts::policy_id(policy);
            has(
                format!("_mta-sts.{domain}."),
                "TXT",
                format!("\"v=STSv1; id={id}\""),
            );
            if !m.tlsrpt_rua.is_empty() {
                has(
                    format!("_smtp._tls.{domain}."),
                    "TXT",
                    txt(&format!("v=TLSRPTv1; rua={}", m.tlsrpt_rua.join(","))),
                );
            }
        }
        _ => assert!(!text.contains("_mta-sts"), "{ctx}"),
    }
}

/// One TXT character-string in master-file syntax (short texts only).
fn txt(text: &str) -> String {
    let mut out = String::from("\"");
    for b in text.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => write!(out, "\\{b:03}").unwrap(),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------

/// The hostile case really is hostile, and its names survive every format.
#[test]
fn hostile_case_round_trips_exactly() {
    let case = Case::load(&golden_root().join("hostile"));
    let p = case.provider();
    let name = "Müller & Söhne <Mail> \"Ω\" 'x'";
    let short = "<M&S> \"Ω\" 'x'";
    assert_eq!(p.name, name);
    assert_eq!(p.short_name, short);
    assert_eq!(p.id, "xn--bcher-kva.example");
    assert_eq!(
        p.domains,
        ["xn--bcher-kva.example", "xn--bcher-kva.example.net"]
    );
    assert_eq!(case.address.local_part(), "Jörg.o'&x+tag");
    assert_eq!(case.address.domain(), "xn--bcher-kva.example");

    let rendered = render_case(&case);
    let get = |f: &str| &rendered.iter().find(|(n, _)| *n == f).unwrap().1;
    for f in ["thunderbird.xml", "thunderbird-generic.xml"] {
        let root = parse_xml(f, get(f));
        let ep = root.child("emailProvider");
        assert_eq!(ep.text_of("displayName"), name);
        assert_eq!(ep.text_of("displayShortName"), short);
        let text = std::str::from_utf8(get(f)).unwrap();
        assert!(text.contains("Müller &amp; Söhne &lt;Mail&gt;"), "{text}");
    }
    let tb = parse_xml("tb", get("thunderbird.xml"));
    let smtp = tb.child("emailProvider").child("outgoingServer");
    assert_eq!(smtp.text_of("username"), "Jörg.o'&x+tag\\x'&\"<y>");
    assert_eq!(smtp.text_of("hostname"), "smtp.xn--bcher-kva.example");

    let profile: Value = plist::from_bytes(get("profile.mobileconfig")).unwrap();
    assert_eq!(
        string(dict(&profile, "profile"), "PayloadOrganization"),
        name
    );
    let pox = parse_xml("pox", get("autodiscover.xml"));
    assert_eq!(
        pox.child("Response").child("User").text_of("DisplayName"),
        "Jörg.o'&x+tag@xn--bcher-kva.example"
    );
    let dns = String::from_utf8(get("dns.txt").clone()).unwrap();
    assert!(
        dns.lines()
            .filter(|l| !l.starts_with(';'))
            .all(|l| l.is_ascii()),
        "{dns}"
    );
}

/// Addresses built to break out of a document. Each is refused by
/// `EmailAddress::parse`, or every format rendered for it still parses and
/// shows the address only escaped.
#[test]
fn hostile_addresses_cannot_break_out() {
    let case = Case::load(&golden_root().join("hostile"));
    let p = case.provider();
    let long_local = "x".repeat(1000);
    let max_local = "y".repeat(64);
    let hostile: Vec<String> = vec![
        "a\r\nb@example.com".into(),
        "a\nX-Injected: 1@example.com".into(),
        "a%0ab@example.com".into(),
        "a\nb@example.com".into(),
        "<script>@example.com".into(),
        "a<b@example.com".into(),
        "a>b@example.com".into(),
        "a\"b@example.com".into(),
        "\"quoted\"@example.com".into(),
        "a]]>b@example.com".into(),
        "]]>@example.com".into(),
        "a<![CDATA[x]]>@example.com".into(),
        "a\u{0}b@example.com".into(),
        "a\u{7}@example.com".into(),
        "a\u{85}@example.com".into(),
        "\u{202e}moc.elpmaxe@example.com".into(),
        "a\u{2066}b@example.com".into(),
        "a\u{200b}b@example.com".into(),
        "\u{feff}a@example.com".into(),
        "a\u{2028}b@example.com".into(),
        format!("{long_local}@example.com"),
        format!("{max_local}@example.com"),
        format!("a@{}.com", "b".repeat(1000)),
        "a@b@c".into(),
        "a@b@example.com".into(),
        "a@".into(),
        "@example.com".into(),
        "a@example.com\r\n".into(),
        "a@exam<ple.com".into(),
        "a@example.com/..".into(),
        "a@[127.0.0.1]".into(),
        "a@xn--.com".into(),
        "a@xn--zz-.com".into(),
        "a@bü<cher.example".into(),
        "a b@example.com".into(),
        "a\tb@example.com".into(),
        "a\\b@example.com".into(),
        "&lt;x&gt;@example.com".into(),
        "&amp@example.com".into(),
        "&#60;@example.com".into(),
        "o'&x+tag@example.com".into(),
        "{}|~`!#$%^*=?/@example.com".into(),
        "%EMAILADDRESS%@example.com".into(),
        "%EMAILDOMAIN%@example.com".into(),
        "Ω'&@bücher.example".into(),
        "a@BÜCHER.EXAMPLE.".into(),
    ];
    let mut accepted = 0;
    for input in &hostile {
        let Ok(a) = EmailAddress::parse(input) else {
            continue;
        };
        accepted += 1;
        let ctx = format!("{input:?}");
        let shown = a.to_string();
        assert!(
            !shown.contains(['<', '>', '"', '\\', '\n', '\r', '\0', ' ', '\t', '[', ']']),
            "{ctx}: accepted {shown:?}"
        );
        assert!(shown.len() <= 254, "{ctx}");
        assert!(
            !shown.chars().any(|c| c.is_control() || !is_xml_char(c)),
            "{ctx}: accepted {shown:?}, which no XML document can carry"
        );

        for (name, body) in [
            (
                "thunderbird",
                thunderbird::render(p, a.domain(), Some(&a)).body,
            ),
            (
                "pox",
                autodiscover::render_with_time(p, &a, &ResponseSchema::Outlook2006a, FIXED_TIME)
                    .body,
            ),
            (
                "mobilesync",
                autodiscover::render_with_time(p, &a, &ResponseSchema::MobileSync2006, FIXED_TIME)
                    .body,
            ),
        ] {
            let ctx = format!("{ctx} {name}");
            let root = trimmed(&parse_xml(&ctx, &body));
            // Everything that came from the address reads back as it went in.
            let mut texts = Vec::new();
            collect_texts(&root, &mut texts);
            assert!(
                texts.iter().any(|t| t.contains(&shown)
                    || t.contains(a.local_part())
                    || t.contains(a.domain())),
                "{ctx}"
            );
            if name == "pox" {
                assert_eq!(
                    root.child("Response").child("User").text_of("DisplayName"),
                    shown
                );
            }
            assert_no_raw_markup(&ctx, &body);
        }
        // The POX request path: the address travels escaped and comes out whole.
        let req = autodiscover::parse_request(&pox_request(
            &shown,
            OUTLOOK_REQUEST_NS,
            autodiscover::OUTLOOK_RESPONSE_NS,
        ))
        .unwrap();
        assert_eq!(req.address().unwrap(), a, "{ctx}");

        let json = autodiscover::render_json(p, &a, "AutodiscoverV1")
            .document
            .body;
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v["Url"],
            format!(
                "https://autodiscover.{}/autodiscover/autodiscover.xml",
                a.domain()
            )
        );

        let doc = mobileconfig::render(p, &a);
        let fname = doc.filename.clone().unwrap();
        assert!(
            fname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{ctx}: {fname}"
        );
        assert!(
            doc.body
                .iter()
                .all(|&b| b >= 0x20 || b == b'\n' || b == b'\t')
        );
        assert_no_raw_markup(&ctx, &doc.body);
        let v: Value = plist::from_bytes(&doc.body).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let top = dict(&v, &ctx);
        let mail = dict(&top["PayloadContent"].as_array().unwrap()[0], &ctx);
        assert_eq!(string(mail, "EmailAddress"), shown, "{ctx}");
        assert!(
            string(top, "PayloadIdentifier")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{ctx}"
        );
    }
    assert!(accepted >= 5, "the list should also hold legal addresses");
}

fn collect_texts<'e>(e: &'e Element, out: &mut Vec<&'e str>) {
    out.push(&e.text);
    for (_, v) in &e.attrs {
        out.push(v);
    }
    for c in &e.children {
        collect_texts(c, out);
    }
}

/// Every `&` in the document opens a reference: the address's `&` went
/// through the escaping writer (its read-back value is checked separately).
fn assert_no_raw_markup(ctx: &str, body: &[u8]) {
    let text = std::str::from_utf8(body).unwrap();
    for (i, _) in text.match_indices('&') {
        let rest = &text[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "{ctx}: bare & at {i}"
        );
    }
}

/// U+FFFE and U+FFFF are not XML characters (XML 1.0 §2.2): an address that
/// holds one cannot be written into any XML document or plist.
#[test]
fn xml_noncharacters_in_the_address_are_refused() {
    for input in ["a\u{fffe}b@example.com", "a\u{ffff}b@example.com"] {
        assert!(EmailAddress::parse(input).is_err(), "accepted {input:?}");
    }
}

/// A local part may legally hold `%EMAILDOMAIN%` (`%` is atext); substituting
/// it into `%EMAILADDRESS%` must not expand it a second time.
#[test]
fn placeholder_text_in_the_address_is_not_expanded_again() {
    let case = Case::load(&golden_root().join("minimal"));
    let p = case.provider();
    let a = EmailAddress::parse("%EMAILDOMAIN%@example.com").unwrap();
    let tb = parse_xml("tb", &thunderbird::render(p, a.domain(), Some(&a)).body);
    let imap = tb.child("emailProvider").child("incomingServer");
    assert_eq!(imap.text_of("username"), "%EMAILDOMAIN%@example.com");
}

#[test]
fn example_config_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = config::load(&root.join("etc/mailconfd.toml"))
        .unwrap_or_else(|e| panic!("{:?}", e.lines()));
    assert!(
        main.warnings.is_empty(),
        "etc/mailconfd.toml warns: {:?}",
        main.warnings
    );
    assert!(main.provider_for_domain("example.com").is_some());
    let local =
        config::load(&root.join("etc/local.toml")).unwrap_or_else(|e| panic!("{:?}", e.lines()));
    assert_eq!(local.tls.mode, config::TlsMode::Local);
    assert!(local.provider_for_domain("example.com").is_some());
}

/// The PACC document a case serves hashes to the TXT record its `dns.txt`
/// tells the operator to publish: clients reject it otherwise.
#[test]
fn pacc_digest_in_dns_matches_the_served_bytes() {
    let mut checked = 0;
    for dir in case_dirs() {
        let case = Case::load(&dir);
        let p = case.provider();
        let Some(doc) = pacc::render(p) else { continue };
        let zone = dns::render(p, &p.domains[0], None);
        let record = pacc::digest_record(&doc.body);
        assert!(
            zone.contains(&format!("\"{record}\"")),
            "{}: {zone}",
            case.name
        );
        assert!(
            case.config
                .names_for_domain(&p.domains[0])
                .contains(&format!("ua-auto-config.{}", p.domains[0])),
            "{}: ua-auto-config in the certificate",
            case.name
        );
        checked += 1;
    }
    assert!(checked >= 1, "no golden case serves PACC");
}

/// `check` says where PACC is served, and why it is left out where it cannot
/// describe the servers (implicit TLS on default ports only).
#[test]
fn check_reports_pacc_served_or_left_out() {
    let run = |path: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["check", "-c"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let served = run(&golden_root().join("jmap-oauth-pacc/config.toml"));
    assert!(
        served.contains(
            "PACC: served at https://ua-auto-config.jmap.example/.well-known/user-agent-configuration.json"
        ),
        "{served}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = std::fs::read_to_string(golden_root().join("starttls-only/config.toml")).unwrap();
    let text = text.replacen("[[provider]]\n", "[[provider]]\npacc = true\n", 1);
    std::fs::write(&path, text).unwrap();
    let left_out = run(&path);
    assert!(left_out.contains("PACC: left out:"), "{left_out}");
    assert!(left_out.contains("provider[0].pacc"), "{left_out}");
}
