//! `mailconfd import`: a Thunderbird config-v1.1 document (e.g. an ISPDB file)
//! becomes a `[[provider]]` TOML block the operator can paste into the config.
//!
//! Owns reading that untrusted XML: size cap, no DTDs or entity declarations,
//! line numbers in every error, never a panic. The block it prints is meant to
//! pass `config::parse` on its own, so anything mailconfd does not model (other
//! server types, unknown authentication methods, invalid domains) is left out
//! with a `#` comment saying what and why, instead of failing the import.
//! Values are serialized by the `toml` crate; only fixed keys and comment
//! prefixes are written by hand. Pure: bytes in, text out, no I/O.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

use crate::address::{check_hostname, normalize_domain};
use crate::model::{Auth, PLACEHOLDERS};

/// Larger input is refused before parsing; real ISPDB files are a few KiB.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// The config refuses longer display names and usernames (`MAX_TEXT_CHARS`).
const MAX_TEXT_CHARS: usize = 200;
/// Input quoted in a comment is cut here so a hostile value cannot flood the output.
const MAX_QUOTED_CHARS: usize = 80;

/// Why a document could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("input is {len} bytes, more than the {MAX_INPUT_BYTES} read")]
    TooLarge { len: usize },
    #[error("line {line}: {reason}")]
    Invalid { line: usize, reason: String },
}

impl ImportError {
    fn at(line: usize, reason: impl Into<String>) -> ImportError {
        ImportError::Invalid {
            line,
            reason: reason.into(),
        }
    }
}

/// Reads a config-v1.1 document and returns an equivalent `[[provider]]` block.
///
/// Only the first `<emailProvider>` is read. `incomingServer` types `imap` and
/// `pop3` and `outgoingServer` type `smtp` are imported in document order;
/// other types, unknown `<authentication>` values and invalid `<domain>`s are
/// skipped with a comment. A server with no authentication method mailconfd
/// knows is skipped too (with a comment) rather than given an invented one:
/// guessing `password-cleartext` could send passwords where the provider never
/// offered it.
///
/// # Errors
/// `TooLarge` over [`MAX_INPUT_BYTES`]; otherwise `Invalid` with the line and
/// the reason: not UTF-8, not well-formed, a DTD, a value that cannot be
/// imported (`<port>` not a number, a bad host name), or no usable incoming or
/// SMTP server left.
pub fn import(xml: &[u8]) -> Result<String, ImportError> {
    if xml.len() > MAX_INPUT_BYTES {
        return Err(ImportError::TooLarge { len: xml.len() });
    }
    let text = std::str::from_utf8(xml).map_err(|e| {
        let line = line_of(xml, e.valid_up_to());
        ImportError::at(line, "not UTF-8 (only UTF-8 documents are read)")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let doc = parse(text)?;
    let block = convert(doc)?;
    Ok(block.to_toml())
}

fn line_of(bytes: &[u8], pos: usize) -> usize {
    let pos = pos.min(bytes.len());
    bytes[..pos].iter().filter(|&&b| b == b'\n').count() + 1
}

// ---------------------------------------------------------------------------
// XML -> what the document says, with line numbers.

/// A text value and the line its element starts on.
#[derive(Debug, Clone, Default)]
struct Text {
    value: String,
    line: usize,
}

#[derive(Debug, Default)]
struct RawDoc {
    provider: Option<RawProvider>,
    /// Lines of further `<emailProvider>` elements, which are ignored.
    extra_providers: Vec<usize>,
}

#[derive(Debug, Default)]
struct RawProvider {
    line: usize,
    id: Option<String>,
    domains: Vec<RawDomain>,
    name: Option<Text>,
    short_name: Option<Text>,
    servers: Vec<RawServer>,
}

#[derive(Debug)]
struct RawDomain {
    text: Text,
    purpose: Option<String>,
}

#[derive(Debug, Default)]
struct RawServer {
    line: usize,
    outgoing: bool,
    kind: Option<String>,
    hostname: Option<Text>,
    port: Option<Text>,
    socket_types: Vec<Text>,
    auth: Vec<Text>,
    username: Option<Text>,
}

impl RawServer {
    fn element(&self) -> &'static str {
        if self.outgoing {
            "outgoingServer"
        } else {
            "incomingServer"
        }
    }
}

/// Where the reader is, in the only paths that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Outside the first `emailProvider`.
    Elsewhere,
    /// Directly inside the first `emailProvider`.
    Provider,
    /// Directly inside one of its servers.
    Server,
}

/// Turns byte offsets into line numbers without rescanning from the start
/// (offsets arrive in increasing order).
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, pos: u64) -> usize {
        let pos = usize::try_from(pos)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        if pos < self.pos {
            return line_of(self.bytes, pos);
        }
        self.line += self.bytes[self.pos..pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = pos;
        self.line
    }
}

fn name_is(name: &str, expected: &str) -> bool {
    // Tolerant like every request parser here: clients disagree on case
    // (the draft renames `addressBook` to `addressbook`).
    name.eq_ignore_ascii_case(expected)
}

fn attribute(e: &BytesStart<'_>, name: &str, line: usize) -> Result<Option<String>, ImportError> {
    let bad = |err: quick_xml::Error| ImportError::at(line, format!("bad attribute: {err}"));
    for a in e.attributes() {
        let a = a.map_err(|err| bad(err.into()))?;
        if name_is(a.key.local_name().as_ref(), name) {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(bad)?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

fn parse(text: &str) -> Result<RawDoc, ImportError> {
    let mut reader = Reader::from_str(text);
    let mut lines = Lines {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut doc = RawDoc::default();
    let mut depth = 0usize;
    let mut place = Place::Elsewhere;
    let mut seen_root = false;
    let mut buf = String::new();
    let mut buf_line = 1;
    loop {
        let start = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let line = lines.at(reader.error_position());
                return Err(ImportError::at(line, format!("not well-formed XML: {e}")));
            }
        };
        let line = lines.at(start);
        match event {
            Event::DocType(d) => {
                // An internal subset is where entities are declared (billion
                // laughs, external entities); config-v1.1 never needs one.
                if d.contains('[') || d.contains("ENTITY") {
                    return Err(ImportError::at(
                        line,
                        "DTDs with an internal subset or entity declarations are refused",
                    ));
                }
            }
            Event::Start(e) => {
                open(&e, depth, line, &mut place, &mut seen_root, &mut doc)?;
                depth += 1;
                buf.clear();
                buf_line = line;
            }
            Event::Empty(e) => {
                open(&e, depth, line, &mut place, &mut seen_root, &mut doc)?;
                close(
                    e.name().as_ref(),
                    depth,
                    Text::default_at(line),
                    &mut place,
                    &mut doc,
                );
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                let text = Text {
                    value: std::mem::take(&mut buf),
                    line: buf_line,
                };
                close(e.name().as_ref(), depth, text, &mut place, &mut doc);
            }
            Event::Text(t) => buf.push_str(&t.xml10_content()),
            Event::CData(t) => buf.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| ImportError::at(line, format!("bad character reference: {e}")))?
                {
                    buf.push(c);
                } else if let Some(s) = resolve_predefined_entity(&r) {
                    buf.push_str(s);
                } else {
                    return Err(ImportError::at(
                        line,
                        format!("unknown entity &{};", quoted_raw(&r)),
                    ));
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if depth > 0 {
        let line = lines.at(text.len() as u64);
        return Err(ImportError::at(line, "document ends inside an element"));
    }
    if !seen_root {
        return Err(ImportError::at(1, "no <clientConfig> element"));
    }
    Ok(doc)
}

impl Text {
    fn default_at(line: usize) -> Text {
        Text {
            value: String::new(),
            line,
        }
    }
}

fn open(
    e: &BytesStart<'_>,
    depth: usize,
    line: usize,
    place: &mut Place,
    seen_root: &mut bool,
    doc: &mut RawDoc,
) -> Result<(), ImportError> {
    let name = e.name();
    let name = name.as_ref();
    match depth {
        0 if !*seen_root => {
            if !name_is(name, "clientConfig") {
                return Err(ImportError::at(
                    line,
                    format!("root element is <{}>, not <clientConfig>", quoted_raw(name)),
                ));
            }
            *seen_root = true;
        }
        1 if name_is(name, "emailProvider") => {
            if doc.provider.is_some() {
                doc.extra_providers.push(line);
            } else {
                doc.provider = Some(RawProvider {
                    line,
                    id: attribute(e, "id", line)?,
                    ..RawProvider::default()
                });
                *place = Place::Provider;
            }
        }
        2 if *place == Place::Provider => {
            let Some(p) = doc.provider.as_mut() else {
                return Ok(());
            };
            let outgoing = name_is(name, "outgoingServer");
            if outgoing || name_is(name, "incomingServer") {
                p.servers.push(RawServer {
                    line,
                    outgoing,
                    kind: attribute(e, "type", line)?,
                    ..RawServer::default()
                });
                *place = Place::Server;
            } else if name_is(name, "domain") {
                p.domains.push(RawDomain {
                    text: Text::default_at(line),
                    purpose: attribute(e, "purpose", line)?,
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// `depth` is the depth of the element being closed (0 = root).
fn close(name: &str, depth: usize, text: Text, place: &mut Place, doc: &mut RawDoc) {
    let Some(p) = doc.provider.as_mut() else {
        return;
    };
    match (depth, *place) {
        (1, Place::Provider) if name_is(name, "emailProvider") => *place = Place::Elsewhere,
        (2, Place::Server) => *place = Place::Provider,
        (2, Place::Provider) => {
            if name_is(name, "domain") {
                if let Some(d) = p.domains.last_mut() {
                    d.text = text;
                }
            } else if name_is(name, "displayName") {
                p.name.get_or_insert(text);
            } else if name_is(name, "displayShortName") {
                p.short_name.get_or_insert(text);
            }
        }
        (3, Place::Server) => {
            let Some(s) = p.servers.last_mut() else {
                return;
            };
            // First value wins, as in Thunderbird; repeatable elements keep order.
            if name_is(name, "hostname") {
                s.hostname.get_or_insert(text);
            } else if name_is(name, "port") {
                s.port.get_or_insert(text);
            } else if name_is(name, "socketType") {
                s.socket_types.push(text);
            } else if name_is(name, "authentication") {
                s.auth.push(text);
            } else if name_is(name, "username") {
                s.username.get_or_insert(text);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// What the document says -> what mailconfd can serve.

#[derive(Debug)]
struct Block {
    id: String,
    name: String,
    short_name: String,
    domains: Vec<String>,
    notes: Vec<String>,
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    Server(ServerOut),
    Skipped(String),
}

#[derive(Debug)]
struct ServerOut {
    kind: &'static str,
    host: String,
    port: Option<u16>,
    security: &'static str,
    auth: Vec<Auth>,
    username: Option<String>,
    notes: Vec<String>,
}

fn convert(doc: RawDoc) -> Result<Block, ImportError> {
    let Some(raw) = doc.provider else {
        return Err(ImportError::at(1, "no <emailProvider> in <clientConfig>"));
    };
    let mut notes = Vec::new();
    for line in &doc.extra_providers {
        notes.push(format!(
            "ignored the <emailProvider> on line {line}: only the first one is imported"
        ));
    }

    let mut domains: Vec<String> = Vec::new();
    for d in &raw.domains {
        let value = d.text.value.trim();
        if let Some(purpose) = &d.purpose {
            // Draft 1.2: `purpose="mx"` names the hoster's MX domain, not a mail domain.
            notes.push(format!(
                "skipped <domain purpose={}> {} (line {}): not a mail domain",
                quote(purpose),
                quote(value),
                d.text.line
            ));
            continue;
        }
        match normalize_domain(value) {
            Ok(n) if domains.contains(&n) => notes.push(format!(
                "skipped <domain> {} (line {}): listed twice",
                quote(value),
                d.text.line
            )),
            Ok(n) => domains.push(n),
            Err(e) => notes.push(format!(
                "skipped <domain> {} (line {}): {e}",
                quote(value),
                d.text.line
            )),
        }
    }
    let Some(first_domain) = domains.first().cloned() else {
        return Err(ImportError::at(
            raw.line,
            "<emailProvider> has no <domain> that is a valid mail domain",
        ));
    };

    let id = match raw
        .id
        .as_deref()
        .map(|id| (id, normalize_domain(id.trim())))
    {
        Some((_, Ok(id))) => id,
        Some((given, Err(e))) => {
            // Thunderbird and Android reject a non-hostname id; the config does too.
            notes.push(format!(
                "emailProvider id {} (line {}) is not hostname-like ({e}); using the first domain",
                quote(given),
                raw.line
            ));
            first_domain.clone()
        }
        None => {
            notes.push(format!(
                "<emailProvider> (line {}) has no id; using the first domain",
                raw.line
            ));
            first_domain.clone()
        }
    };

    let name =
        display_text(raw.name.as_ref(), "displayName", &mut notes).unwrap_or_else(|| id.clone());
    let short_name = display_text(raw.short_name.as_ref(), "displayShortName", &mut notes)
        .unwrap_or_else(|| name.clone());

    let mut items = Vec::new();
    for s in &raw.servers {
        items.push(server(s)?);
    }
    let usable = |incoming: bool| {
        items.iter().any(|i| match i {
            Item::Server(s) => (s.kind != "smtp") == incoming,
            Item::Skipped(_) => false,
        })
    };
    if !usable(true) {
        return Err(ImportError::at(
            raw.line,
            "no imap or pop3 server mailconfd can serve (every client requires one)",
        ));
    }
    if !usable(false) {
        return Err(ImportError::at(
            raw.line,
            "no smtp server mailconfd can serve (Thunderbird requires one)",
        ));
    }
    Ok(Block {
        id,
        name,
        short_name,
        domains,
        notes,
        items,
    })
}

/// A display string as the config accepts it: whitespace collapsed (it is
/// layout in XML), no control characters, at most [`MAX_TEXT_CHARS`].
fn display_text(text: Option<&Text>, element: &str, notes: &mut Vec<String>) -> Option<String> {
    let text = text?;
    let clean = collapse(&text.value);
    if clean.is_empty() {
        return None;
    }
    if clean.chars().count() > MAX_TEXT_CHARS {
        notes.push(format!(
            "<{element}> (line {}) cut to {MAX_TEXT_CHARS} characters",
            text.line
        ));
        return Some(
            clean
                .chars()
                .take(MAX_TEXT_CHARS)
                .collect::<String>()
                .trim_end()
                .to_owned(),
        );
    }
    Some(clean)
}

fn collapse(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn server(s: &RawServer) -> Result<Item, ImportError> {
    let element = s.element();
    let kind_attr = s.kind.as_deref().unwrap_or("").trim();
    let kind = match (s.outgoing, kind_attr.to_ascii_lowercase().as_str()) {
        (false, "imap") => "imap",
        (false, "pop3") => "pop3",
        (true, "smtp") => "smtp",
        _ if s.kind.is_none() => {
            return Ok(Item::Skipped(format!(
                "skipped <{element}> (line {}): it has no type attribute",
                s.line
            )));
        }
        _ => {
            return Ok(Item::Skipped(format!(
                "skipped <{element} type={}> (line {}): mailconfd does not model this server type",
                quote(kind_attr),
                s.line
            )));
        }
    };
    let head = format!("<{element} type=\"{kind}\"> (line {})", s.line);

    let mut notes = Vec::new();
    let mut auth = Vec::new();
    let mut unknown_auth = Vec::new();
    for a in &s.auth {
        let value = a.value.trim();
        match Auth::from_name(value) {
            // `plain` and `password-cleartext` are the same method; the config
            // refuses a method listed twice.
            Some(m) if auth.contains(&m) => {}
            Some(m) => auth.push(m),
            None => unknown_auth.push(quote(value)),
        }
    }
    if auth.is_empty() {
        let why = if unknown_auth.is_empty() {
            "no <authentication>".to_owned()
        } else {
            format!(
                "no <authentication> mailconfd knows ({})",
                unknown_auth.join(", ")
            )
        };
        return Ok(Item::Skipped(format!(
            "skipped {head}: {why}; add it by hand with the method the provider uses"
        )));
    }
    if !unknown_auth.is_empty() {
        notes.push(format!(
            "skipped <authentication> {}: not a method mailconfd knows",
            unknown_auth.join(", ")
        ));
    }

    let hostname = s
        .hostname
        .as_ref()
        .filter(|h| !h.value.trim().is_empty())
        .ok_or_else(|| ImportError::at(s.line, format!("{head} has no <hostname>")))?;
    let host = host(hostname.value.trim()).map_err(|why| {
        ImportError::at(
            hostname.line,
            format!("<hostname> {}: {why}", quote(hostname.value.trim())),
        )
    })?;

    let port = match &s.port {
        None => {
            notes.push(
                "no <port> given: mailconfd's default port for this security applies".to_owned(),
            );
            None
        }
        Some(p) => Some(port(p)?),
    };

    let mut security = None;
    let mut unknown_security = Vec::new();
    for t in &s.socket_types {
        // Case-sensitive like Thunderbird; the first value it understands wins.
        let mapped = match t.value.trim() {
            "SSL" => Some("tls"),
            "STARTTLS" => Some("starttls"),
            "plain" => Some("plain"),
            other => {
                unknown_security.push(quote(other));
                None
            }
        };
        if security.is_none() {
            security = mapped;
        }
    }
    let Some(security) = security else {
        return Err(ImportError::at(
            s.line,
            format!("{head} has no <socketType> SSL, STARTTLS or plain"),
        ));
    };
    if !unknown_security.is_empty() {
        notes.push(format!(
            "ignored <socketType> {}: not SSL, STARTTLS or plain",
            unknown_security.join(", ")
        ));
    }

    let username = match &s.username {
        Some(u) if !u.value.trim().is_empty() => {
            let value = u.value.trim();
            if value.chars().any(char::is_control) || value.len() > MAX_TEXT_CHARS {
                return Err(ImportError::at(
                    u.line,
                    format!("<username> must be printable and at most {MAX_TEXT_CHARS} bytes"),
                ));
            }
            if let Some(token) = unknown_placeholder(value) {
                return Err(ImportError::at(
                    u.line,
                    format!(
                        "<username> has unknown placeholder {} (known: {})",
                        quote(token),
                        PLACEHOLDERS.join(", ")
                    ),
                ));
            }
            Some(value.to_owned())
        }
        _ => {
            notes
                .push("no <username> given: mailconfd's default %EMAILADDRESS% applies".to_owned());
            None
        }
    };

    Ok(Item::Server(ServerOut {
        kind,
        host,
        port,
        security,
        auth,
        username,
        notes,
    }))
}

fn port(p: &Text) -> Result<u16, ImportError> {
    let v = p.value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ImportError::at(
            p.line,
            format!("<port> {} is not a number", quote(v)),
        ));
    }
    match v.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ImportError::at(
            p.line,
            format!("<port> {} is not in 1-65535", quote(v)),
        )),
    }
}

/// The host as the config stores it: placeholders kept (they must expand to a
/// host name), otherwise lower-case A-labels. Mirrors `config`'s host rule so
/// the block is accepted as printed.
fn host(h: &str) -> Result<String, String> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if let Some(token) = unknown_placeholder(h) {
        return Err(format!("unknown placeholder {}", quote(token)));
    }
    if h.contains('%') {
        let sample = h
            .replace("%EMAILADDRESS%", "user@example.com")
            .replace("%EMAILLOCALPART%", "user")
            .replace("%EMAILDOMAIN%", "example.com")
            .to_ascii_lowercase();
        check_hostname(&sample).map_err(|e| e.to_string())?;
        Ok(h.to_owned())
    } else {
        normalize_domain(h).map_err(|e| e.to_string())
    }
}

/// The first `%WORD%` token that is not a known placeholder, scanning the way
/// the config's validation does (a `%` not followed by `WORD%` is literal).
fn unknown_placeholder(s: &str) -> Option<&str> {
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let end = after.find('%')?;
        let word = &after[..end];
        let looks_like_placeholder =
            !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if looks_like_placeholder {
            let token = &rest[start..start + end + 2];
            if !PLACEHOLDERS.contains(&token) {
                return Some(token);
            }
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Output.

/// A TOML value as the `toml` crate writes it (quoting and escaping included).
fn value(v: toml::Value) -> String {
    v.to_string()
}

fn string(s: &str) -> String {
    value(toml::Value::String(s.to_owned()))
}

/// Input quoted inside a comment or an error: cut, stripped of line breaks and
/// control characters (a comment must stay on one line), then TOML-quoted so
/// where it starts and ends is unambiguous.
fn quote(s: &str) -> String {
    let mut clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED_CHARS)
        .collect();
    if s.chars().count() > MAX_QUOTED_CHARS {
        clean.push('…');
    }
    string(&clean)
}

/// A raw name from the parser (element or entity name), quoted for a message.
fn quoted_raw(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED_CHARS)
        .collect()
}

impl Block {
    fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut line = |indent: &str, text: &str| {
            out.push_str(indent);
            out.push_str(text);
            out.push('\n');
        };
        line(
            "",
            "# imported from a Thunderbird config-v1.1 document by `mailconfd import`",
        );
        line("", "[[provider]]");
        line("", &format!("id = {}", string(&self.id)));
        line("", &format!("name = {}", string(&self.name)));
        line("", &format!("short_name = {}", string(&self.short_name)));
        let domains = self
            .domains
            .iter()
            .map(|d| toml::Value::String(d.clone()))
            .collect();
        line(
            "",
            &format!("domains = {}", value(toml::Value::Array(domains))),
        );
        for n in &self.notes {
            line("# ", n);
        }
        for item in &self.items {
            match item {
                Item::Skipped(why) => {
                    line("", "");
                    line("  # ", why);
                }
                Item::Server(s) => {
                    line("", "");
                    line("  ", "[[provider.server]]");
                    line("  ", &format!("type = {}", string(s.kind)));
                    line("  ", &format!("host = {}", string(&s.host)));
                    if let Some(port) = s.port {
                        line(
                            "  ",
                            &format!("port = {}", value(toml::Value::Integer(port.into()))),
                        );
                    }
                    line("  ", &format!("security = {}", string(s.security)));
                    let auth = match s.auth.as_slice() {
                        [one] => string(one.thunderbird_name()),
                        many => value(toml::Value::Array(
                            many.iter()
                                .map(|a| toml::Value::String(a.thunderbird_name().to_owned()))
                                .collect(),
                        )),
                    };
                    line("  ", &format!("auth = {auth}"));
                    if let Some(u) = &s.username {
                        line("  ", &format!("username = {}", string(u)));
                    }
                    for n in &s.notes {
                        line("  # ", n);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.org">
    <domain>example.org</domain>
    <displayName>Example</displayName>
    <incomingServer type="imap">
      <hostname>imap.example.org</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.org</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"#;

    fn err(xml: &str) -> String {
        import(xml.as_bytes()).unwrap_err().to_string()
    }

    fn parses(block: &str) -> crate::config::Config {
        crate::config::parse(block).unwrap_or_else(|e| panic!("{e:?}\n{block}"))
    }

    #[test]
    fn minimal_document_imports_and_parses() {
        let block = import(MINIMAL.as_bytes()).unwrap();
        let config = parses(&block);
        let p = &config.providers[0];
        assert_eq!(p.id, "example.org");
        assert_eq!(p.name, "Example");
        assert_eq!(p.short_name, "Example");
        assert_eq!(p.servers.len(), 2);
        assert!(block.contains("auth = \"password-cleartext\"\n"));
    }

    #[test]
    fn crlf_tabs_comments_no_declaration_and_entities() {
        let xml = MINIMAL
            .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", "")
            .replace('\n', "\r\n")
            .replace("    <", "\t\t<")
            .replace(
                "<displayName>Example</displayName>",
                "<!-- a comment -->\r\n<displayName>\r\n\tA &amp; B &#x3C;&#60;&gt; &quot;&apos; <![CDATA[<c>]]>\r\n</displayName><unknown a=\"b\"><x/></unknown>",
            );
        let block = import(xml.as_bytes()).unwrap();
        let config = parses(&block);
        assert_eq!(config.providers[0].name, r#"A & B <<> "' <c>"#);
    }

    #[test]
    fn several_auth_methods_become_a_list_and_aliases_fold() {
        let xml = MINIMAL.replace(
            "<authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>",
            "<authentication>OAuth2</authentication><authentication>plain</authentication><authentication>password-cleartext</authentication><authentication>kerberos-v9</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>",
        );
        let block = import(xml.as_bytes()).unwrap();
        assert!(
            block.contains("auth = [\"OAuth2\", \"password-cleartext\"]"),
            "{block}"
        );
        assert!(
            block.contains("# skipped <authentication> \"kerberos-v9\""),
            "{block}"
        );
        let config = parses(&block);
        assert_eq!(
            config.providers[0].servers[0].auth,
            [Auth::OAuth2, Auth::PasswordCleartext]
        );
    }

    #[test]
    fn server_without_known_auth_is_skipped_with_a_comment() {
        let xml = MINIMAL.replace(
            "</outgoingServer>",
            "</outgoingServer><outgoingServer type=\"smtp\"><hostname>b.example.org</hostname><port>25</port><socketType>plain</socketType><authentication>carrier-pigeon</authentication></outgoingServer>",
        );
        let block = import(xml.as_bytes()).unwrap();
        assert!(block.contains("  # skipped <outgoingServer type=\"smtp\"> (line 19): no <authentication> mailconfd knows (\"carrier-pigeon\")"), "{block}");
        assert_eq!(parses(&block).providers[0].servers.len(), 2);
        // If that was the only SMTP server, the import fails: the config needs one.
        let only = MINIMAL.replace(
            "<authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </outgoingServer>",
            "<username>%EMAILADDRESS%</username>\n    </outgoingServer>",
        );
        assert_eq!(
            err(&only),
            "line 3: no smtp server mailconfd can serve (Thunderbird requires one)"
        );
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let cases = [
            (MINIMAL.replace("<port>993</port>", "<port>99x</port>"), "line 8: <port> \"99x\" is not a number"),
            (MINIMAL.replace("<port>465</port>", "<port>70000</port>"), "line 15: <port> \"70000\" is not in 1-65535"),
            (MINIMAL.replace("<port>465</port>", "<port>0</port>"), "line 15: <port> \"0\" is not in 1-65535"),
            (MINIMAL.replace("imap.example.org", "imap_x.example.org"), "line 7: <hostname> \"imap_x.example.org\": only letters, digits and inner hyphens are allowed in a label"),
            (MINIMAL.replace("imap.example.org", "%USER%.example.org"), "line 7: <hostname> \"%USER%.example.org\": unknown placeholder \"%USER%\""),
            (MINIMAL.replace("<hostname>imap.example.org</hostname>", ""), "line 6: <incomingServer type=\"imap\"> (line 6) has no <hostname>"),
            (MINIMAL.replace("<socketType>SSL</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>", "<socketType>ssl</socketType><authentication>plain</authentication></incomingServer>"), "line 6: <incomingServer type=\"imap\"> (line 6) has no <socketType> SSL, STARTTLS or plain"),
            (MINIMAL.replace("<username>%EMAILADDRESS%</username>\n    </incomingServer>", "<username>%REALNAME%</username></incomingServer>"), "line 11: <username> has unknown placeholder \"%REALNAME%\" (known: %EMAILADDRESS%, %EMAILLOCALPART%, %EMAILDOMAIN%)"),
            (MINIMAL.replace("</displayName>", "</displayname>"), "line 5: not well-formed XML"),
            (MINIMAL.replace("Example<", "&nbsp;<"), "line 5: unknown entity &nbsp;"),
            (MINIMAL.replace("clientConfig", "html"), "line 2: root element is <html>, not <clientConfig>"),
            (MINIMAL.replace("<domain>example.org</domain>", "<domain>localhost</domain>"), "line 3: <emailProvider> has no <domain> that is a valid mail domain"),
            (MINIMAL.replace("</clientConfig>\n", ""), "document ends inside an element"),
            ("".to_owned(), "line 1: no <clientConfig> element"),
            ("<clientConfig/>".to_owned(), "line 1: no <emailProvider> in <clientConfig>"),
        ];
        for (xml, expected) in cases {
            let got = err(&xml);
            assert!(
                got.starts_with(expected) || got.contains(expected),
                "got {got:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn refuses_dtds_oversize_and_non_utf8() {
        let dtd = format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE clientConfig [\n<!ENTITY lol \"lol\">\n]>\n{}",
            &MINIMAL[MINIMAL.find("<clientConfig").unwrap()..]
        )
        .replace("Example<", "&lol;<");
        assert_eq!(
            err(&dtd),
            "line 2: DTDs with an internal subset or entity declarations are refused"
        );
        // A plain DOCTYPE without a subset declares nothing and is harmless.
        let plain = MINIMAL.replace("<clientConfig", "<!DOCTYPE clientConfig>\n<clientConfig");
        assert!(import(plain.as_bytes()).is_ok());

        let big = format!("{MINIMAL}{}", " ".repeat(MAX_INPUT_BYTES));
        assert_eq!(
            import(big.as_bytes()),
            Err(ImportError::TooLarge { len: big.len() })
        );

        let mut latin1 = MINIMAL.replace("Example<", "Caf\u{e9}<").into_bytes();
        let at = latin1.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
        latin1.splice(at..at + 2, [0xe9]);
        assert_eq!(
            err_bytes(&latin1),
            "line 5: not UTF-8 (only UTF-8 documents are read)"
        );
    }

    fn err_bytes(xml: &[u8]) -> String {
        import(xml).unwrap_err().to_string()
    }

    #[test]
    fn hostile_values_are_escaped_into_valid_toml() {
        let xml = MINIMAL
            .replace(
                "<displayName>Example</displayName>",
                "<displayName>\"\"\" ] [x] = 1 \\ '''&#10;[[provider]]&#7;</displayName><displayShortName>Bücher &amp; Söhne</displayShortName>",
            )
            .replace(
                "<domain>example.org</domain>",
                "<domain>Bücher.example</domain><domain>bad domain&#10;[x]</domain><domain>BÜCHER.example</domain><domain purpose=\"mx\">mx.example.net</domain>",
            )
            .replace("id=\"example.org\"", "id=\"&quot;&#10;id = 'x'\"")
            .replace("type=\"imap\"", "type=\"IMAP\"")
            .replace("</emailProvider>", "<incomingServer type=\"ex&#10;[evil]\"/></emailProvider><emailProvider id=\"second.example\"/>")
            .replace("<username>%EMAILADDRESS%</username>\n    </incomingServer>", "<username>%EMAILLOCALPART%+\"x\"\\y</username>\n    </incomingServer>");
        let block = import(xml.as_bytes()).unwrap();
        let config = parses(&block);
        let p = &config.providers[0];
        assert_eq!(p.id, "xn--bcher-kva.example");
        assert_eq!(p.domains, ["xn--bcher-kva.example"]);
        assert_eq!(p.name, "\"\"\" ] [x] = 1 \\ ''' [[provider]]");
        assert_eq!(p.short_name, "Bücher & Söhne");
        assert_eq!(p.servers[0].username, "%EMAILLOCALPART%+\"x\"\\y");
        for l in block.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(!l.chars().any(char::is_control), "{l:?}");
        }
        assert!(
            block.contains("# skipped <domain> \"BÜCHER.example\""),
            "{block}"
        );
        assert!(
            block.contains("# skipped <domain purpose=\"mx\">"),
            "{block}"
        );
        assert!(
            block.contains("# ignored the <emailProvider> on line"),
            "{block}"
        );
        assert!(
            block.contains("# skipped <incomingServer type=\"ex [evil]\">"),
            "{block}"
        );
    }

    #[test]
    fn never_panics_on_mangled_input() {
        // Deterministic mutations (xorshift) of a real document: truncations,
        // byte flips and markup characters dropped in anywhere.
        let base = MINIMAL.as_bytes();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let noise: &[&[u8]] = &[
            b"<",
            b">",
            b"&",
            b"&#0;",
            b"&#xFFFFFFFF;",
            b"]]>",
            b"<!DOCTYPE",
            b"\"",
            b"</",
            b"/>",
            b"<?",
            b"\xff",
            b"\xc3",
            b"%",
        ];
        for _ in 0..3000 {
            let mut doc = base.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (doc.len() + 1);
                match next() % 3 {
                    0 => doc.truncate(at),
                    1 => {
                        let n = noise[(next() as usize) % noise.len()];
                        doc.splice(at..at, n.iter().copied());
                    }
                    _ => {
                        if at < doc.len() {
                            doc[at] = (next() & 0xff) as u8;
                        }
                    }
                }
            }
            if let Ok(block) = import(&doc) {
                // Whatever is accepted must be a valid config.
                parses(&block);
            }
        }
    }
}
