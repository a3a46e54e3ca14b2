//! The validated provider model: plain data that every renderer reads.
//!
//! Built only by `config` (which enforces every invariant documented here); the
//! renderers trust it. No I/O, no clock, no randomness.

use std::borrow::Cow;

use crate::address::EmailAddress;

mod user;
pub use user::UserValues;

/// One mail provider: a set of mail domains sharing the same servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Hostname-like id (Thunderbird's `emailProvider id`), lower-case A-labels.
    pub id: String,
    /// `displayName`: the provider's name as people know it.
    pub name: String,
    /// `displayShortName`.
    pub short_name: String,
    /// Mail domains, lower-case A-labels, unique across all providers, at least one.
    pub domains: Vec<String>,
    /// Servers in the operator's order of preference. At least one incoming
    /// (IMAP or POP3) and one SMTP server.
    pub servers: Vec<Server>,
    pub mta_sts: Option<MtaSts>,
    /// Shown on the settings page; never put into client documents.
    pub logo_url: Option<String>,
    /// Support contact shown on the settings page (URL or e-mail address).
    pub support: Option<String>,
    /// Where clients get OAuth2 tokens for servers that list `OAuth2`.
    pub oauth2: Option<OAuth2>,
    /// `pacc = true`: serve PACC on `ua-auto-config.D` (opt-in, because that
    /// name joins each domain's certificate and needs DNS first).
    pub publish_pacc: bool,
    /// The person's name, set only on a per-user copy (`Provider::for_user`).
    pub user_display_name: Option<String>,
}

/// OAuth 2.0 hints: the authorization server (RFC 8414 issuer) and, for clients
/// that do not read its metadata, the endpoints and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// Absolute `https://` URL.
    pub issuer: String,
    /// Space-separated scopes, possibly empty.
    pub scope: String,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
}

impl OAuth2 {
    /// Whether config-v1.1's `<oAuth2>` can be written: parsers that read it
    /// (io-pim-discovery, older Thunderbird for Android) need scope and both
    /// URLs, and io-pim-discovery drops the whole document without them.
    pub fn is_complete(&self) -> bool {
        !self.scope.is_empty() && self.auth_url.is_some() && self.token_url.is_some()
    }
}

impl Provider {
    /// Incoming mail servers (IMAP, POP3) in preference order.
    pub fn incoming(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.kind.is_incoming())
    }

    /// SMTP servers in preference order.
    pub fn outgoing(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.kind == ServerKind::Smtp)
    }

    /// The first server of `kind`, if any.
    pub fn first(&self, kind: ServerKind) -> Option<&Server> {
        self.servers.iter().find(|s| s.kind == kind)
    }

    /// The OAuth2 hints, when some server lists OAuth2 (else nobody needs them).
    pub fn oauth2_hints(&self) -> Option<&OAuth2> {
        self.oauth2
            .as_ref()
            .filter(|_| self.servers.iter().any(|s| s.auth.contains(&Auth::OAuth2)))
    }

    /// The JMAP session URL (the first `jmap` server's), if any.
    pub fn jmap_url(&self) -> Option<&str> {
        self.first(ServerKind::Jmap).and_then(Server::url)
    }

    /// Whether PACC is served: asked for (`pacc = true`) and expressible.
    pub fn serves_pacc(&self) -> bool {
        self.publish_pacc && self.pacc().is_ok()
    }

    /// What PACC (draft-ietf-mailmaint-pacc-02) can say about this provider,
    /// or why it cannot describe it. PACC has no ports, no STARTTLS, no login
    /// name and no placeholders: a mail server qualifies only with implicit
    /// TLS on the default port, a literal host name and `%EMAILADDRESS%` as
    /// its login; URL servers with a literal https URL. Per kind the first
    /// server that qualifies is taken (the operator's order); mail needs an
    /// incoming server (IMAP, POP3 or JMAP) and, without JMAP, SMTP too.
    ///
    /// # Errors
    /// A reason for `check` when PACC would describe the provider wrongly.
    pub fn pacc(&self) -> Result<Pacc<'_>, &'static str> {
        let pick = |kind: ServerKind| {
            self.servers.iter().find(|s| {
                s.kind == kind
                    && s.username == "%EMAILADDRESS%"
                    && match &s.endpoint {
                        Endpoint::Host {
                            host,
                            port,
                            security: Security::Tls,
                        } => !host.contains('%') && Some(*port) == kind.default_port(Security::Tls),
                        Endpoint::Host { .. } => false,
                        Endpoint::Url(u) => u.starts_with("https://") && !u.contains('%'),
                    }
            })
        };
        let p = Pacc {
            imap: pick(ServerKind::Imap),
            pop3: pick(ServerKind::Pop3),
            smtp: pick(ServerKind::Smtp),
            jmap: pick(ServerKind::Jmap),
            caldav: pick(ServerKind::CalDav),
            carddav: pick(ServerKind::CardDav),
        };
        let mail = [p.imap, p.pop3, p.smtp, p.jmap];
        if p.jmap.is_none() && (p.smtp.is_none() || (p.imap.is_none() && p.pop3.is_none())) {
            return Err(
                "PACC describes only implicit TLS on the default ports (IMAP 993, POP3 995, SMTP 465) with the address as login name and literal host names; no incoming or no SMTP server here qualifies",
            );
        }
        if !mail.iter().flatten().any(|s| {
            s.auth
                .iter()
                .any(|a| a.uses_password() || *a == Auth::OAuth2)
        }) {
            return Err("PACC knows only password and OAuth2 logins");
        }
        Ok(p)
    }
}

/// The servers PACC describes: per kind the first that it can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacc<'p> {
    pub imap: Option<&'p Server>,
    pub pop3: Option<&'p Server>,
    pub smtp: Option<&'p Server>,
    pub jmap: Option<&'p Server>,
    pub caldav: Option<&'p Server>,
    pub carddav: Option<&'p Server>,
}

impl Pacc<'_> {
    /// Every described server.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        [
            self.imap,
            self.pop3,
            self.smtp,
            self.jmap,
            self.caldav,
            self.carddav,
        ]
        .into_iter()
        .flatten()
    }
}

/// What a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerKind {
    Imap,
    Pop3,
    Smtp,
    CalDav,
    CardDav,
    ActiveSync,
    /// JMAP (RFC 8620), located by its session URL.
    Jmap,
}

impl ServerKind {
    /// The name used in the config file (`type = "imap"`).
    pub fn config_name(self) -> &'static str {
        match self {
            ServerKind::Imap => "imap",
            ServerKind::Pop3 => "pop3",
            ServerKind::Smtp => "smtp",
            ServerKind::CalDav => "caldav",
            ServerKind::CardDav => "carddav",
            ServerKind::ActiveSync => "activesync",
            ServerKind::Jmap => "jmap",
        }
    }

    pub fn from_config_name(name: &str) -> Option<ServerKind> {
        Some(match name.to_ascii_lowercase().as_str() {
            "imap" => ServerKind::Imap,
            "pop3" => ServerKind::Pop3,
            "smtp" => ServerKind::Smtp,
            "caldav" => ServerKind::CalDav,
            "carddav" => ServerKind::CardDav,
            "activesync" => ServerKind::ActiveSync,
            "jmap" => ServerKind::Jmap,
            _ => return None,
        })
    }

    pub fn is_incoming(self) -> bool {
        matches!(self, ServerKind::Imap | ServerKind::Pop3)
    }

    /// DAV, ActiveSync and JMAP servers are addressed by URL, mail servers by
    /// host and port.
    pub fn uses_url(self) -> bool {
        matches!(
            self,
            ServerKind::CalDav | ServerKind::CardDav | ServerKind::ActiveSync | ServerKind::Jmap
        )
    }

    /// The conventional port for this protocol with this transport security.
    pub fn default_port(self, security: Security) -> Option<u16> {
        Some(match (self, security) {
            (ServerKind::Imap, Security::Tls) => 993,
            (ServerKind::Imap, _) => 143,
            (ServerKind::Pop3, Security::Tls) => 995,
            (ServerKind::Pop3, _) => 110,
            (ServerKind::Smtp, Security::Tls) => 465,
            (ServerKind::Smtp, Security::StartTls) => 587,
            (ServerKind::Smtp, Security::Plain) => 25,
            _ => return None,
        })
    }
}

/// Transport security of a mail server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    /// Implicit TLS from the first byte (RFC 8314), e.g. 993, 995, 465.
    Tls,
    /// Plain connection upgraded with STARTTLS, which the client must insist on.
    StartTls,
    /// No encryption at all. Deprecated; some clients reject documents that offer it.
    Plain,
}

impl Security {
    pub fn config_name(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::StartTls => "starttls",
            Security::Plain => "plain",
        }
    }

    pub fn from_config_name(name: &str) -> Option<Security> {
        Some(match name.to_ascii_lowercase().as_str() {
            "tls" | "ssl" => Security::Tls,
            "starttls" => Security::StartTls,
            "plain" | "none" => Security::Plain,
            _ => return None,
        })
    }
}

/// Authentication methods, named as Thunderbird's config-v1.1 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    PasswordCleartext,
    PasswordEncrypted,
    OAuth2,
    Ntlm,
    Gssapi,
    ClientIpAddress,
    SmtpAfterPop,
    TlsClientCert,
    None,
}

impl Auth {
    pub const ALL: [Auth; 9] = [
        Auth::PasswordCleartext,
        Auth::PasswordEncrypted,
        Auth::OAuth2,
        Auth::Ntlm,
        Auth::Gssapi,
        Auth::ClientIpAddress,
        Auth::SmtpAfterPop,
        Auth::TlsClientCert,
        Auth::None,
    ];

    /// The `<authentication>` value of config-v1.1 (also the config file's spelling).
    pub fn thunderbird_name(self) -> &'static str {
        match self {
            Auth::PasswordCleartext => "password-cleartext",
            Auth::PasswordEncrypted => "password-encrypted",
            Auth::OAuth2 => "OAuth2",
            Auth::Ntlm => "NTLM",
            Auth::Gssapi => "GSSAPI",
            Auth::ClientIpAddress => "client-IP-address",
            Auth::SmtpAfterPop => "smtp-after-pop",
            Auth::TlsClientCert => "TLS-client-cert",
            Auth::None => "none",
        }
    }

    /// Parses a config-v1.1 name, ignoring case, including the deprecated
    /// aliases `plain` and `secure` found in older ISPDB files.
    pub fn from_name(name: &str) -> Option<Auth> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "plain" => return Some(Auth::PasswordCleartext),
            "secure" => return Some(Auth::PasswordEncrypted),
            _ => {}
        }
        Auth::ALL
            .into_iter()
            .find(|a| a.thunderbird_name().eq_ignore_ascii_case(&lower))
    }

    /// Methods where the user types a password into the client.
    pub fn uses_password(self) -> bool {
        matches!(
            self,
            Auth::PasswordCleartext | Auth::PasswordEncrypted | Auth::Ntlm
        )
    }
}

/// Where a server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Mail protocols. `host` may hold placeholders (validated to expand to a host name).
    Host {
        host: String,
        port: u16,
        security: Security,
    },
    /// DAV and ActiveSync: an absolute `https://` (or `http://`) URL.
    Url(String),
}

/// One service offered to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub kind: ServerKind,
    pub endpoint: Endpoint,
    /// Preference order, at least one.
    pub auth: Vec<Auth>,
    /// Login name template: placeholders or literal text.
    pub username: String,
}

impl Server {
    /// Host, port and security of a mail server; `None` for URL-based servers.
    pub fn host_port(&self) -> Option<(&str, u16, Security)> {
        match &self.endpoint {
            Endpoint::Host {
                host,
                port,
                security,
            } => Some((host, *port, *security)),
            Endpoint::Url(_) => None,
        }
    }

    pub fn url(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Url(u) => Some(u),
            Endpoint::Host { .. } => None,
        }
    }
}

/// MTA-STS policy (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaSts {
    pub mode: MtaStsMode,
    /// MX host names or `*.`-patterns, A-labels.
    pub mx: Vec<String>,
    /// Seconds, 0..=31557600.
    pub max_age: u32,
    /// Optional TLS-RPT (RFC 8460) report addresses (`mailto:` or `https:` URIs).
    pub tlsrpt_rua: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtaStsMode {
    Enforce,
    Testing,
    None,
}

impl MtaStsMode {
    pub fn name(self) -> &'static str {
        match self {
            MtaStsMode::Enforce => "enforce",
            MtaStsMode::Testing => "testing",
            MtaStsMode::None => "none",
        }
    }
}

/// The placeholders a template may hold, as config-v1.1 defines them.
pub const PLACEHOLDERS: [&str; 3] = ["%EMAILADDRESS%", "%EMAILLOCALPART%", "%EMAILDOMAIN%"];

/// The first `%WORD%` token that is not a known placeholder. A `%` not
/// followed by `WORD%` is literal text (as in a URL's percent-encoding).
pub fn unknown_placeholder(s: &str) -> Option<&str> {
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let end = after.find('%')?;
        let word = &after[..end];
        if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let token = &rest[start..start + end + 2];
            if !PLACEHOLDERS.contains(&token) {
                return Some(token);
            }
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    None
}

/// Placeholders replaced by sample values, so that a template's syntax (host
/// name, URL) can be checked.
pub fn sample_expansion(s: &str) -> String {
    s.replace("%EMAILADDRESS%", "user@example.com")
        .replace("%EMAILLOCALPART%", "user")
        .replace("%EMAILDOMAIN%", "example.com")
}

/// A server host as the model stores it: a template with placeholders is kept
/// as written (it must expand to a host name); a plain name becomes lower-case
/// A-labels. Callers check `unknown_placeholder` first.
///
/// # Errors
/// The (expanded) name is not a valid host name.
pub fn host_template(h: &str) -> Result<String, crate::address::DomainError> {
    if h.contains('%') {
        crate::address::check_hostname(&sample_expansion(h).to_ascii_lowercase())?;
        Ok(h.to_owned())
    } else {
        crate::address::normalize_domain(h)
    }
}

/// Replaces every placeholder in `template` with the parts of `address`, in
/// one pass: placeholder text that arrives inside the address is never
/// expanded again. Without an address the template is returned unchanged, for
/// the client to fill in.
pub fn expand<'a>(template: &'a str, address: Option<&EmailAddress>) -> Cow<'a, str> {
    expand_with(template, address, |value, out| out.push_str(value))
}

/// As `expand`, for templates that are URLs: the substituted parts are
/// percent-encoded, so a local part such as `x&admin=1` cannot add query
/// parameters and non-ASCII travels as UTF-8 octets (RFC 3986 §2.1).
pub fn expand_url<'a>(template: &'a str, address: Option<&EmailAddress>) -> Cow<'a, str> {
    expand_with(template, address, |value, out| {
        out.extend(percent_encoding::utf8_percent_encode(value, URL_VALUE));
    })
}

/// Everything but RFC 3986 unreserved characters and `@` (legal in paths and
/// queries, and what people expect to see in an address).
const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

fn expand_with<'a>(
    template: &'a str,
    address: Option<&EmailAddress>,
    push: impl Fn(&str, &mut String),
) -> Cow<'a, str> {
    let Some(address) = address else {
        return Cow::Borrowed(template);
    };
    if !template.contains('%') {
        return Cow::Borrowed(template);
    }
    let full = address.to_string();
    let values = [full.as_str(), address.local_part(), address.domain()];
    let mut out = String::with_capacity(template.len() + full.len());
    let mut rest = template;
    'scan: while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        for (placeholder, value) in PLACEHOLDERS.iter().zip(values) {
            if let Some(after) = tail.strip_prefix(placeholder) {
                push(value, &mut out);
                rest = after;
                continue 'scan;
            }
        }
        out.push('%');
        rest = &tail[1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_every_occurrence() {
        let a = EmailAddress::parse("Bob+tag@Example.COM").unwrap();
        assert_eq!(
            expand("%EMAILLOCALPART%.%EMAILLOCALPART%@%EMAILDOMAIN%", Some(&a)),
            "Bob+tag.Bob+tag@example.com"
        );
        assert_eq!(expand("%EMAILADDRESS%", None), "%EMAILADDRESS%");
        assert_eq!(expand("100% %EMAILDOMAIN%", Some(&a)), "100% example.com");
    }

    #[test]
    fn placeholder_text_inside_the_address_is_not_expanded_again() {
        let a = EmailAddress::parse("%EMAILDOMAIN%@example.com").unwrap();
        assert_eq!(
            expand("%EMAILADDRESS%", Some(&a)),
            "%EMAILDOMAIN%@example.com"
        );
    }

    #[test]
    fn url_expansion_percent_encodes_the_address() {
        let a = EmailAddress::parse("x&admin=1+jörg@example.com").unwrap();
        assert_eq!(
            expand_url("https://dav.example.com/?user=%EMAILADDRESS%&k=1", Some(&a)),
            "https://dav.example.com/?user=x%26admin%3D1%2Bj%C3%B6rg@example.com&k=1"
        );
    }

    #[test]
    fn auth_names_round_trip_and_aliases() {
        for a in Auth::ALL {
            assert_eq!(Auth::from_name(a.thunderbird_name()), Some(a));
        }
        assert_eq!(Auth::from_name("oauth2"), Some(Auth::OAuth2));
        assert_eq!(Auth::from_name("plain"), Some(Auth::PasswordCleartext));
        assert_eq!(Auth::from_name("kerberos"), None);
    }
}
