//! POX responses: Outlook 2006a settings, MobileSync 2006 settings, errors.
//!
//! One document has to satisfy two readers (spec §4.1):
//! - Outlook 2010+ reads `Encryption` and lets it override `SSL`; we map implicit
//!   TLS to `SSL`, STARTTLS to `TLS`, plain to `None` (the common practice; mox
//!   and Stalwart write `TLS` for implicit TLS, which Outlook then tries as
//!   STARTTLS on 993/465).
//! - Thunderbird ignores `Encryption=SSL/TLS`: `SSL=off` (or `Encryption=None`)
//!   means plain, otherwise ports 143/110/25/587 mean STARTTLS and any other port
//!   implicit TLS. So `SSL` is `on` for both TLS kinds and `off` only for plain;
//!   a server on an unusual port (STARTTLS on 2525, implicit TLS on 587) is read
//!   wrongly by Thunderbird whatever we write, and only the port can fix that.
//!
//! `SPA` and `SSL` default to `on` when absent, so both are always written.

use std::borrow::Cow;
use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::address::EmailAddress;
use crate::model::{Auth, Provider, Security, Server, ServerKind, expand, expand_url};
use crate::render::Document;

use super::{MOBILESYNC_RESPONSE_NS, OUTLOOK_RESPONSE_NS, RESPONSE_NS, ResponseSchema};

/// `Time` of error documents produced by [`render`], which has no clock: clients
/// only show it in debug output. Callers that have a clock use [`render_with_time`].
pub const FALLBACK_TIME_OF_DAY: &str = "00:00:00.0000000";

/// Error codes of the POX error response (MS-OXDSCLI §2.2.4.1.1.3.2, MS-ASCMD §2.2.3.64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 600: the request was not a well-formed Autodiscover request.
    InvalidRequest,
    /// 601: we cannot answer the requested `AcceptableResponseSchema`.
    SchemaNotAvailable,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 600,
            ErrorCode::SchemaNotAvailable => 601,
        }
    }

    /// The message Exchange sends with the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "Invalid Request",
            ErrorCode::SchemaNotAvailable => "Requested schema is not available",
        }
    }
}

/// Whom a settings document is for.
#[derive(Debug, Clone, Copy)]
enum Recipient<'a> {
    /// A person: every placeholder is filled in.
    Address(&'a EmailAddress),
    /// Anyone at this mail domain, as a static `autodiscover.xml` published for
    /// everyone would be: `%EMAILDOMAIN%` is filled in; a value that needs the
    /// local part is left out (Outlook and Thunderbird then use the address the
    /// user typed as the login name).
    Domain(&'a str),
}

impl Recipient<'_> {
    /// `template` filled in, or `None` when it needs an address we do not have.
    fn fill<'t>(self, template: &'t str, url: bool) -> Option<Cow<'t, str>> {
        match self {
            Recipient::Address(a) if url => Some(expand_url(template, Some(a))),
            Recipient::Address(a) => Some(expand(template, Some(a))),
            Recipient::Domain(domain) => {
                // A validated mail domain is lower-case LDH: safe in a URL as is,
                // and it holds no `%`, so nothing it brings in is expanded again.
                let filled = if template.contains("%EMAILDOMAIN%") {
                    Cow::Owned(template.replace("%EMAILDOMAIN%", domain))
                } else {
                    Cow::Borrowed(template)
                };
                let needs_address =
                    filled.contains("%EMAILADDRESS%") || filled.contains("%EMAILLOCALPART%");
                (!needs_address).then_some(filled)
            }
        }
    }
}

/// The Outlook 2006a settings for mail domain `domain` without an address: what
/// a GET (or a POST with no body) of the POX URL gets, as a static file would
/// answer it. Delta Chat asks this way and reads only `Type`, `Server`, `Port`
/// and `SSL`. No `<User>` (we know nobody's name or address); a server or login
/// name whose template needs the local part is left out.
pub fn render_for_domain(provider: &Provider, domain: &str) -> Document {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_outlook(&mut w, provider, Recipient::Domain(domain))
        .expect("writing XML into a Vec cannot fail");
    Document::xml(w.into_inner())
}

/// The settings document for `address` in `schema`, or an error document when
/// the provider cannot answer that schema (MobileSync without an `activesync`
/// server, any unknown schema: code 601, `Time` = [`FALLBACK_TIME_OF_DAY`]).
pub fn render(provider: &Provider, address: &EmailAddress, schema: &ResponseSchema) -> Document {
    render_with_time(provider, address, schema, FALLBACK_TIME_OF_DAY)
}

/// As [`render`], with the caller's time of day (`HH:MM:SS.fffffff`, UTC) for
/// the `Time` attribute of an error document.
pub fn render_with_time(
    provider: &Provider,
    address: &EmailAddress,
    schema: &ResponseSchema,
    time_of_day: &str,
) -> Document {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let written = match schema {
        ResponseSchema::Outlook2006a => {
            write_outlook(&mut w, provider, Recipient::Address(address))
        }
        ResponseSchema::MobileSync2006 => {
            let servers: Vec<&Server> = provider
                .servers
                .iter()
                .filter(|s| s.kind == ServerKind::ActiveSync)
                .collect();
            if servers.is_empty() {
                // MS-ASCMD's own example answers an unmatched schema with 601
                // inside a mobilesync Response; the device then offers manual
                // (IMAP) setup instead of retrying EAS.
                write_error(
                    &mut w,
                    Some(MOBILESYNC_RESPONSE_NS),
                    ErrorCode::SchemaNotAvailable,
                    time_of_day,
                )
            } else {
                write_mobilesync(&mut w, &servers, address)
            }
        }
        ResponseSchema::Other(_) => {
            write_error(&mut w, None, ErrorCode::SchemaNotAvailable, time_of_day)
        }
    };
    written.expect("writing XML into a Vec cannot fail");
    Document::xml(w.into_inner())
}

/// The generic error document (spec §4.3), served with HTTP 200.
///
/// `time_of_day` is the caller's clock (`HH:MM:SS.fffffff`, UTC), written as an
/// attribute (escaped). `Id` is where Exchange puts a hash of its server name; we
/// put a hash of the product name, so every instance answers alike and nothing
/// about the host leaks.
pub fn render_error(code: ErrorCode, time_of_day: &str) -> Document {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_error(&mut w, None, code, time_of_day).expect("writing XML into a Vec cannot fail");
    Document::xml(w.into_inner())
}

type W = Writer<Vec<u8>>;

fn decl(w: &mut W) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
}

fn text(w: &mut W, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// FNV-1a (32 bit): a stable, dependency-free stand-in for Exchange's server hash.
fn error_id() -> String {
    let hash = b"mailconfd".iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash.to_string()
}

/// The XML declaration, `<Autodiscover>` and its `<Response>` (in `response_ns`
/// when given), around `body`: the frame every answer shares.
fn envelope(
    w: &mut W,
    response_ns: Option<&str>,
    body: impl FnOnce(&mut W) -> io::Result<()>,
) -> io::Result<()> {
    decl(w)?;
    w.create_element("Autodiscover")
        .with_attribute(("xmlns", RESPONSE_NS))
        .write_inner_content(|w| {
            let response = w.create_element("Response");
            let response = match response_ns {
                Some(ns) => response.with_attribute(("xmlns", ns)),
                None => response,
            };
            response.write_inner_content(body)?;
            Ok(())
        })?;
    Ok(())
}

fn write_error(w: &mut W, ns: Option<&str>, code: ErrorCode, time: &str) -> io::Result<()> {
    envelope(w, ns, |w| {
        let id = error_id();
        w.create_element("Error")
            .with_attribute(("Time", time))
            .with_attribute(("Id", id.as_str()))
            .write_inner_content(|w| {
                text(w, "ErrorCode", &code.code().to_string())?;
                text(w, "Message", code.message())?;
                w.create_element("DebugData").write_empty()?;
                Ok(())
            })?;
        Ok(())
    })
}

fn write_outlook(w: &mut W, provider: &Provider, who: Recipient<'_>) -> io::Result<()> {
    envelope(w, Some(OUTLOOK_RESPONSE_NS), |w| {
        // We do not know the person's name; the address is what
        // Outlook shows otherwise, and the user can change it.
        if let Recipient::Address(address) = who {
            let display = provider
                .user_display_name
                .clone()
                .unwrap_or_else(|| address.to_string());
            w.create_element("User")
                .write_inner_content(|w| text(w, "DisplayName", &display))?;
        }
        w.create_element("Account").write_inner_content(|w| {
            text(w, "AccountType", "email")?;
            text(w, "Action", "settings")?;
            // Mail first: a client that takes the first Protocol as
            // "the" account must not land on a DAV block.
            for s in provider.servers.iter().filter(|s| !s.kind.uses_url()) {
                write_mail_protocol(w, provider, s, who)?;
            }
            for s in &provider.servers {
                write_dav_protocol(w, s, who)?;
            }
            Ok(())
        })?;
        Ok(())
    })
}

/// Outlook has one authentication slot per protocol; it describes the
/// operator's first (preferred) method.
fn needs_login(auth: Option<&Auth>) -> bool {
    !matches!(
        auth,
        Some(Auth::None | Auth::ClientIpAddress | Auth::SmtpAfterPop)
    )
}

fn write_mail_protocol(
    w: &mut W,
    provider: &Provider,
    s: &Server,
    who: Recipient<'_>,
) -> io::Result<()> {
    let Some((host, port, security)) = s.host_port() else {
        return Ok(());
    };
    // A host that needs the local part cannot be named without an address.
    let Some(host) = who.fill(host, false) else {
        return Ok(());
    };
    let kind = match s.kind {
        ServerKind::Imap => "IMAP",
        ServerKind::Pop3 => "POP3",
        ServerKind::Smtp => "SMTP",
        ServerKind::CalDav | ServerKind::CardDav | ServerKind::ActiveSync | ServerKind::Jmap => {
            return Ok(());
        }
    };
    let (ssl, encryption) = match security {
        Security::Tls => (true, "SSL"),
        Security::StartTls => (true, "TLS"),
        Security::Plain => (false, "None"),
    };
    let first = s.auth.first();
    let login = who.fill(&s.username, false);
    w.create_element("Protocol").write_inner_content(|w| {
        text(w, "Type", kind)?;
        text(w, "Server", &host)?;
        text(w, "Port", &port.to_string())?;
        if let Some(login) = &login {
            text(w, "LoginName", login)?;
        }
        text(w, "DomainRequired", "off")?;
        // SPA is Outlook's name for NTLM (via SSPI); Thunderbird reads `on` as
        // "secure" authentication. Only an operator who put NTLM first gets it.
        text(w, "SPA", on_off(first == Some(&Auth::Ntlm)))?;
        text(w, "SSL", on_off(ssl))?;
        text(w, "Encryption", encryption)?;
        text(w, "AuthRequired", on_off(needs_login(first)))?;
        if s.kind == ServerKind::Smtp {
            text(
                w,
                "UsePOPAuth",
                on_off(shares_incoming_login(provider, s, who)),
            )?;
            // SMTPLast is Outlook's "send after receive": what smtp-after-pop needs.
            text(w, "SMTPLast", on_off(first == Some(&Auth::SmtpAfterPop)))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `UsePOPAuth on` makes Outlook log in to SMTP with the incoming server's name
/// and password ("use same settings as my incoming mail server"), so the user is
/// not asked for a second password. Only when that is what the config says: both
/// log in with a password, under the same expanded name.
fn shares_incoming_login(provider: &Provider, smtp: &Server, who: Recipient<'_>) -> bool {
    let Some(incoming) = provider.incoming().next() else {
        return false;
    };
    let uses_password = |s: &Server| s.auth.first().is_some_and(|a| a.uses_password());
    // Without an address, equal templates still mean equal names for everyone.
    let same_login = match (
        who.fill(&smtp.username, false),
        who.fill(&incoming.username, false),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => smtp.username == incoming.username,
    };
    uses_password(smtp) && uses_password(incoming) && same_login
}

/// CalDAV/CardDAV as mailcow writes them (eM Client reads them; Outlook and
/// Thunderbird skip unknown `Type`s). `Server` holds the URL.
fn write_dav_protocol(w: &mut W, s: &Server, who: Recipient<'_>) -> io::Result<()> {
    let kind = match s.kind {
        ServerKind::CalDav => "CalDAV",
        ServerKind::CardDav => "CardDAV",
        ServerKind::Imap
        | ServerKind::Pop3
        | ServerKind::Smtp
        | ServerKind::ActiveSync
        | ServerKind::Jmap => {
            return Ok(());
        }
    };
    let Some(url) = s.url().and_then(|u| who.fill(u, true)) else {
        return Ok(());
    };
    let login = who.fill(&s.username, false);
    w.create_element("Protocol").write_inner_content(|w| {
        text(w, "Type", kind)?;
        text(w, "Server", &url)?;
        text(w, "DomainRequired", "off")?;
        if let Some(login) = &login {
            text(w, "LoginName", login)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// MS-ASCMD §4.2.4: one `Server` of type MobileSync per configured endpoint.
fn write_mobilesync(w: &mut W, servers: &[&Server], address: &EmailAddress) -> io::Result<()> {
    let shown = address.to_string();
    envelope(w, Some(MOBILESYNC_RESPONSE_NS), |w| {
        // The documented example value; devices use it for server
        // messages only, and we have no locale to offer.
        text(w, "Culture", "en:us")?;
        w.create_element("User").write_inner_content(|w| {
            text(w, "DisplayName", &shown)?;
            text(w, "EMailAddress", &shown)
        })?;
        w.create_element("Action").write_inner_content(|w| {
            w.create_element("Settings").write_inner_content(|w| {
                for s in servers {
                    let Some(url) = s.url() else { continue };
                    let url = expand_url(url, Some(address));
                    w.create_element("Server").write_inner_content(|w| {
                        text(w, "Type", "MobileSync")?;
                        text(w, "Url", &url)?;
                        text(w, "Name", &url)
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })
}

#[cfg(test)]
mod tests;
