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
