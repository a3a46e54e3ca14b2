//! Apple configuration profile (`.mobileconfig`) for one address: mail, CalDAV, CardDAV.
//!
//! Format: Apple's `device-management` schema (`TopLevel`, `com.apple.mail.managed`,
//! `com.apple.caldav.account`, `com.apple.carddav.account`); see
//! `shared/spec/apple-mobileconfig.md`. Apple Mail ignores autoconfig and autodiscover
//! for IMAP, so this profile is the Apple path.
//!
//! Owns: the key mapping from the model to Apple's keys, the stable identifiers and UUIDs.
//! Must not: sign (a caller wraps the bytes in CMS), put passwords in the profile (Apple:
//! "only use this with encrypted profiles"; we serve unencrypted profiles to anyone who
//! knows an address), or read a clock or randomness (same input, same bytes).
//!
//! The XML is written by `plist::to_writer_xml`, which emits the `<?xml ?>` declaration
//! and Apple's `<!DOCTYPE plist …>` and escapes every value.

use std::borrow::Cow;

use serde::Serialize;
use uuid::Uuid;

use crate::address::EmailAddress;
use crate::model::{Auth, Provider, Security, Server, ServerKind, expand, expand_url};
use crate::render::{Document, MOBILECONFIG, safe_filename};

/// Namespace for the v5 PayloadUUIDs. Never change it: Apple replaces an installed
/// payload only when the new profile carries the same PayloadIdentifier *and*
/// PayloadUUID, so a new namespace would make every re-download add a second account.
pub const UUID_NAMESPACE: Uuid = Uuid::from_u128(0x5a07_5ddb_a6e6_4011_aaab_ee80_7e05_a53b);

/// What a PayloadUUID is derived for; the string is part of the UUID's name, so
/// these must never change either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadKind {
    Profile,
    Mail,
    CalDav,
    CardDav,
}

impl PayloadKind {
    fn name(self) -> &'static str {
        match self {
            PayloadKind::Profile => "profile",
            PayloadKind::Mail => "mail",
            PayloadKind::CalDav => "caldav",
            PayloadKind::CardDav => "carddav",
        }
    }

    fn payload_type(self) -> &'static str {
        match self {
            PayloadKind::Profile => "Configuration",
            PayloadKind::Mail => "com.apple.mail.managed",
            PayloadKind::CalDav => "com.apple.caldav.account",
            PayloadKind::CardDav => "com.apple.carddav.account",
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            PayloadKind::Profile => "Profile",
            PayloadKind::Mail => "Mail",
            PayloadKind::CalDav => "Calendar",
            PayloadKind::CardDav => "Contacts",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Profile<'a> {
    payload_type: &'static str,
    payload_version: u32,
    payload_identifier: String,
    #[serde(rename = "PayloadUUID")]
    payload_uuid: String,
    payload_display_name: String,
    payload_description: String,
    payload_organization: &'a str,
    payload_content: Vec<Payload<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Mail(MailPayload<'a>),
    CalDav(CalDavPayload<'a>),
    CardDav(CardDavPayload<'a>),
}

/// The keys every payload carries (Apple's `CommonPayloadKeys`), copied into each
/// payload struct. Not `#[serde(flatten)]`: flattening makes serde write a map, and in a
/// map plist's serializer writes `Some(x)` as `<dict><key>Some</key>…`.
struct Common {
    payload_type: &'static str,
    payload_version: u32,
    payload_identifier: String,
    payload_uuid: String,
    payload_display_name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MailPayload<'a> {
    payload_type: &'static str,
    payload_version: u32,
    payload_identifier: String,
    #[serde(rename = "PayloadUUID")]
    payload_uuid: String,
    payload_display_name: &'static str,
    email_account_type: &'static str,
    email_account_description: String,
    /// The sender's full name, when a directory knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    email_account_name: Option<String>,
    email_address: String,
    incoming_mail_server_host_name: String,
    incoming_mail_server_port_number: u16,
    #[serde(rename = "IncomingMailServerUseSSL")]
    incoming_mail_server_use_ssl: bool,
    incoming_mail_server_authentication: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    incoming_mail_server_username: Option<Cow<'a, str>>,
    outgoing_mail_server_host_name: String,
    outgoing_mail_server_port_number: u16,
    #[serde(rename = "OutgoingMailServerUseSSL")]
    outgoing_mail_server_use_ssl: bool,
    outgoing_mail_server_authentication: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outgoing_mail_server_username: Option<Cow<'a, str>>,
    outgoing_password_same_as_incoming_password: bool,
}

#[derive(Serialize)]
struct CalDavPayload<'a> {
    #[serde(rename = "PayloadType")]
    payload_type: &'static str,
    #[serde(rename = "PayloadVersion")]
    payload_version: u32,
    #[serde(rename = "PayloadIdentifier")]
    payload_identifier: String,
    #[serde(rename = "PayloadUUID")]
    payload_uuid: String,
    #[serde(rename = "PayloadDisplayName")]
    payload_display_name: &'static str,
    #[serde(rename = "CalDAVAccountDescription")]
    description: String,
    #[serde(rename = "CalDAVHostName")]
    host_name: String,
    #[serde(rename = "CalDAVPort")]
    port: u16,
    #[serde(rename = "CalDAVUseSSL")]
    use_ssl: bool,
    #[serde(rename = "CalDAVPrincipalURL", skip_serializing_if = "Option::is_none")]
    principal_url: Option<String>,
    #[serde(rename = "CalDAVUsername", skip_serializing_if = "Option::is_none")]
    username: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct CardDavPayload<'a> {
    #[serde(rename = "PayloadType")]
    payload_type: &'static str,
    #[serde(rename = "PayloadVersion")]
    payload_version: u32,
    #[serde(rename = "PayloadIdentifier")]
    payload_identifier: String,
    #[serde(rename = "PayloadUUID")]
    payload_uuid: String,
    #[serde(rename = "PayloadDisplayName")]
    payload_display_name: &'static str,
    #[serde(rename = "CardDAVAccountDescription")]
    description: String,
    #[serde(rename = "CardDAVHostName")]
    host_name: String,
    #[serde(rename = "CardDAVPort")]
    port: u16,
    #[serde(rename = "CardDAVUseSSL")]
    use_ssl: bool,
    /// Ignored by macOS (Apple's schema: not supported there); iOS uses it.
    #[serde(
        rename = "CardDAVPrincipalURL",
        skip_serializing_if = "Option::is_none"
    )]
    principal_url: Option<String>,
    #[serde(rename = "CardDAVUsername", skip_serializing_if = "Option::is_none")]
    username: Option<Cow<'a, str>>,
}

/// The profile for `address`, served as an attachment named `<domain>-mail.mobileconfig`.
///
/// Mail: the first encrypted incoming server and the first encrypted SMTP server in
/// the operator's order ([`chosen_servers`]). `EmailAddress` and `EmailAccountDescription` are the address (the profile is
/// personal, and two accounts at one provider stay tellable apart); `EmailAccountName`
/// (the sender's full name) only when a directory knows it (`users_from`); otherwise the
/// user sets it in Mail. No passwords: the device prompts once for both servers
/// (`OutgoingPasswordSameAsIncomingPassword`).
///
/// STARTTLS: Apple has no key that requires STARTTLS. `UseSSL` is `true` only for
/// implicit TLS; for STARTTLS (and plain) servers we emit `UseSSL = false` with the
/// configured port, and Apple Mail upgrades with STARTTLS when the server offers it
/// (opportunistic, not enforced). Operators who need enforced TLS should list an
/// implicit-TLS server first.
///
/// PayloadUUIDs are UUID v5 under [`UUID_NAMESPACE`] of (payload kind, provider id,
/// lower-cased address), and PayloadIdentifiers derive from the address: downloading the
/// profile again replaces the installed account instead of adding a second one.
pub fn render(provider: &Provider, address: &EmailAddress) -> Document {
    let profile = build(provider, address);
    let mut body = Vec::new();
    plist::to_writer_xml(&mut body, &profile)
        .expect("strings, integers, booleans and arrays always serialize into a Vec");
    Document {
        content_type: MOBILECONFIG,
        filename: Some(safe_filename(&format!(
            "{}-mail.mobileconfig",
            address.domain()
        ))),
        body,
    }
}

fn build<'a>(provider: &'a Provider, address: &EmailAddress) -> Profile<'a> {
    let identifier = profile_identifier(provider, address);
    let label = address.to_string();
    let mut content = Vec::new();
    if let Some(mail) = mail_payload(provider, address, &identifier) {
        content.push(Payload::Mail(mail));
    }
    if let Some(s) = provider.first(ServerKind::CalDav)
        && let Some(dav) = dav_parts(s, address)
    {
        let c = common(provider, address, &identifier, PayloadKind::CalDav);
        content.push(Payload::CalDav(CalDavPayload {
            payload_type: c.payload_type,
            payload_version: c.payload_version,
            payload_identifier: c.payload_identifier,
            payload_uuid: c.payload_uuid,
            payload_display_name: c.payload_display_name,
            description: label.clone(),
            host_name: dav.host,
            port: dav.port,
            use_ssl: dav.use_ssl,
            principal_url: dav.principal_url,
            username: dav.username,
        }));
    }
    if let Some(s) = provider.first(ServerKind::CardDav)
        && let Some(dav) = dav_parts(s, address)
    {
        let c = common(provider, address, &identifier, PayloadKind::CardDav);
        content.push(Payload::CardDav(CardDavPayload {
            payload_type: c.payload_type,
            payload_version: c.payload_version,
            payload_identifier: c.payload_identifier,
            payload_uuid: c.payload_uuid,
            payload_display_name: c.payload_display_name,
            description: label.clone(),
            host_name: dav.host,
            port: dav.port,
            use_ssl: dav.use_ssl,
            principal_url: dav.principal_url,
            username: dav.username,
        }));
    }
    Profile {
        payload_type: PayloadKind::Profile.payload_type(),
        payload_version: 1,
        payload_uuid: payload_uuid(provider, address, PayloadKind::Profile),
        payload_identifier: identifier,
        payload_display_name: format!("{} ({label})", provider.name),
        payload_description: format!(
            "Sets up {label} on this device. You will be asked for your password."
        ),
        payload_organization: &provider.name,
        payload_content: content,
    }
}

fn common(
    provider: &Provider,
    address: &EmailAddress,
    profile_identifier: &str,
    kind: PayloadKind,
) -> Common {
    Common {
        payload_type: kind.payload_type(),
        payload_version: 1,
        payload_identifier: format!("{profile_identifier}.{}", kind.name()),
        payload_uuid: payload_uuid(provider, address, kind),
        payload_display_name: kind.display_name(),
    }
}

fn mail_payload<'a>(
    provider: &'a Provider,
    address: &EmailAddress,
    identifier: &str,
) -> Option<MailPayload<'a>> {
    // Config validation guarantees both; a provider without them gets a profile
    // without a mail payload rather than a panic.
    let (incoming, outgoing) = chosen_servers(provider)?;
    let (in_host, in_port, in_security) = incoming.host_port()?;
    let (out_host, out_port, out_security) = outgoing.host_port()?;
    let c = common(provider, address, identifier, PayloadKind::Mail);
    Some(MailPayload {
        payload_type: c.payload_type,
        payload_version: c.payload_version,
        payload_identifier: c.payload_identifier,
        payload_uuid: c.payload_uuid,
        payload_display_name: c.payload_display_name,
        email_account_type: match incoming.kind {
            ServerKind::Pop3 => "EmailTypePOP",
            _ => "EmailTypeIMAP",
        },
        email_account_description: address.to_string(),
        email_account_name: provider.user_display_name.clone(),
        email_address: address.to_string(),
        incoming_mail_server_host_name: expand(in_host, Some(address)).into_owned(),
        incoming_mail_server_port_number: in_port,
        incoming_mail_server_use_ssl: in_security == Security::Tls,
        incoming_mail_server_authentication: apple_auth(&incoming.auth),
        incoming_mail_server_username: username(incoming, address),
        outgoing_mail_server_host_name: expand(out_host, Some(address)).into_owned(),
        outgoing_mail_server_port_number: out_port,
        outgoing_mail_server_use_ssl: out_security == Security::Tls,
        outgoing_mail_server_authentication: apple_auth(&outgoing.auth),
        outgoing_mail_server_username: username(outgoing, address),
        outgoing_password_same_as_incoming_password: true,
    })
}

/// The incoming and the outgoing server a profile holds (it has room for one
/// of each): the first encrypted one (implicit TLS or STARTTLS) in the
/// operator's order, else the first. A config that lists IMAP 143 plain before
/// IMAP 143 STARTTLS must not hand iPhones the plain one. `None` without an
/// incoming or an SMTP server (validation prevents that).
pub fn chosen_servers(provider: &Provider) -> Option<(&Server, &Server)> {
    Some((
        first_encrypted(provider.incoming())?,
        first_encrypted(provider.outgoing())?,
    ))
}

fn first_encrypted<'a>(servers: impl Iterator<Item = &'a Server>) -> Option<&'a Server> {
    let servers: Vec<&Server> = servers.collect();
    let encrypted =
        |s: &&&Server| matches!(s.host_port(), Some((_, _, sec)) if sec != Security::Plain);
    servers
        .iter()
        .find(encrypted)
        .or_else(|| servers.first())
        .copied()
}

/// The first method in the operator's list that Apple Mail can do.
///
/// `client-IP-address` and `smtp-after-pop` mean "no AUTH command", which is what
/// `EmailAuthNone` says. OAuth2, GSSAPI and TLS client certificates have no Apple key;
/// if nothing maps we fall back to `EmailAuthPassword`: the key is required, and a
/// password prompt (e.g. for an app password) is the only choice that can still work.
fn apple_auth(methods: &[Auth]) -> &'static str {
    methods
        .iter()
        .find_map(|a| match a {
            Auth::PasswordCleartext => Some("EmailAuthPassword"),
            Auth::PasswordEncrypted => Some("EmailAuthCRAMMD5"),
            Auth::Ntlm => Some("EmailAuthNTLM"),
            Auth::None | Auth::ClientIpAddress | Auth::SmtpAfterPop => Some("EmailAuthNone"),
            Auth::OAuth2 | Auth::Gssapi | Auth::TlsClientCert => None,
        })
        .unwrap_or("EmailAuthPassword")
}

/// The expanded login name; `None` (the device prompts) if it expands to nothing.
fn username<'a>(server: &'a Server, address: &EmailAddress) -> Option<Cow<'a, str>> {
    let name = expand(&server.username, Some(address));
    (!name.is_empty()).then_some(name)
}

struct DavParts<'a> {
    host: String,
    port: u16,
    use_ssl: bool,
    principal_url: Option<String>,
    username: Option<Cow<'a, str>>,
}

/// Splits a validated `http(s)://host[:port]/path` URL (placeholders expanded).
///
/// A bare `https://host/` gives no principal URL, so the device does RFC 6764
/// discovery (`/.well-known/caldav`) instead of being sent to the server root.
fn dav_parts<'a>(server: &'a Server, address: &EmailAddress) -> Option<DavParts<'a>> {
    let url = expand_url(server.url()?, Some(address)).into_owned();
    let parts = split_url(&url)?;
    let principal_url = (parts.path.len() > 1).then(|| url.clone());
    Some(DavParts {
        host: parts.host.to_owned(),
        port: parts.port,
        use_ssl: parts.https,
        principal_url,
        username: username(server, address),
    })
}

/// The pieces of an absolute http(s) URL that profiles and DNS records need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    pub https: bool,
    pub host: &'a str,
    /// The explicit port, else 443 / 80.
    pub port: u16,
    /// From the first `/` up to `?` or `#`; empty when the URL has no path.
    pub path: &'a str,
}

/// Splits a URL that config validation already accepted (`http(s)://`, a host name,
/// an optional numeric port, no user info). `None` for anything else.
pub(crate) fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let after = &rest[authority_end..];
    let path = &after[..after.find(['?', '#']).unwrap_or(after.len())];
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok()?),
        None => (authority, if https { 443 } else { 80 }),
    };
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some(UrlParts {
        https,
        host,
        port,
        path,
    })
}

/// `<reversed domain>.mail.<local part>`, restricted to `[A-Za-z0-9.-]`.
///
/// Lower-cased so that `Alice@` and `alice@` replace each other, like their UUIDs.
/// When sanitising loses information (`a+b` and `a-b` would both become `a-b`), a
/// short hash of the address is appended so two addresses never share an identifier.
fn profile_identifier(provider: &Provider, address: &EmailAddress) -> String {
    let reversed: Vec<&str> = address.domain().rsplit('.').collect();
    let local = address.local_part().to_lowercase();
    let mut clean: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean != local {
        let uuid = payload_uuid(provider, address, PayloadKind::Profile);
        clean.push_str("-x");
        clean.push_str(&uuid.replace('-', "")[..8].to_ascii_lowercase());
    }
    format!("{}.mail.{clean}", reversed.join("."))
}

fn payload_uuid(provider: &Provider, address: &EmailAddress, kind: PayloadKind) -> String {
    // Newlines cannot occur in any of the parts, so the name is unambiguous.
    let name = format!(
        "{}\n{}\n{}",
        kind.name(),
        provider.id,
        address.to_string().to_lowercase()
    );
    Uuid::new_v5(&UUID_NAMESPACE, name.as_bytes())
        .hyphenated()
        .encode_upper(&mut Uuid::encode_buffer())
        .to_owned()
}

#[cfg(test)]
mod tests;
