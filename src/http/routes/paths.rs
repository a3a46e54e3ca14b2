//! The paths we serve, and the metrics label of each.

use crate::address::{AddressError, EmailAddress};
use crate::metrics::Format;
use crate::render::autodiscover;

/// The paths we serve, matched without regard to case where clients differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route<'p> {
    Thunderbird,
    Pox,
    Json {
        address_in_path: Option<&'p str>,
    },
    Mobileconfig,
    MtaSts,
    AcmeChallenge(&'p str),
    Page,
    /// PACC's `/.well-known/user-agent-configuration.json`.
    Pacc,
    /// RFC 8620 §2.2 `/.well-known/jmap`: a redirect to the session URL.
    Jmap,
}

impl Route<'_> {
    /// The metrics label of what this route answers. Exhaustive: a new route
    /// picks its label here, in the one place that knows the paths.
    pub(super) fn format(self) -> Format {
        match self {
            Route::Thunderbird => Format::thunderbird,
            Route::Pox => Format::autodiscover_pox,
            Route::Json { .. } => Format::autodiscover_json,
            Route::Mobileconfig => Format::mobileconfig,
            Route::MtaSts => Format::mta_sts,
            Route::AcmeChallenge(_) => Format::acme_challenge,
            Route::Page => Format::page,
            Route::Pacc => Format::pacc,
            Route::Jmap => Format::jmap,
        }
    }
}

/// The format a path asks for, for replies made before routing (a body too
/// large, a request too slow): the route it would take, else `other`.
pub fn format_of_path(path: &str) -> Format {
    match_path(path).map_or(Format::other, Route::format)
}

/// The address of the JSON path form (`/autodiscover/autodiscover.json/v1.0/ADDR`)
/// as sent, still percent-encoded: `autodiscover::address_from_json_path`, the
/// one parser of that path. Exactly one path segment: a raw `/` after the
/// prefix makes it not this route, so the router, the directory lookup, the
/// handler and the request log (which redacts per segment) all see the same
/// address. A `/` in an address arrives as `%2F`.
pub(super) fn json_path_address(path: &str) -> Option<&str> {
    autodiscover::address_from_json_path(path)
}

/// The address of the JSON path form, decoded and parsed: the one parse of it.
pub(super) fn parse_path_address(raw: &str) -> Result<EmailAddress, AddressError> {
    EmailAddress::parse(&percent_encoding::percent_decode_str(raw).decode_utf8_lossy())
}

pub(super) fn match_path(path: &str) -> Option<Route<'_>> {
    const JSON_PATH: &str = "/autodiscover/autodiscover.json";
    if let Some(address) = json_path_address(path) {
        return Some(Route::Json {
            address_in_path: Some(address),
        });
    }
    let lower = path.to_ascii_lowercase();
    Some(match lower.as_str() {
        "/mail/config-v1.1.xml" | "/.well-known/autoconfig/mail/config-v1.1.xml" => {
            Route::Thunderbird
        }
        "/autodiscover/autodiscover.xml" => Route::Pox,
        JSON_PATH => Route::Json {
            address_in_path: None,
        },
        // With the slash: the URL automx2 publishes, so that links keep working
        // after a switch.
        "/mobileconfig" | "/mobileconfig/" => Route::Mobileconfig,
        "/.well-known/mta-sts.txt" => Route::MtaSts,
        "/.well-known/user-agent-configuration.json" => Route::Pacc,
        "/.well-known/jmap" => Route::Jmap,
        "/" => Route::Page,
        _ => {
            let token = path.strip_prefix("/.well-known/acme-challenge/")?;
            Route::AcmeChallenge(token)
        }
    })
}
