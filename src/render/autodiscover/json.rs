//! Autodiscover v2 (`autodiscover.json`), as Exchange Online answers it.
//!
//! Not specified by Microsoft for third parties; the shape is what Exchange
//! Online returns and mailcow replicates (spec §6). Only `AutodiscoverV1` (which
//! points at our POX endpoint) and, when configured, `ActiveSync` are answered.

use serde::Serialize;

use crate::address::EmailAddress;
use crate::model::{Provider, ServerKind, expand_url};
use crate::render::Document;

/// The unsupported protocol value is echoed in the 400 answer; this caps it so
/// a client cannot make us reflect kilobytes of its own text.
pub const MAX_ECHOED_PROTOCOL_CHARS: usize = 64;

const JSON_PATH_PREFIX: &str = "/autodiscover/autodiscover.json/v1.0/";

/// A JSON answer and the HTTP status to send it with (200 or 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonAnswer {
    pub status: u16,
    pub document: Document,
}

// Field order is the wire order; Exchange Online writes Protocol first.
#[derive(Serialize)]
struct Found<'a> {
    #[serde(rename = "Protocol")]
    protocol: &'a str,
    #[serde(rename = "Url")]
    url: &'a str,
}

#[derive(Serialize)]
struct Invalid<'a> {
    #[serde(rename = "ErrorCode")]
    error_code: &'a str,
    #[serde(rename = "ErrorMessage")]
    error_message: String,
}

/// Answers `?Protocol=<protocol>` for `address` (compared ignoring case).
pub fn render_json(provider: &Provider, address: &EmailAddress, protocol: &str) -> JsonAnswer {
    let activesync = provider.first(ServerKind::ActiveSync).and_then(|s| s.url());
    if protocol.eq_ignore_ascii_case("AutodiscoverV1") {
        // The POX endpoint on the address's own autodiscover name: the one our
        // certificate covers for every served domain.
        let url = format!(
            "https://autodiscover.{}/autodiscover/autodiscover.xml",
            address.domain()
        );
        return found("AutodiscoverV1", &url);
    }
    if let Some(url) = activesync
        && protocol.eq_ignore_ascii_case("ActiveSync")
    {
        return found("ActiveSync", &expand_url(url, Some(address)));
    }
    let supported = if activesync.is_some() {
        "ActiveSync,AutodiscoverV1"
    } else {
        "AutodiscoverV1"
    };
    let echoed: String = protocol.chars().take(MAX_ECHOED_PROTOCOL_CHARS).collect();
    let body = Invalid {
        error_code: "InvalidProtocol",
        error_message: format!(
            "The given protocol value '{echoed}' is invalid. Supported values are '{supported}'"
        ),
    };
    JsonAnswer {
        status: 400,
        document: Document::json(to_json(&body)),
    }
}

fn found(protocol: &str, url: &str) -> JsonAnswer {
    JsonAnswer {
        status: 200,
        document: Document::json(to_json(&Found { protocol, url })),
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("structs of strings always serialize")
}

/// The address part of `/autodiscover/autodiscover.json/v1.0/<addr>` (prefix
/// matched ignoring case, a query string ignored), or `None` for other paths.
///
/// The result is still percent-encoded: it borrows from `path`, so decoding
/// (`%40` -> `@`) is the caller's job, before `EmailAddress::parse`.
pub fn address_from_json_path(path: &str) -> Option<&str> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let head = path.get(..JSON_PATH_PREFIX.len())?;
    if !head.eq_ignore_ascii_case(JSON_PATH_PREFIX) {
        return None;
    }
    let rest = &path[JSON_PATH_PREFIX.len()..];
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const CONFIG: &str = r#"
[[provider]]
id = "example.com"
name = "Example"
domains = ["example.com"]
  [[provider.server]]
  type = "imap"
  host = "mail.example.com"
  [[provider.server]]
  type = "smtp"
  host = "mail.example.com"
"#;

    fn answer(extra: &str, protocol: &str) -> (u16, serde_json::Value) {
        let c = config::parse(&format!("{CONFIG}{extra}")).unwrap();
        let p = c.provider_for_domain("example.com").unwrap();
        let a = EmailAddress::parse("alice@Example.com").unwrap();
        let ans = render_json(p, &a, protocol);
        assert_eq!(ans.document.content_type, crate::render::JSON);
        (
            ans.status,
            serde_json::from_slice(&ans.document.body).unwrap(),
        )
    }

    const EAS: &str = r#"
  [[provider.server]]
  type = "activesync"
  url = "https://eas.example.com/Microsoft-Server-ActiveSync"
"#;

    #[test]
    fn autodiscover_v1_points_at_the_pox_endpoint_of_the_address_domain() {
        let (status, v) = answer("", "autodiscoverv1");
        assert_eq!(status, 200);
        assert_eq!(
            v,
            serde_json::json!({"Protocol":"AutodiscoverV1","Url":"https://autodiscover.example.com/autodiscover/autodiscover.xml"})
        );
    }

    #[test]
    fn activesync_only_when_configured() {
        let (status, v) = answer(EAS, "ActiveSync");
        assert_eq!(status, 200);
        assert_eq!(
            v["Url"],
            "https://eas.example.com/Microsoft-Server-ActiveSync"
        );
        let (status, v) = answer("", "ActiveSync");
        assert_eq!(status, 400);
        assert_eq!(v["ErrorCode"], "InvalidProtocol");
        assert_eq!(
            v["ErrorMessage"],
            "The given protocol value 'ActiveSync' is invalid. Supported values are 'AutodiscoverV1'"
        );
        let (_, v) = answer(EAS, "Rest");
        assert!(
            v["ErrorMessage"]
                .as_str()
                .unwrap()
                .ends_with("'ActiveSync,AutodiscoverV1'")
        );
    }

    #[test]
    fn echoed_protocol_is_capped_and_escaped() {
        let hostile = format!("\"}}<x>\u{0}{}", "y".repeat(10_000));
        let (status, v) = answer("", &hostile);
        assert_eq!(status, 400);
        let msg = v["ErrorMessage"].as_str().unwrap();
        assert!(msg.len() < 200, "{}", msg.len());
        assert!(msg.contains("\"}<x>\u{0}"));
    }

    #[test]
    fn json_path_forms() {
        assert_eq!(
            address_from_json_path("/Autodiscover/Autodiscover.json/v1.0/a@example.com?Protocol=x"),
            Some("a@example.com")
        );
        assert_eq!(
            address_from_json_path("/autodiscover/autodiscover.json/V1.0/a%40example.com"),
            Some("a%40example.com")
        );
        for bad in [
            "/autodiscover/autodiscover.json",
            "/autodiscover/autodiscover.json/v1.0/",
            "/autodiscover/autodiscover.json/v1.0/a/b",
            "/autodiscover/autodiscover.xml",
            "/autodiscover/autodiscover.json/v1.0é",
        ] {
            assert_eq!(address_from_json_path(bad), None, "{bad}");
        }
    }
}
