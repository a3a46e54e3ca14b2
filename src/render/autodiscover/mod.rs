//! Microsoft Autodiscover: the POX request parser, the POX responses (Outlook
//! 2006a settings, MobileSync, errors) and the Autodiscover v2 JSON answers.
//!
//! Protocol and client quirks: the shared spec notes `spec/outlook-autodiscover.md`
//! (MS-OXDSCLI, MS-ASCMD, Thunderbird's `ExchangeAutoDiscover.sys.mjs`).
//! Pure like the rest of `render`: the error document's `Time` comes from the
//! caller; nothing here reads a clock, the network or a file.
//!
//! - `request`: untrusted POX body -> [`PoxRequest`]
//! - `pox`: [`render`], [`render_with_time`], [`render_for_domain`], [`render_error`]
//! - `json`: [`render_json`], [`address_from_json_path`]

mod json;
mod pox;
mod request;

pub use json::{JsonAnswer, MAX_ECHOED_PROTOCOL_CHARS, address_from_json_path, render_json};
pub use pox::{
    ErrorCode, FALLBACK_TIME_OF_DAY, render, render_error, render_for_domain, render_with_time,
};
pub use request::{
    MAX_NESTING_LEVELS, MAX_REQUEST_BYTES, PoxRequest, RequestError, ResponseSchema, parse_request,
};

/// Namespace of the outer `<Autodiscover>` element of every response.
pub const RESPONSE_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
/// The Outlook response schema (IMAP/POP3/SMTP settings).
pub const OUTLOOK_RESPONSE_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
/// The ActiveSync response schema (MS-ASCMD §2.2.1.1).
pub const MOBILESYNC_RESPONSE_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006";
/// Lower-case part of the mobilesync *request* namespace that tells the flavour apart.
const MOBILESYNC_REQUEST_NS_MARKER: &str = "/autodiscover/mobilesync/requestschema/";
