//! PACC, "Automatic Configuration of Email, Calendar, and Contact Server
//! Settings" (draft-ietf-mailmaint-pacc-02): the JSON document clients fetch
//! from `https://ua-auto-config.D/.well-known/user-agent-configuration.json`
//! and accept only when its SHA-256 matches the `_ua-auto-config.D` TXT record.
//!
//! The draft's text was not obtainable here; the format follows -02 as the
//! io-pim-discovery crate (0.9.0) parses it and Stalwart publishes it. Because
//! the digest sits in DNS, the bytes must never change unless the config does:
//! fixed key order (structs, not maps), no timestamps, nothing per request.
//! The document names no mail domain, so all of a provider's domains share it.

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Document;
use crate::model::{Auth, Provider, Server};

/// The well-known path on `ua-auto-config.D`.
pub const PATH: &str = "/.well-known/user-agent-configuration.json";

/// The document for `provider`, or `None` when it is off (`pacc = true` not
/// set) or PACC cannot describe the provider (`Provider::pacc` says why).
pub fn render(provider: &Provider) -> Option<Document> {
    if !provider.publish_pacc {
        return None;
    }
    let pacc = provider.pacc().ok()?;
    let uses = |pred: &dyn Fn(Auth) -> bool| {
        pacc.servers()
            .any(|s: &Server| s.auth.iter().any(|a| pred(*a)))
    };
    let oauth_public = provider
        .oauth2_hints()
        .filter(|_| uses(&|a| a == Auth::OAuth2))
        .map(|o| Issuer {
            issuer: o.issuer.clone(),
        });
    let host = |s: Option<&Server>| {
        s.and_then(Server::host_port)
            .map(|(h, _, _)| HostEntry { host: h.to_owned() })
    };
    let url = |s: Option<&Server>| {
        s.and_then(Server::url)
            .map(|u| UrlEntry { url: u.to_owned() })
    };
    let doc = Pacc {
        authentication: Authentication {
            oauth_public,
            password: uses(&Auth::uses_password).then_some(true),
        },
        info: Info {
            provider: ProviderInfo {
                name: provider.name.clone(),
                short_name: provider.short_name.clone(),
                logo: provider
                    .logo_url
                    .as_ref()
                    .map(|u| vec![UrlEntry { url: u.clone() }]),
            },
            help: provider.support.as_ref().map(|s| Help {
                contact: vec![s.clone()],
            }),
        },
        protocols: Protocols {
            caldav: url(pacc.caldav),
            carddav: url(pacc.carddav),
            imap: host(pacc.imap),
            jmap: url(pacc.jmap),
            pop3: host(pacc.pop3),
            smtp: host(pacc.smtp),
        },
    };
    let mut body = serde_json::to_vec_pretty(&doc).expect("serializing plain structs cannot fail");
    body.push(b'\n');
    Some(Document::json(body))
}

/// The `_ua-auto-config.D` TXT value for a document body:
/// `v=UAAC1; a=sha256; d=<base64 of SHA-256 of the exact bytes>`.
pub fn digest_record(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!(
        "v=UAAC1; a=sha256; d={}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

// Field order is the byte order: never reorder without a DNS update.
#[derive(Serialize)]
struct Pacc {
    authentication: Authentication,
    info: Info,
    protocols: Protocols,
}

#[derive(Serialize)]
struct Authentication {
    #[serde(rename = "oauth-public", skip_serializing_if = "Option::is_none")]
    oauth_public: Option<Issuer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<bool>,
}

#[derive(Serialize)]
struct Issuer {
    issuer: String,
}

#[derive(Serialize)]
struct Info {
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<Help>,
    provider: ProviderInfo,
}

#[derive(Serialize)]
struct Help {
    contact: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderInfo {
    name: String,
    short_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    logo: Option<Vec<UrlEntry>>,
}

#[derive(Serialize)]
struct Protocols {
    #[serde(skip_serializing_if = "Option::is_none")]
    caldav: Option<UrlEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    carddav: Option<UrlEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imap: Option<HostEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jmap: Option<UrlEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pop3: Option<HostEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    smtp: Option<HostEntry>,
}

#[derive(Serialize)]
struct HostEntry {
    host: String,
}

#[derive(Serialize)]
struct UrlEntry {
    url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
        [[provider]]
        id = "example.org"
        name = "Example"
        domains = ["example.org", "example.net"]
        pacc = true
        [provider.oauth2]
        issuer = "https://id.example.org"
        scope = ["IMAP", "SMTP"]
        [[provider.server]]
        type = "imap"
        host = "imap.example.org"
        auth = ["OAuth2", "password-cleartext"]
        [[provider.server]]
        type = "smtp"
        host = "smtp.example.org"
        security = "starttls"
        [[provider.server]]
        type = "smtp"
        host = "smtp.example.org"
        [[provider.server]]
        type = "jmap"
        url = "https://jmap.example.org/jmap/session"
    "#;

    fn provider(text: &str) -> Provider {
        crate::config::parse(text).unwrap().providers.remove(0)
    }

    #[test]
    fn describes_what_pacc_can_express_and_is_deterministic() {
        let p = provider(CONFIG);
        let doc = render(&p).unwrap();
        assert_eq!(doc.content_type, crate::render::JSON);
        let v: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
        assert_eq!(v["protocols"]["imap"]["host"], "imap.example.org");
        // The STARTTLS submission server is skipped for the implicit-TLS one.
        assert_eq!(v["protocols"]["smtp"]["host"], "smtp.example.org");
        assert_eq!(
            v["protocols"]["jmap"]["url"],
            "https://jmap.example.org/jmap/session"
        );
        assert_eq!(
            v["authentication"]["oauth-public"]["issuer"],
            "https://id.example.org"
        );
        assert_eq!(v["authentication"]["password"], true);
        assert_eq!(v["info"]["provider"]["shortName"], "Example");
        let text = String::from_utf8(doc.body.clone()).unwrap();
        assert!(!text.contains("example.net"), "names no mail domain");
        assert_eq!(render(&p).unwrap().body, doc.body);
    }

    #[test]
    fn left_out_when_servers_cannot_be_described() {
        let starttls_only = CONFIG
            .replace("host = \"imap.example.org\"", "host = \"imap.example.org\"\nsecurity = \"starttls\"")
            .replace("[[provider.server]]\n        type = \"jmap\"\n        url = \"https://jmap.example.org/jmap/session\"", "");
        let p = provider(&starttls_only);
        assert!(p.pacc().is_err());
        assert!(render(&p).is_none());
    }

    #[test]
    fn digest_record_is_the_base64_sha256_of_the_bytes() {
        // SHA-256 of the empty string.
        assert_eq!(
            digest_record(b""),
            "v=UAAC1; a=sha256; d=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
