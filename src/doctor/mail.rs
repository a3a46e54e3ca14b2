//! The advertised IMAP/POP3/SMTP servers: each resolves and completes a TLS
//! (or STARTTLS) handshake with a valid certificate for its name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::EXPIRY_WARNING_SECS;
use super::lookup::Dns;
use super::probe::{self, MailProtocol};
use super::report::{Report, Status};
use crate::address::EmailAddress;
use crate::model::{self, Provider, Security, ServerKind};

/// host, port, the security and the protocol as numbers (the enums have no
/// order): IMAP and POP3 advertised on one port (a mistake) are both checked.
pub(super) type MailKey = (String, u16, u8, u8);

pub(super) fn collect(
    report: &mut Report,
    servers: &mut BTreeMap<MailKey, (MailProtocol, Security)>,
    provider: &Provider,
    domain: &str,
) {
    let Ok(sample) = EmailAddress::parse(&format!("postmaster@{domain}")) else {
        return;
    };
    for s in &provider.servers {
        let protocol = match s.kind {
            ServerKind::Imap => MailProtocol::Imap,
            ServerKind::Pop3 => MailProtocol::Pop3,
            ServerKind::Smtp => MailProtocol::Smtp,
            _ => continue,
        };
        let Some((host, port, security)) = s.host_port() else {
            continue;
        };
        if host.contains("%EMAILLOCALPART%") || host.contains("%EMAILADDRESS%") {
            report.push(
                Status::Warn,
                "mail",
                domain,
                host,
                "the host depends on the user: not checked",
                Some(format!(
                    "check one user's host by hand: openssl s_client -connect HOST:{port} -servername HOST"
                )),
            );
            continue;
        }
        let host = model::expand(host, Some(&sample)).to_ascii_lowercase();
        let rank = match security {
            Security::Tls => 0,
            Security::StartTls => 1,
            Security::Plain => 2,
        };
        let which = match protocol {
            MailProtocol::Imap => 0,
            MailProtocol::Pop3 => 1,
            MailProtocol::Smtp => 2,
        };
        servers.insert((host, port, rank, which), (protocol, security));
    }
}

pub(super) async fn check(
    report: &mut Report,
    dns_client: &Dns,
    tls: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    security: Security,
    protocol: MailProtocol,
) {
    let subject = format!("{host}:{port} ({})", protocol_name(protocol, security));
    let addrs = match dns_client.addresses(host).await {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            report.push(
                Status::Fail,
                "mail",
                "",
                subject,
                "does not resolve: clients get settings for a host that does not exist",
                Some(format!(
                    "publish an A/AAAA record for {host}, or fix the host in the config"
                )),
            );
            return;
        }
        Err(e) => {
            report.push(
                Status::Fail,
                "mail",
                "",
                subject,
                format!("lookup failed: {e}"),
                Some(format!(
                    "check that the zone's name servers answer for {host} (dig {host} A)"
                )),
            );
            return;
        }
    };
    let addr = SocketAddr::new(addrs[0], port);
    let starttls = match security {
        Security::Tls => false,
        Security::StartTls => true,
        Security::Plain => {
            report.push(
                Status::Warn,
                "mail",
                "",
                subject,
                "plain: passwords cross the network unencrypted (and Thunderbird for Android drops the whole document)",
                Some("offer implicit TLS (993/995/465) or STARTTLS".into()),
            );
            return;
        }
    };
    match probe::mail_tls(tls, addr, host, protocol, starttls).await {
        Ok(h) => {
            let now = crate::certs::unix_now();
            match h.not_after {
                Some(t) if t - now < EXPIRY_WARNING_SECS => report.push(
                    Status::Warn,
                    "mail",
                    "",
                    subject,
                    format!(
                        "TLS ok via {addr}, but the certificate expires in {} day(s)",
                        (t - now) / 86_400
                    ),
                    Some("renew the mail server's certificate".into()),
                ),
                _ => report.push(
                    Status::Ok,
                    "mail",
                    "",
                    subject,
                    format!(
                        "{} handshake via {addr}, valid certificate for {host}",
                        h.protocol
                    ),
                    None,
                ),
            }
        }
        Err(e) => report.push(
            Status::Fail,
            "mail",
            "",
            subject,
            format!("via {addr}: {e}"),
            Some("check the mail server's listener and its certificate for this exact name".into()),
        ),
    }
}

fn protocol_name(p: MailProtocol, s: Security) -> &'static str {
    match (p, s) {
        (MailProtocol::Imap, Security::Tls) => "IMAP, TLS",
        (MailProtocol::Imap, Security::StartTls) => "IMAP, STARTTLS",
        (MailProtocol::Imap, Security::Plain) => "IMAP, plain",
        (MailProtocol::Pop3, Security::Tls) => "POP3, TLS",
        (MailProtocol::Pop3, Security::StartTls) => "POP3, STARTTLS",
        (MailProtocol::Pop3, Security::Plain) => "POP3, plain",
        (MailProtocol::Smtp, Security::Tls) => "SMTP, TLS",
        (MailProtocol::Smtp, Security::StartTls) => "SMTP, STARTTLS",
        (MailProtocol::Smtp, Security::Plain) => "SMTP, plain",
    }
}
