//! Just enough of a DOM for the rules in `tb_android`: elements with their
//! attributes, text and child elements, depth-capped. Our documents are a few
//! KiB; the tree is simpler to hold to the Kotlin pull parser's behaviour
//! than a second pull parser would be.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{Rejected, reject};

/// Deeper documents are refused rather than walked (ours are 4 levels deep).
const MAX_DEPTH: usize = 32;

/// A parsed element.
#[derive(Debug, Default)]
pub(super) struct Element {
    pub(super) name: String,
    attributes: Vec<(String, String)>,
    nodes: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub(super) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn children(&self) -> impl Iterator<Item = &Element> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// `readText`: an element found where text belongs throws the document away.
    pub(super) fn text(&self) -> Result<String, Rejected> {
        let mut text = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => text.push_str(t),
                Node::Element(e) => {
                    return Err(reject(format!(
                        "Expected text in '{}', but got element '{}'",
                        self.name, e.name
                    )));
                }
            }
        }
        Ok(text)
    }
}

/// The document as a tree under a nameless root. Names are local names (the
/// app's pull parser is not namespace-aware either, and our documents have
/// no prefixes).
pub(super) fn parse_tree(document: &[u8]) -> Result<Element, Rejected> {
    let text = std::str::from_utf8(document)
        .map_err(|_| reject("Error parsing Autoconfig XML: not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    let mut stack = vec![Element::default()];
    let xml_error =
        |e: &dyn std::fmt::Display| reject(format!("Error parsing Autoconfig XML: {e}"));
    loop {
        match reader.read_event().map_err(|e| xml_error(&e))? {
            Event::Start(s) => {
                if stack.len() > MAX_DEPTH {
                    return Err(reject("Error parsing Autoconfig XML: nested too deeply"));
                }
                let mut element = Element {
                    name: s.local_name().into_inner().to_owned(),
                    ..Element::default()
                };
                for a in s.attributes() {
                    let a = a.map_err(|e| xml_error(&e))?;
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| xml_error(&e))?;
                    element.attributes.push((
                        a.key.local_name().into_inner().to_owned(),
                        value.into_owned(),
                    ));
                }
                stack.push(element);
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| xml_error(&"unbalanced end tag"))?;
                let parent = stack
                    .last_mut()
                    .ok_or_else(|| xml_error(&"unbalanced end tag"))?;
                parent.nodes.push(Node::Element(done));
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                push_text(&mut stack, &t);
            }
            Event::CData(c) => {
                let t = c.into_inner().into_owned();
                push_text(&mut stack, &t);
            }
            Event::GeneralRef(g) => {
                let c = quick_xml::escape::resolve_predefined_entity(&g)
                    .ok_or_else(|| xml_error(&"unknown entity"))?;
                push_text(&mut stack, c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(reject(
            "Error parsing Autoconfig XML: end of document inside an element",
        ));
    }
    Ok(stack.pop().unwrap_or_default())
}

/// Text between elements; whitespace-only text outside text elements is
/// layout and does not count as content.
fn push_text(stack: &mut [Element], t: &str) {
    let Some(top) = stack.last_mut() else { return };
    match top.nodes.last_mut() {
        Some(Node::Text(prev)) => prev.push_str(t),
        _ => top.nodes.push(Node::Text(t.to_owned())),
    }
}
