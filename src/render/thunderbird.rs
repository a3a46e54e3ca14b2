//! Thunderbird autoconfig, clientConfig v1.1 (`/mail/config-v1.1.xml`).
//!
//! Owns the mapping from a validated [`Provider`] to the XML that Thunderbird,
//! Thunderbird for Android, Evolution and KMail read. Pure: no I/O, same input,
//! same bytes. Every byte of markup goes through quick-xml's `Writer`, which
//! escapes text and attributes; nothing here builds XML with `format!`.
//!
//! Format: <https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat>,
//! client quirks in `spec/thunderbird-autoconfig.md`.

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::Document;
use crate::address::EmailAddress;
use crate::model::{self, Auth, OAuth2, Provider, Security, Server, ServerKind};

/// Renders the provider's config-v1.1 document for mail domain `domain` (the
/// address's domain, else the one the Host names).
///
/// The document's one `<domain>` is `domain`: never the provider's whole list,
/// which for a hoster is every customer (Thunderbird stores the list and reads
/// it nowhere; it only needs one valid entry). So the size of the answer does
/// not grow with the provider.
///
/// With `address == None` the placeholders (`%EMAILADDRESS%`, ...) are kept for
/// the client to fill in: Thunderbird for Android and KMail never send the
/// address. With an address they are substituted in `hostname` and `username`,
/// the two fields every client substitutes (spec §3.3).
pub fn render(provider: &Provider, domain: &str, address: Option<&EmailAddress>) -> Document {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_config(&mut w, provider, domain, address).expect("writing XML into a Vec cannot fail");
    let mut body = w.into_inner();
    // POSIX text file; the XML writer does not end the last line.
    body.push(b'\n');
    Document::xml(body)
}

fn write_config(
    w: &mut Writer<Vec<u8>>,
    p: &Provider,
    domain: &str,
    address: Option<&EmailAddress>,
) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("clientConfig")
        .with_attribute(("version", "1.1"))
        .write_inner_content(|w| {
            w.create_element("emailProvider")
                .with_attribute(("id", p.id.as_str()))
                .write_inner_content(|w| write_provider(w, p, domain, address))?;
            for s in &p.servers {
                write_dav(w, s, address)?;
            }
            if let Some(o) = p.oauth2_hints().filter(|o| o.is_complete()) {
                write_oauth2(w, o)?;
            }
            Ok(())
        })?;
    Ok(())
}

fn write_provider(
    w: &mut Writer<Vec<u8>>,
    p: &Provider,
    domain: &str,
    address: Option<&EmailAddress>,
) -> io::Result<()> {
    text_element(w, "domain", domain)?;
    text_element(w, "displayName", &p.name)?;
    text_element(w, "displayShortName", &p.short_name)?;
    // One pass in the operator's order: clients treat the first server of each
    // direction as the default and the rest as alternatives.
    for s in &p.servers {
        let (element, kind) = match s.kind {
            ServerKind::Imap => ("incomingServer", "imap"),
            ServerKind::Pop3 => ("incomingServer", "pop3"),
            ServerKind::Smtp => ("outgoingServer", "smtp"),
            // URL-based: DAV goes after </emailProvider>, JMAP after the mail
            // servers; ActiveSync is served by Autodiscover and the
            // mobileconfig, not here.
            ServerKind::CalDav
            | ServerKind::CardDav
            | ServerKind::ActiveSync
            | ServerKind::Jmap => continue,
        };
        let Some((host, port, security)) = s.host_port() else {
            continue;
        };
        w.create_element(element)
            .with_attribute(("type", kind))
            .write_inner_content(|w| {
                text_element(w, "hostname", &model::expand(host, address))?;
                text_element(w, "port", &port.to_string())?;
                text_element(w, "socketType", socket_type(security))?;
                for a in &s.auth {
                    text_element(w, "authentication", a.thunderbird_name())?;
                }
                text_element(w, "username", &model::expand(&s.username, address))
            })?;
    }
    // JMAP last: clients that do not know the type skip it (Thunderbird
    // desktop, Android), and parsers that take the first incomingServer
    // still get IMAP or POP3.
    for s in p.servers.iter().filter(|s| s.kind == ServerKind::Jmap) {
        write_jmap(w, s, address)?;
    }
    Ok(())
}

/// `<incomingServer type="jmap">` as draft-ietf-mailmaint-autoconfig-06 has
/// it: the session URL in `<url>`, HTTP authentication marked `system="http"`.
fn write_jmap(
    w: &mut Writer<Vec<u8>>,
    s: &Server,
    address: Option<&EmailAddress>,
) -> io::Result<()> {
    let Some(url) = s.url() else {
        return Ok(());
    };
    w.create_element("incomingServer")
        .with_attribute(("type", "jmap"))
        .write_inner_content(|w| {
            text_element(w, "url", url)?;
            let mut basic = false;
            for a in &s.auth {
                if *a == Auth::OAuth2 {
                    text_element(w, "authentication", a.thunderbird_name())?;
                } else if a.uses_password() && !basic {
                    // JMAP takes the password as HTTP Basic (RFC 8620 §1.7).
                    basic = true;
                    w.create_element("authentication")
                        .with_attribute(("system", "http"))
                        .write_text_content(BytesText::new("Basic"))?;
                }
            }
            text_element(w, "username", &model::expand(&s.username, address))
        })?;
    Ok(())
}

/// `<oAuth2>` directly under `<clientConfig>`, as the draft places it, and
/// only with all four children: io-pim-discovery reads it there and rejects
/// the whole document when one is missing (older Thunderbird for Android
/// looked inside `<emailProvider>`; Thunderbird desktop reads neither place).
fn write_oauth2(w: &mut Writer<Vec<u8>>, o: &OAuth2) -> io::Result<()> {
    w.create_element("oAuth2").write_inner_content(|w| {
        text_element(w, "issuer", &o.issuer)?;
        if !o.scope.is_empty() {
            text_element(w, "scope", &o.scope)?;
        }
        if let Some(u) = &o.auth_url {
            text_element(w, "authURL", u)?;
        }
        if let Some(u) = &o.token_url {
            text_element(w, "tokenURL", u)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// 1.1-style DAV hints (`addressBook`/`serverURL`, not the draft's
/// `addressbook`/`url`). No client studied reads them; harmless and documented.
fn write_dav(
    w: &mut Writer<Vec<u8>>,
    s: &Server,
    address: Option<&EmailAddress>,
) -> io::Result<()> {
    let (element, kind) = match s.kind {
        ServerKind::CalDav => ("calendar", "caldav"),
        ServerKind::CardDav => ("addressBook", "carddav"),
        ServerKind::Imap
        | ServerKind::Pop3
        | ServerKind::Smtp
        | ServerKind::ActiveSync
        | ServerKind::Jmap => {
            return Ok(());
        }
    };
    let Some(url) = s.url() else {
        return Ok(());
    };
    w.create_element(element)
        .with_attribute(("type", kind))
        .write_inner_content(|w| {
            text_element(w, "username", &model::expand(&s.username, address))?;
            // The 1.1 format knows only http-basic/http-digest/OAuth2 for DAV;
            // our DAV servers take the mail password over TLS.
            text_element(w, "authentication", "http-basic")?;
            text_element(w, "serverURL", &model::expand_url(url, address))
        })?;
    Ok(())
}

fn text_element(w: &mut Writer<Vec<u8>>, name: &str, text: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(text))?;
    Ok(())
}

fn socket_type(s: Security) -> &'static str {
    match s {
        // exhaustive: a new variant breaks every renderer until it is handled
        Security::Tls => "SSL",
        Security::StartTls => "STARTTLS",
        Security::Plain => "plain",
    }
}

#[cfg(test)]
mod tests;
