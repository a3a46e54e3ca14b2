//! The POX request parser: an untrusted body in, the address and schema out.
//!
//! Tolerant where clients differ (letter case of element names, namespaces and
//! prefixes, whitespace, unknown children) and strict where an attacker gains
//! something: no DOCTYPE (so no entity declarations, no XXE, no billion laughs),
//! no undeclared entities, bounded size and depth, UTF-8 only. It never panics.
//! It does not validate the address: that is `EmailAddress::parse`'s job.

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

use crate::address::{AddressError, EmailAddress};

use super::{MOBILESYNC_REQUEST_NS_MARKER, MOBILESYNC_RESPONSE_NS, OUTLOOK_RESPONSE_NS};

/// Bodies above this are refused before parsing; a real request is ~400 bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Element nesting limit; a real request is three levels deep.
pub const MAX_NESTING_LEVELS: usize = 16;

/// What a POX request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoxRequest {
    /// The `EMailAddress` text, unescaped and trimmed; not yet validated.
    pub email: String,
    pub schema: ResponseSchema,
}

impl PoxRequest {
    /// Validates the requested address.
    ///
    /// # Errors
    /// The rule the address breaks; answer with error 600 (invalid request).
    pub fn address(&self) -> Result<EmailAddress, AddressError> {
        EmailAddress::parse(&self.email)
    }
}

/// The `AcceptableResponseSchema` of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseSchema {
    /// Outlook desktop, Thunderbird, eM Client: IMAP/POP3/SMTP settings.
    Outlook2006a,
    /// Exchange ActiveSync devices.
    MobileSync2006,
    /// Anything else, as sent (trimmed); answered with error 601.
    Other(String),
}

impl ResponseSchema {
    /// Matches a schema URI, ignoring its scheme (`http`/`https`: Microsoft's
    /// own samples write https), case and surrounding whitespace.
    pub fn from_uri(uri: &str) -> ResponseSchema {
        let uri = uri.trim();
        let same = |ns: &str| match (without_scheme(uri), without_scheme(ns)) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        if same(OUTLOOK_RESPONSE_NS) {
            ResponseSchema::Outlook2006a
        } else if same(MOBILESYNC_RESPONSE_NS) {
            ResponseSchema::MobileSync2006
        } else {
            ResponseSchema::Other(uri.to_owned())
        }
    }
}

/// `http://x` and `https://x` -> `x` (scheme letters in any case); any other
/// scheme, or none, -> `None`.
fn without_scheme(uri: &str) -> Option<&str> {
    ["http://", "https://"].into_iter().find_map(|scheme| {
        let head = uri.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &uri[scheme.len()..])
    })
}

/// Why a request body was refused. Every variant is answered with error 600
/// (or an HTTP 4xx); none is a server fault.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request body is larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("request body is not UTF-8")]
    NotUtf8,
    #[error("request body holds a DOCTYPE")]
    Doctype,
    #[error("request body references an entity other than the five predefined ones")]
    UnknownEntity,
    #[error("request body nests elements deeper than {MAX_NESTING_LEVELS} levels")]
    TooDeep,
    #[error("request body is not well-formed XML")]
    Malformed(#[source] quick_xml::Error),
    #[error("request body ends inside an element")]
    Truncated,
    #[error("root element is not Autodiscover")]
    NotAutodiscover,
    #[error("request names the user by LegacyDN only, which carries no mail domain")]
    LegacyDnOnly,
    #[error("request has no EMailAddress")]
    MissingEmail,
    #[error("request has more than one EMailAddress")]
    DuplicateEmail,
}

/// The elements whose text we collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Email,
    LegacyDn,
    Schema,
}

/// Parses a POX request body.
///
/// A missing `AcceptableResponseSchema` is inferred from the root element's
/// namespace: the docs make the element mandatory, but the request namespace
/// already names the flavour (mobilesync vs outlook requestschema), and a client
/// that left the element out is better served than refused. Anything not
/// mobilesync gets the Outlook schema, the only one that carries IMAP settings.
///
/// # Errors
/// See [`RequestError`]; the caller answers with error 600.
pub fn parse_request(body: &[u8]) -> Result<PoxRequest, RequestError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| RequestError::NotUtf8)?;
    // A BOM or whitespace before `<?xml` is not well-formed, but clients send it
    // (Thunderbird's own request template starts with a newline and indentation).
    let text = text.trim_start_matches('\u{feff}').trim_start();

    let mut reader = Reader::from_str(text);
    // Empty elements become Start+End, so one code path tracks depth.
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().check_end_names = true;

    let mut path: Vec<String> = Vec::new();
    let mut root_is_mobilesync = false;
    let mut collecting: Option<(Field, usize)> = None;
    let mut buf = String::new();
    let mut email: Option<String> = None;
    let mut legacy_dn = false;
    let mut schema: Option<String> = None;

    loop {
        let event = reader.read_event().map_err(RequestError::Malformed)?;
        match event {
            Event::DocType(_) => return Err(RequestError::Doctype),
            Event::Start(start) => {
                if path.len() >= MAX_NESTING_LEVELS {
                    return Err(RequestError::TooDeep);
                }
                let name = start.local_name().as_ref().to_ascii_lowercase();
                if path.is_empty() {
                    if name != "autodiscover" {
                        return Err(RequestError::NotAutodiscover);
                    }
                    root_is_mobilesync = declares_mobilesync(&start);
                }
                path.push(name);
                if collecting.is_none() {
                    collecting = field_at(&path).map(|f| (f, path.len()));
                    buf.clear();
                }
            }
            Event::End(_) => {
                if let Some((field, depth)) = collecting
                    && depth == path.len()
                {
                    collecting = None;
                    let value = buf.trim().to_owned();
                    match field {
                        Field::Email if email.is_some() => {
                            return Err(RequestError::DuplicateEmail);
                        }
                        Field::Email => email = Some(value),
                        Field::LegacyDn => legacy_dn = true,
                        // The first one wins: the docs allow exactly one.
                        Field::Schema => {
                            schema.get_or_insert(value);
                        }
                    }
                }
                path.pop();
                if path.is_empty() {
                    // Whatever follows the root is not ours to read.
                    break;
                }
            }
            Event::Text(t) => {
                if direct_child_text(collecting, &path) {
                    buf.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if direct_child_text(collecting, &path) {
                    buf.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                // Checked everywhere, not only inside fields: an undeclared
                // entity is a sign of an attack, never of a real client.
                let resolved = resolve_reference(&r)?;
                if direct_child_text(collecting, &path) {
                    buf.push_str(&resolved);
                }
            }
            Event::Eof => {
                if path.is_empty() {
                    return Err(RequestError::NotAutodiscover);
                }
                return Err(RequestError::Truncated);
            }
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }

    let email = match email {
        Some(e) if !e.is_empty() => e,
        _ if legacy_dn => return Err(RequestError::LegacyDnOnly),
        _ => return Err(RequestError::MissingEmail),
    };
    let schema = match schema {
        Some(s) if !s.is_empty() => ResponseSchema::from_uri(&s),
        _ if root_is_mobilesync => ResponseSchema::MobileSync2006,
        _ => ResponseSchema::Outlook2006a,
    };
    Ok(PoxRequest { email, schema })
}

/// `Autodiscover/Request/<field>`, names already lower-cased.
fn field_at(path: &[String]) -> Option<Field> {
    match path {
        [root, request, field] if root == "autodiscover" && request == "request" => {
            match field.as_str() {
                "emailaddress" => Some(Field::Email),
                "legacydn" => Some(Field::LegacyDn),
                "acceptableresponseschema" => Some(Field::Schema),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Text counts only directly inside the field element, not inside children a
/// client (or attacker) nested into it.
fn direct_child_text(collecting: Option<(Field, usize)>, path: &[String]) -> bool {
    collecting.is_some_and(|(_, depth)| depth == path.len())
}

fn declares_mobilesync(start: &BytesStart<'_>) -> bool {
    start.attributes().flatten().any(|a| {
        a.key.0.starts_with("xmlns")
            && a.value
                .to_ascii_lowercase()
                .contains(MOBILESYNC_REQUEST_NS_MARKER)
    })
}

/// The five predefined entities and character references; anything else is refused.
fn resolve_reference(r: &BytesRef<'_>) -> Result<String, RequestError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c.to_string()),
            _ => Err(RequestError::UnknownEntity),
        };
    }
    quick_xml::escape::resolve_predefined_entity(r)
        .map(str::to_owned)
        .ok_or(RequestError::UnknownEntity)
}

#[cfg(test)]
mod tests;
