//! The pure render core: validated model (and a parsed address) in, bytes out.
//!
//! Nothing here does I/O, reads a clock or draws random numbers: the same input
//! gives the same bytes, which is what makes golden tests and `mailconfd render`
//! ("prints exactly what the server serves") possible. Every document is written
//! through an escaping writer (quick-xml, plist, serde_json), never with format!.

pub mod autodiscover;
pub mod clients;
pub mod dns;
pub mod mobileconfig;
pub mod mta_sts;
pub mod pacc;
pub mod page;
pub mod tb_android;
pub mod thunderbird;

/// A rendered document and how to serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub content_type: &'static str,
    /// For `Content-Disposition: attachment`; already restricted to `[A-Za-z0-9._-]`.
    pub filename: Option<String>,
    pub body: Vec<u8>,
}

pub const XML: &str = "text/xml; charset=utf-8";
pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const MOBILECONFIG: &str = "application/x-apple-aspen-config";

impl Document {
    pub fn xml(body: Vec<u8>) -> Document {
        Document {
            content_type: XML,
            filename: None,
            body,
        }
    }

    pub fn json(body: Vec<u8>) -> Document {
        Document {
            content_type: JSON,
            filename: None,
            body,
        }
    }

    pub fn text(body: Vec<u8>) -> Document {
        Document {
            content_type: TEXT,
            filename: None,
            body,
        }
    }
}

/// Keeps only characters that are safe in a file name and a header value.
pub fn safe_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.trim_start_matches('.').chars().take(100).collect()
}
