//! Validation for the newer discovery standards: the JMAP session URL and the
//! OAuth2 hints (`[provider.oauth2]`). Kept apart from `validate` so that the
//! drafts' rules sit in one place while they still move.

use super::raw::RawOAuth2;
use super::validate::{Problems, url};
use crate::model::{Auth, OAuth2, Provider, Server, ServerKind};

/// Longest `scope` accepted: a few dozen scope names.
const MAX_SCOPE_BYTES: usize = 1000;

/// A JMAP session URL is fetched by the client, redirected to from
/// `/.well-known/jmap` and published in SRV and PACC: it must be a literal
/// `https://` URL (RFC 8620 §1.7: JMAP is only spoken over TLS).
pub(super) fn jmap_urls(key: &str, servers: &[Server], p: &mut Problems) {
    for (j, s) in servers.iter().enumerate() {
        if s.kind != ServerKind::Jmap {
            continue;
        }
        let Some(u) = s.url() else { continue };
        if !u.starts_with("https://") || u.contains('%') {
            p.error(
                format!("{key}.server[{j}].url"),
                "a JMAP session URL must be https:// and hold no placeholders",
            );
        }
    }
}

/// `[provider.oauth2]`: the issuer is required; every URL is a literal https URL.
pub(super) fn oauth2(
    key: &str,
    raw: RawOAuth2,
    servers: &[Server],
    p: &mut Problems,
) -> Option<OAuth2> {
    p.unknown(key, &raw.unknown);
    let https = |field: &str, value: Option<String>, p: &mut Problems| -> Option<String> {
        let value = value?;
        let k = format!("{key}.{field}");
        let checked = url(&k, value.trim(), p)?;
        if checked.starts_with("https://") && !checked.contains('%') {
            Some(checked)
        } else {
            p.error(k, "must be an https:// URL without placeholders");
            None
        }
    };
    let issuer = match raw.issuer {
        Some(i) => https("issuer", Some(i), p),
        None => {
            p.error(format!("{key}.issuer"), "is required");
            None
        }
    };
    let auth_url = https("auth_url", raw.auth_url, p);
    let token_url = https("token_url", raw.token_url, p);
    let scope = raw
        .scope
        .map(|s| s.into_vec().join(" "))
        .unwrap_or_default();
    let scope = scope.split_whitespace().collect::<Vec<_>>().join(" ");
    if scope.len() > MAX_SCOPE_BYTES
        || scope
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\' || !c.is_ascii())
    {
        p.error(
            format!("{key}.scope"),
            "must be printable ASCII scope names, at most 1000 bytes",
        );
        return None;
    }
    let complete = !scope.is_empty() && auth_url.is_some() && token_url.is_some();
    if !complete {
        p.warn(
            key,
            "<oAuth2> is left out of config-v1.1 without scope, auth_url and token_url (clients that read it need all of them); PACC needs only the issuer",
        );
    }
    if !servers.iter().any(|s| s.auth.contains(&Auth::OAuth2)) {
        p.warn(
            key,
            "no server lists \"OAuth2\" in auth: the OAuth2 hints are not published",
        );
    }
    Some(OAuth2 {
        issuer: issuer?,
        scope,
        auth_url,
        token_url,
    })
}

/// `pacc = true` on a provider PACC cannot describe: left out, and `check`
/// says why (serving it would send clients to servers that do not answer so).
pub(super) fn pacc_warning(key: &str, provider: &Provider, p: &mut Problems) {
    if let (true, Err(reason)) = (provider.publish_pacc, provider.pacc()) {
        p.warn(format!("{key}.pacc"), format!("PACC is left out: {reason}"));
    }
}

#[cfg(test)]
mod tests {
    const BASE: &str = r#"
        [[provider]]
        id = "example.org"
        name = "Example"
        domains = ["example.org"]
        [[provider.server]]
        type = "imap"
        host = "imap.example.org"
        auth = ["OAuth2", "password-cleartext"]
        [[provider.server]]
        type = "smtp"
        host = "smtp.example.org"
    "#;

    fn problems(extra: &str) -> Vec<String> {
        match crate::config::parse(&format!("{BASE}{extra}")) {
            Ok(c) => c.warnings.iter().map(|w| format!("warning {w}")).collect(),
            Err(e) => e.lines(),
        }
    }

    #[test]
    fn jmap_url_must_be_literal_https() {
        let ok = "[[provider.server]]\ntype = \"jmap\"\nurl = \"https://jmap.example.org/s\"\n";
        assert!(problems(ok).is_empty(), "{:?}", problems(ok));
        for bad in [
            "http://jmap.example.org/s",
            "https://jmap.example.org/%EMAILADDRESS%",
        ] {
            let p = problems(&format!(
                "[[provider.server]]\ntype = \"jmap\"\nurl = \"{bad}\"\n"
            ));
            assert!(
                p.iter()
                    .any(|l| l.contains("server[2].url") && l.contains("JMAP")),
                "{bad}: {p:?}"
            );
        }
        let p = problems("[[provider.server]]\ntype = \"jmap\"\nhost = \"jmap.example.org\"\n");
        assert!(p.iter().any(|l| l.contains("server[2].url")), "{p:?}");
    }

    #[test]
    fn oauth2_needs_an_https_issuer_and_known_keys() {
        let c = crate::config::parse(&format!(
            "{BASE}[provider.oauth2]\nissuer = \"https://id.example.org\"\nscope = \"IMAP  SMTP\"\n"
        ))
        .unwrap();
        let o = c.providers[0].oauth2_hints().unwrap();
        assert_eq!(o.scope, "IMAP SMTP");
        for (extra, key) in [
            ("[provider.oauth2]\nscope = \"x\"\n", "oauth2.issuer"),
            (
                "[provider.oauth2]\nissuer = \"http://id.example.org\"\n",
                "oauth2.issuer",
            ),
            (
                "[provider.oauth2]\nissuer = \"https://id.example.org\"\ntoken_url = \"ftp://x\"\n",
                "oauth2.token_url",
            ),
            (
                "[provider.oauth2]\nissuer = \"https://id.example.org\"\nclient_id = \"x\"\n",
                "oauth2.client_id",
            ),
        ] {
            let p = problems(extra);
            assert!(p.iter().any(|l| l.contains(key)), "{extra}: {p:?}");
        }
    }

    #[test]
    fn pacc_on_a_provider_it_cannot_describe_is_a_warning() {
        let starttls = BASE.replace(
            "host = \"smtp.example.org\"",
            "host = \"smtp.example.org\"\n        security = \"starttls\"",
        );
        let c = crate::config::parse(&starttls.replace(
            "domains = [\"example.org\"]",
            "domains = [\"example.org\"]\n        pacc = true",
        ))
        .unwrap();
        assert!(!c.providers[0].serves_pacc());
        assert!(
            c.warnings
                .iter()
                .any(|w| w.key == "provider[0].pacc" && w.reason.contains("465")),
            "{:?}",
            c.warnings
        );
        assert!(
            !c.names_for_domain("example.org")
                .iter()
                .any(|n| n.starts_with("ua-auto-config."))
        );
    }
}
