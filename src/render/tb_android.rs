//! Thunderbird for Android's (formerly K-9 Mail's) rules for taking or throwing
//! away a config-v1.1 document, ported so that tests and `mailconfd check` can
//! tell whether the app would set up an account from what we serve.
//!
//! Ported from thunderbird/thunderbird-android at commit
//! a59bd679859d369c9a39be147e536b825ffd0a6b (2026-08-20):
//! - `feature/autodiscovery/autoconfig/src/main/kotlin/app/k9mail/autodiscovery/autoconfig/RealAutoconfigParser.kt`:
//!   any of these throws the whole document away: no `clientConfig` or
//!   `emailProvider`; an `emailProvider id` that is not a host name (a
//!   placeholder id is not: the app fills placeholders in only for `domain`,
//!   `hostname` and `username`); no `domain` that is a host name after filling
//!   in; an `imap` incoming or `smtp` outgoing server without `hostname`,
//!   `port`, `socketType` or `username`, with a host name or port it cannot
//!   use, with a `socketType` other than `SSL` and `STARTTLS` (so `plain`), or
//!   with no `authentication` it knows (`OAuth2`, `password-cleartext`,
//!   `password-encrypted`, spelled exactly so); an element holding elements
//!   where text belongs; no `imap` server, or no `smtp` server (POP3 servers
//!   are skipped, so a POP3-only document is thrown away).
//! - `feature/autodiscovery/autoconfig/src/main/kotlin/app/k9mail/autodiscovery/autoconfig/RealAutoconfigFetcher.kt`:
//!   only the first IMAP and the first SMTP server are used, the rest ignored.
//! - `feature/account/setup/src/main/kotlin/app/k9mail/feature/account/setup/domain/usecase/GetAutoDiscovery.kt`:
//!   OAuth2 is dropped for a host the app has no OAuth client for; if that
//!   leaves the first IMAP or the first SMTP server with no method, the result
//!   is "no usable settings".
//! - `app-thunderbird/src/release/kotlin/net/thunderbird/android/auth/TbOAuthConfigurationFactory.kt`
//!   (and K-9's `app-k9mail/src/release/kotlin/app/k9mail/auth/K9OAuthConfigurationFactory.kt`):
//!   the hosts it has OAuth clients for, [`OAUTH2_HOSTS`].
//! - `core/common/src/commonMain/kotlin/net/thunderbird/core/common/net/HostNameUtils.kt`:
//!   what counts as a host name.
//!
//! Pure: bytes and an address in, a verdict out.

use crate::address::EmailAddress;
use dom::{Element, parse_tree};

/// Host names Thunderbird for Android (and K-9 Mail) has OAuth2 clients for
/// (`TbOAuthConfigurationFactory.kt` at the commit above, release flavour).
pub const OAUTH2_HOSTS: &[&str] = &[
    "imap.aol.com",
    "smtp.aol.com",
    "imap.fastmail.com",
    "smtp.fastmail.com",
    "imap.gmail.com",
    "imap.googlemail.com",
    "smtp.gmail.com",
    "smtp.googlemail.com",
    "outlook.office365.com",
    "smtp.office365.com",
    "smtp-mail.outlook.com",
    "imap.mail.yahoo.com",
    "smtp.mail.yahoo.com",
    "mail.tb.pro",
    "mail.thundermail.com",
];

/// One server as the app would store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub hostname: String,
    pub port: u16,
    /// `SSL` or `STARTTLS`, as written.
    pub socket_type: String,
    /// The methods it keeps, in document order (OAuth2 only for known hosts).
    pub authentication: Vec<String>,
    pub username: String,
}

/// The account the app would set up: its first IMAP and first SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub imap: ServerSettings,
    pub smtp: ServerSettings,
}

/// Why the app throws the document away (its own message where it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// What Thunderbird for Android makes of `document` when `address` was typed.
///
/// # Errors
/// [`Rejected`] with the reason when the app would throw the document away or
/// find no usable settings in it.
pub fn evaluate(document: &[u8], address: &EmailAddress) -> Result<Accepted, Rejected> {
    let root = parse_tree(document)?;
    let client_config = root
        .children()
        .filter(|e| e.name == "clientConfig")
        .last()
        .ok_or_else(|| reject("Missing 'clientConfig' element"))?;
    let provider = client_config
        .children()
        .filter(|e| e.name == "emailProvider")
        .last()
        .ok_or_else(|| reject("Missing 'emailProvider' element"))?;
    let (imap, smtp) = email_provider(provider, address)?;
    let imap = without_unknown_oauth2(imap).ok_or_else(|| {
        reject("no usable authentication for the first IMAP server once OAuth2 is dropped for a host the app has no OAuth client for")
    })?;
    let smtp = without_unknown_oauth2(smtp).ok_or_else(|| {
        reject("no usable authentication for the first SMTP server once OAuth2 is dropped for a host the app has no OAuth client for")
    })?;
    Ok(Accepted { imap, smtp })
}

fn reject(reason: impl Into<String>) -> Rejected {
    Rejected(reason.into())
}

/// `parseEmailProvider`: every direct child is looked at, in order; the first
/// problem ends the parse.
fn email_provider(
    provider: &Element,
    address: &EmailAddress,
) -> Result<(ServerSettings, ServerSettings), Rejected> {
    match provider.attribute("id") {
        None => return Err(reject("Missing 'emailProvider.id' attribute")),
        Some(id) if !is_legal_host_name_or_ip(id) => {
            return Err(reject(format!(
                "Invalid 'emailProvider.id' attribute: '{id}'"
            )));
        }
        Some(_) => {}
    }
    let mut domain_found = false;
    let (mut imap, mut smtp) = (Vec::new(), Vec::new());
    for child in provider.children() {
        match child.name.as_str() {
            "domain" => {
                let text = child.text()?;
                domain_found |= is_legal_host_name_or_ip(&fill(&text, address));
            }
            "incomingServer" if child.attribute("type") == Some("imap") => {
                imap.push(server(child, address)?);
            }
            "outgoingServer" if child.attribute("type") == Some("smtp") => {
                smtp.push(server(child, address)?);
            }
            _ => {}
        }
    }
    if !domain_found {
        return Err(reject("Valid 'domain' element required"));
    }
    let imap = imap.into_iter().next().ok_or_else(|| {
        reject("No supported 'incomingServer' element found (it reads IMAP only)")
    })?;
    let smtp = smtp
        .into_iter()
        .next()
        .ok_or_else(|| reject("No supported 'outgoingServer' element found"))?;
    Ok((imap, smtp))
}

/// `parseServer`: known fields are read wherever they sit below the server
/// element (the Kotlin loop does not skip unknown children).
fn server(element: &Element, address: &EmailAddress) -> Result<ServerSettings, Rejected> {
    let what = format!(
        "{}[type={}]",
        element.name,
        element.attribute("type").unwrap_or("")
    );
    let mut hostname = None;
    let mut port = None;
    let mut username = None;
    let mut socket_type = None;
    let mut authentication = Vec::new();
    let mut stack: Vec<&Element> = element.children().collect();
    stack.reverse();
    while let Some(e) = stack.pop() {
        match e.name.as_str() {
            "hostname" => {
                let raw = e.text()?;
                let filled = fill(&raw, address);
                if !is_legal_host_name_or_ip(filled.trim()) {
                    return Err(reject(format!("{what}: Invalid 'hostname' value: '{raw}'")));
                }
                hostname = Some(filled);
            }
            "port" => {
                let raw = e.text()?;
                port = Some(
                    raw.parse::<u16>()
                        .map_err(|_| reject(format!("{what}: Invalid 'port' value: '{raw}'")))?,
                );
            }
            "username" => username = Some(fill(&e.text()?, address)),
            "authentication" => {
                let a = e.text()?;
                if matches!(
                    a.as_str(),
                    "OAuth2" | "password-cleartext" | "password-encrypted"
                ) {
                    authentication.push(a);
                }
            }
            "socketType" => {
                let s = e.text()?;
                if s != "SSL" && s != "STARTTLS" {
                    return Err(reject(format!("{what}: Unknown 'socketType' value: '{s}'")));
                }
                socket_type = Some(s);
            }
            _ => {
                let mut inner: Vec<&Element> = e.children().collect();
                inner.reverse();
                stack.extend(inner);
            }
        }
    }
    let missing = |field: &str| reject(format!("{what}: Missing '{field}' element"));
    let hostname = hostname.ok_or_else(|| missing("hostname"))?;
    let port = port.ok_or_else(|| missing("port"))?;
    let username = username.ok_or_else(|| missing("username"))?;
    if authentication.is_empty() {
        return Err(reject(format!(
            "{what}: No usable 'authentication' element found (it knows OAuth2, password-cleartext, password-encrypted)"
        )));
    }
    let socket_type = socket_type.ok_or_else(|| missing("socketType"))?;
    Ok(ServerSettings {
        hostname,
        port,
        socket_type,
        authentication,
        username,
    })
}

/// `GetAutoDiscovery.cleanAuthenticationTypes`; `None` when nothing is left.
fn without_unknown_oauth2(mut s: ServerSettings) -> Option<ServerSettings> {
    let known = OAUTH2_HOSTS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&s.hostname));
    if !known {
        s.authentication.retain(|a| a != "OAuth2");
    }
    (!s.authentication.is_empty()).then_some(s)
}

/// `replaceVariables`, in the app's order.
fn fill(text: &str, address: &EmailAddress) -> String {
    text.replace("%EMAILDOMAIN%", address.domain())
        .replace("%EMAILLOCALPART%", address.local_part())
        .replace("%EMAILADDRESS%", &address.to_string())
}

/// `HostNameUtils.isLegalHostNameOrIP` after `cleanUpHostName` (a trim).
pub fn is_legal_host_name_or_ip(name: &str) -> bool {
    let name = name.trim();
    is_legal_ipv4(name) || is_legal_ipv6(name) || is_legal_host_name(name)
}

fn is_legal_ipv4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    let component = |p: &&str| -> Option<u32> {
        let ok = *p == "0"
            || (!p.is_empty()
                && p.len() <= 3
                && !p.starts_with('0')
                && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| p.parse::<u32>().ok())
            .flatten()
            .filter(|&v| v <= 255)
    };
    parts.len() == 4
        && parts.iter().all(|p| component(p).is_some())
        && component(&parts[0]) != Some(0)
}

fn is_legal_ipv6(name: &str) -> bool {
    // The Kotlin code canonicalises by hand; the standard parser accepts the
    // same forms for what matters here (a bracket-less literal, not all zeros).
    name.contains(':')
        && name
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| !a.is_unspecified())
}

/// `($LDH_LABEL\.)*$LDH_LABEL\.?`, at most 255 characters, any letter case.
fn is_legal_host_name(name: &str) -> bool {
    let name_len_ok = name.len() <= 255;
    let body = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    name_len_ok && body.split('.').all(label_ok)
}

mod dom;

#[cfg(test)]
mod tests;
