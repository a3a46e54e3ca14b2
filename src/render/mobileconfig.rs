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
/// Mail: the first incoming server (the operator's preferred one) and the first SMTP
/// server. `EmailAddress` and `EmailAccountDescription` are the address (the profile is
/// personal, and two accounts at one provider stay tellable apart); `EmailAccountName`
/// (the sender's full name) is left out because we don't know it: the user sets it in
/// Mail. No passwords: the device prompts once for both servers
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
    let incoming = provider.incoming().next()?;
    let outgoing = provider.outgoing().next()?;
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
mod tests {
    use plist::{Dictionary, Value};

    use super::*;
    use crate::config;

    const FULL: &str = r#"
[[provider]]
id = "example.com"
name = "Example Mail"
short_name = "Example"
domains = ["example.com", "xn--bcher-kva.example"]
  [[provider.server]]
  type = "imap"
  host = "imap.%EMAILDOMAIN%"
  port = 993
  security = "tls"
  auth = ["OAuth2", "password-encrypted", "password-cleartext"]
  username = "%EMAILADDRESS%"
  [[provider.server]]
  type = "pop3"
  host = "pop.example.com"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.com"
  port = 587
  security = "starttls"
  auth = "password-cleartext"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "caldav"
  url = "https://dav.example.com:8443/dav/cal/%EMAILADDRESS%/"
  username = "%EMAILADDRESS%"
  [[provider.server]]
  type = "carddav"
  url = "https://dav.example.com/"
"#;

    fn provider(text: &str) -> Provider {
        config::parse(text).unwrap().providers.remove(0)
    }

    fn addr(a: &str) -> EmailAddress {
        EmailAddress::parse(a).unwrap()
    }

    fn parse(doc: &Document) -> Dictionary {
        plist::from_bytes::<Value>(&doc.body)
            .unwrap()
            .into_dictionary()
            .unwrap()
    }

    fn s<'a>(d: &'a Dictionary, k: &str) -> &'a str {
        d.get(k)
            .and_then(Value::as_string)
            .unwrap_or_else(|| panic!("{k} missing or not a string"))
    }

    fn i(d: &Dictionary, k: &str) -> u64 {
        d.get(k).and_then(Value::as_unsigned_integer).unwrap()
    }

    fn b(d: &Dictionary, k: &str) -> bool {
        d.get(k).and_then(Value::as_boolean).unwrap()
    }

    fn payloads(d: &Dictionary) -> Vec<Dictionary> {
        d.get("PayloadContent")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .map(|v| v.as_dictionary().unwrap().clone())
            .collect()
    }

    fn keys(d: &Dictionary) -> Vec<&str> {
        d.keys().map(String::as_str).collect()
    }

    #[test]
    fn every_field_parses_back() {
        let p = provider(FULL);
        let doc = render(&p, &addr("Alice@Example.com"));
        assert_eq!(doc.content_type, "application/x-apple-aspen-config");
        assert_eq!(
            doc.filename.as_deref(),
            Some("example.com-mail.mobileconfig")
        );
        let text = String::from_utf8(doc.body.clone()).unwrap();
        assert!(text.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \
             \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
             <plist version=\"1.0\">"
        ));

        let top = parse(&doc);
        assert_eq!(
            keys(&top),
            [
                "PayloadType",
                "PayloadVersion",
                "PayloadIdentifier",
                "PayloadUUID",
                "PayloadDisplayName",
                "PayloadDescription",
                "PayloadOrganization",
                "PayloadContent"
            ]
        );
        assert_eq!(s(&top, "PayloadType"), "Configuration");
        assert_eq!(i(&top, "PayloadVersion"), 1);
        assert_eq!(s(&top, "PayloadIdentifier"), "com.example.mail.alice");
        assert_eq!(
            s(&top, "PayloadDisplayName"),
            "Example Mail (Alice@example.com)"
        );
        assert!(s(&top, "PayloadDescription").contains("Alice@example.com"));
        assert_eq!(s(&top, "PayloadOrganization"), "Example Mail");
        let uuid = s(&top, "PayloadUUID");
        assert_eq!(uuid, uuid.to_ascii_uppercase());
        assert_eq!(Uuid::parse_str(uuid).unwrap().get_version_num(), 5);

        let content = payloads(&top);
        assert_eq!(content.len(), 3);
        let mail = &content[0];
        assert_eq!(
            keys(mail),
            [
                "PayloadType",
                "PayloadVersion",
                "PayloadIdentifier",
                "PayloadUUID",
                "PayloadDisplayName",
                "EmailAccountType",
                "EmailAccountDescription",
                "EmailAddress",
                "IncomingMailServerHostName",
                "IncomingMailServerPortNumber",
                "IncomingMailServerUseSSL",
                "IncomingMailServerAuthentication",
                "IncomingMailServerUsername",
                "OutgoingMailServerHostName",
                "OutgoingMailServerPortNumber",
                "OutgoingMailServerUseSSL",
                "OutgoingMailServerAuthentication",
                "OutgoingMailServerUsername",
                "OutgoingPasswordSameAsIncomingPassword",
            ]
        );
        assert_eq!(s(mail, "PayloadType"), "com.apple.mail.managed");
        assert_eq!(i(mail, "PayloadVersion"), 1);
        assert_eq!(s(mail, "PayloadIdentifier"), "com.example.mail.alice.mail");
        assert_eq!(s(mail, "PayloadDisplayName"), "Mail");
        assert_eq!(s(mail, "EmailAccountType"), "EmailTypeIMAP");
        assert_eq!(s(mail, "EmailAccountDescription"), "Alice@example.com");
        assert_eq!(s(mail, "EmailAddress"), "Alice@example.com");
        assert_eq!(s(mail, "IncomingMailServerHostName"), "imap.example.com");
        assert_eq!(i(mail, "IncomingMailServerPortNumber"), 993);
        assert!(b(mail, "IncomingMailServerUseSSL"));
        // OAuth2 has no Apple key; password-encrypted is the first that maps.
        assert_eq!(
            s(mail, "IncomingMailServerAuthentication"),
            "EmailAuthCRAMMD5"
        );
        assert_eq!(s(mail, "IncomingMailServerUsername"), "Alice@example.com");
        assert_eq!(s(mail, "OutgoingMailServerHostName"), "smtp.example.com");
        assert_eq!(i(mail, "OutgoingMailServerPortNumber"), 587);
        assert!(
            !b(mail, "OutgoingMailServerUseSSL"),
            "STARTTLS is not UseSSL"
        );
        assert_eq!(
            s(mail, "OutgoingMailServerAuthentication"),
            "EmailAuthPassword"
        );
        assert_eq!(s(mail, "OutgoingMailServerUsername"), "Alice");
        assert!(b(mail, "OutgoingPasswordSameAsIncomingPassword"));

        let cal = &content[1];
        assert_eq!(s(cal, "PayloadType"), "com.apple.caldav.account");
        assert_eq!(s(cal, "PayloadIdentifier"), "com.example.mail.alice.caldav");
        assert_eq!(s(cal, "CalDAVAccountDescription"), "Alice@example.com");
        assert_eq!(s(cal, "CalDAVHostName"), "dav.example.com");
        assert_eq!(i(cal, "CalDAVPort"), 8443);
        assert!(b(cal, "CalDAVUseSSL"));
        assert_eq!(
            s(cal, "CalDAVPrincipalURL"),
            "https://dav.example.com:8443/dav/cal/Alice@example.com/"
        );
        assert_eq!(s(cal, "CalDAVUsername"), "Alice@example.com");

        let card = &content[2];
        assert_eq!(s(card, "PayloadType"), "com.apple.carddav.account");
        assert_eq!(s(card, "CardDAVHostName"), "dav.example.com");
        assert_eq!(i(card, "CardDAVPort"), 443);
        assert!(b(card, "CardDAVUseSSL"));
        assert!(
            card.get("CardDAVPrincipalURL").is_none(),
            "a bare host leaves discovery to RFC 6764"
        );
        assert_eq!(s(card, "CardDAVUsername"), "Alice@example.com");

        let mut uuids: Vec<&str> = content.iter().map(|d| s(d, "PayloadUUID")).collect();
        uuids.push(uuid);
        uuids.sort_unstable();
        uuids.dedup();
        assert_eq!(uuids.len(), 4, "every payload has its own UUID");
        for key in [
            "<key>IncomingPassword</key>",
            "<key>OutgoingPassword</key>",
            "<key>CalDAVPassword</key>",
            "<key>CardDAVPassword</key>",
        ] {
            assert!(!text.contains(key), "{key} must never be sent");
        }
    }

    #[test]
    fn pop3_first_and_no_dav() {
        let text = r#"
[[provider]]
id = "pop.example"
name = "Pop"
domains = ["pop.example"]
  [[provider.server]]
  type = "pop3"
  host = "pop.pop.example"
  security = "plain"
  port = 110
  auth = ["client-IP-address"]
  [[provider.server]]
  type = "imap"
  host = "imap.pop.example"
  [[provider.server]]
  type = "smtp"
  host = "smtp.pop.example"
  auth = ["GSSAPI"]
"#;
        let top = parse(&render(&provider(text), &addr("bob@pop.example")));
        let content = payloads(&top);
        assert_eq!(content.len(), 1);
        let mail = &content[0];
        assert_eq!(s(mail, "EmailAccountType"), "EmailTypePOP");
        assert_eq!(s(mail, "IncomingMailServerHostName"), "pop.pop.example");
        assert_eq!(i(mail, "IncomingMailServerPortNumber"), 110);
        assert!(!b(mail, "IncomingMailServerUseSSL"));
        assert_eq!(s(mail, "IncomingMailServerAuthentication"), "EmailAuthNone");
        // Nothing maps: the password prompt is the only choice that can work.
        assert_eq!(
            s(mail, "OutgoingMailServerAuthentication"),
            "EmailAuthPassword"
        );
        assert_eq!(i(mail, "OutgoingMailServerPortNumber"), 465);
        assert!(b(mail, "OutgoingMailServerUseSSL"));
    }

    #[test]
    fn same_input_same_bytes() {
        let p = provider(FULL);
        let a = addr("alice@example.com");
        assert_eq!(render(&p, &a), render(&p, &a));
        // Case of the address does not change identity: a re-download replaces.
        let upper = parse(&render(&p, &addr("ALICE@EXAMPLE.COM")));
        let lower = parse(&render(&p, &a));
        assert_eq!(s(&upper, "PayloadUUID"), s(&lower, "PayloadUUID"));
        assert_eq!(
            s(&upper, "PayloadIdentifier"),
            s(&lower, "PayloadIdentifier")
        );
    }

    #[test]
    fn uuids_are_fixed_v5_values() {
        // Pinned: changing the namespace or the name layout would make every
        // re-download add a duplicate account on devices that have the profile.
        let p = provider(FULL);
        let top = parse(&render(&p, &addr("alice@example.com")));
        let expected = Uuid::new_v5(&UUID_NAMESPACE, b"profile\nexample.com\nalice@example.com");
        assert_eq!(
            s(&top, "PayloadUUID"),
            expected.hyphenated().to_string().to_uppercase()
        );
    }

    #[test]
    fn different_address_different_uuids() {
        let p = provider(FULL);
        let one = parse(&render(&p, &addr("alice@example.com")));
        let two = parse(&render(&p, &addr("bob@example.com")));
        assert_ne!(s(&one, "PayloadUUID"), s(&two, "PayloadUUID"));
        assert_ne!(s(&one, "PayloadIdentifier"), s(&two, "PayloadIdentifier"));
        for (x, y) in payloads(&one).iter().zip(payloads(&two).iter()) {
            assert_ne!(s(x, "PayloadUUID"), s(y, "PayloadUUID"));
        }
        // Same address, another provider id: another account.
        let other = provider(&FULL.replace("id = \"example.com\"", "id = \"other.example\""));
        let three = parse(&render(&other, &addr("alice@example.com")));
        assert_ne!(s(&one, "PayloadUUID"), s(&three, "PayloadUUID"));
    }

    #[test]
    fn hostile_names_escape_and_round_trip() {
        let text = FULL
            .replace(
                "name = \"Example Mail\"",
                r#"name = "<&>\"' Ünïcødé ]]> </string>""#,
            )
            .replace(
                "username = \"%EMAILLOCALPART%\"",
                "username = \"%EMAILADDRESS%\"",
            );
        let p = provider(&text);
        assert_eq!(p.name, "<&>\"' Ünïcødé ]]> </string>");
        for input in [
            "o'hara&co+tag@example.com",
            "jörg+news@Bücher.example",
            "a{b}|~^`=?#$*/!@example.com",
        ] {
            let a = addr(input);
            let doc = render(&p, &a);
            let raw = String::from_utf8(doc.body.clone()).unwrap();
            assert!(!raw.contains("<&>"), "unescaped markup in {raw}");
            let top = parse(&doc);
            assert_eq!(s(&top, "PayloadOrganization"), p.name);
            assert_eq!(s(&top, "PayloadDisplayName"), format!("{} ({a})", p.name));
            let id = s(&top, "PayloadIdentifier");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "{id}"
            );
            let mail = &payloads(&top)[0];
            assert_eq!(s(mail, "EmailAddress"), a.to_string());
            assert_eq!(s(mail, "IncomingMailServerUsername"), a.to_string());
            assert_eq!(s(mail, "OutgoingMailServerUsername"), a.to_string());
            let cal = &payloads(&top)[1];
            let encoded = crate::model::expand_url("%EMAILADDRESS%", Some(&a));
            assert!(s(cal, "CalDAVPrincipalURL").ends_with(&format!("/{encoded}/")));
            assert!(doc.filename.unwrap().ends_with("-mail.mobileconfig"));
        }
        let idn = parse(&render(&p, &addr("jörg+news@Bücher.example")));
        assert!(
            s(&idn, "PayloadIdentifier").starts_with("example.xn--bcher-kva.mail.j-rg-news-x"),
            "{}",
            s(&idn, "PayloadIdentifier")
        );
    }

    #[test]
    fn sanitised_identifiers_do_not_collide() {
        let p = provider(FULL);
        let plus = parse(&render(&p, &addr("a+b@example.com")));
        let dash = parse(&render(&p, &addr("a-b@example.com")));
        assert_eq!(s(&dash, "PayloadIdentifier"), "com.example.mail.a-b");
        assert_ne!(s(&plus, "PayloadIdentifier"), s(&dash, "PayloadIdentifier"));
    }

    #[test]
    fn split_url_parts() {
        let u = split_url("https://h.example:8443/p/q?x=1#f").unwrap();
        assert_eq!(
            u,
            UrlParts {
                https: true,
                host: "h.example",
                port: 8443,
                path: "/p/q"
            }
        );
        let u = split_url("http://h.example").unwrap();
        assert_eq!((u.https, u.port, u.path), (false, 80, ""));
        assert!(split_url("ftp://h.example/").is_none());
        assert!(split_url("https://u@h.example/").is_none());
        assert!(split_url("https://h.example:99999/").is_none());
    }
}
