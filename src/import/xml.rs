//! Reading the config-v1.1 XML: what the first `<emailProvider>` says, each
//! value with the line it came from. Knows nothing about the config; refuses
//! DTDs and unknown entities, resolves only the predefined ones.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};

use super::{ImportError, MAX_QUOTED_CHARS, line_of};

/// A text value and the line its element starts on.
#[derive(Debug, Clone, Default)]
pub(super) struct Text {
    pub(super) value: String,
    pub(super) line: usize,
}

#[derive(Debug, Default)]
pub(super) struct RawDoc {
    pub(super) provider: Option<RawProvider>,
    /// Lines of further `<emailProvider>` elements, which are ignored.
    pub(super) extra_providers: Vec<usize>,
}

#[derive(Debug, Default)]
pub(super) struct RawProvider {
    pub(super) line: usize,
    pub(super) id: Option<String>,
    pub(super) domains: Vec<RawDomain>,
    pub(super) name: Option<Text>,
    pub(super) short_name: Option<Text>,
    pub(super) servers: Vec<RawServer>,
}

#[derive(Debug)]
pub(super) struct RawDomain {
    pub(super) text: Text,
    pub(super) purpose: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct RawServer {
    pub(super) line: usize,
    pub(super) outgoing: bool,
    pub(super) kind: Option<String>,
    pub(super) hostname: Option<Text>,
    pub(super) port: Option<Text>,
    pub(super) socket_types: Vec<Text>,
    pub(super) auth: Vec<Text>,
    pub(super) username: Option<Text>,
}

impl RawServer {
    pub(super) fn element(&self) -> &'static str {
        if self.outgoing {
            "outgoingServer"
        } else {
            "incomingServer"
        }
    }
}

/// Where the reader is, in the only paths that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// Outside the first `emailProvider`.
    Elsewhere,
    /// Directly inside the first `emailProvider`.
    Provider,
    /// Directly inside one of its servers.
    Server,
}

/// Turns byte offsets into line numbers without rescanning from the start
/// (offsets arrive in increasing order).
pub(super) struct Lines<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
    pub(super) line: usize,
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

pub(super) fn parse(text: &str) -> Result<RawDoc, ImportError> {
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

/// A raw name from the parser (element or entity name), quoted for a message.
fn quoted_raw(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_QUOTED_CHARS)
        .collect()
}
