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

mod xml;

use xml::{RawDoc, RawServer, Text};

use crate::address::normalize_domain;
use crate::model::{Auth, PLACEHOLDERS, host_template, unknown_placeholder};

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
    let doc = xml::parse(text)?;
    let block = convert(doc)?;
    Ok(block.to_toml())
}

fn line_of(bytes: &[u8], pos: usize) -> usize {
    let pos = pos.min(bytes.len());
    bytes[..pos].iter().filter(|&&b| b == b'\n').count() + 1
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
    // A set beside the list: a 1 MiB document holds ~40,000 domains, and
    // `Vec::contains` made that quadratic (seconds of CPU).
    let mut seen = std::collections::HashSet::new();
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
            Ok(n) if !seen.insert(n.clone()) => notes.push(format!(
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

/// The host as the config stores it (the model's own rule, so the block is
/// accepted as printed).
fn host(h: &str) -> Result<String, String> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if let Some(token) = unknown_placeholder(h) {
        return Err(format!("unknown placeholder {}", quote(token)));
    }
    host_template(h).map_err(|e| e.to_string())
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
mod tests;
