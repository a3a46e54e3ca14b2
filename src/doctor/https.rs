//! The HTTPS names, as a client reaches them: each resolves (to this host),
//! completes a handshake with a valid certificate for its name, and answers
//! with the document this config renders.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::EXPIRY_WARNING_SECS;
use super::lookup::Dns;
use super::probe;
use super::report::{Report, Status};
use crate::config::{Config, TlsMode};
use crate::model::Provider;
use crate::render::{autodiscover, mta_sts, pacc, thunderbird};

/// Each HTTPS name: resolves (to this host), answers with a valid
/// certificate and this config's document.
pub(super) async fn check(
    report: &mut Report,
    dns_client: &Dns,
    tls: &Arc<rustls::ClientConfig>,
    local: &BTreeSet<IpAddr>,
    config: &Config,
    provider: &Provider,
    domain: &str,
) {
    if config.tls.mode == TlsMode::Off {
        return;
    }
    for name in config.names_for_domain(domain) {
        let addrs = match dns_client.addresses(&name).await {
            Ok(a) if a.is_empty() => {
                report.push(
                    Status::Fail,
                    "address",
                    domain,
                    &name,
                    "does not resolve",
                    Some(format!(
                        "publish the A/AAAA or CNAME record for {name} that `mailconfd dns` prints"
                    )),
                );
                continue;
            }
            Ok(a) => a,
            Err(e) => {
                report.push(
                    Status::Fail,
                    "address",
                    domain,
                    &name,
                    format!("lookup failed: {e}"),
                    Some(format!(
                        "check that the zone's name servers answer for {name} (dig {name} A)"
                    )),
                );
                continue;
            }
        };
        let foreign: Vec<String> = addrs
            .iter()
            // Loopback addresses are this host by definition (all of 127/8).
            .filter(|a| !a.is_loopback() && !local.contains(a))
            .map(ToString::to_string)
            .collect();
        if foreign.is_empty() {
            report.push(
                Status::Ok,
                "address",
                domain,
                &name,
                format!("points at this host ({})", list(&addrs)),
                None,
            );
        } else {
            report.push(
                Status::Warn,
                "address",
                domain,
                &name,
                format!("resolves to {}, not an address of this host", foreign.join(", ")),
                Some("fine behind NAT or a load balancer if the HTTPS check passes; otherwise point the name here".into()),
            );
        }
        let (path, expected) = expected_document(provider, domain, &name);
        let addr = SocketAddr::new(addrs[0], 443);
        match probe::https_get(tls, addr, &name, path).await {
            Err(e) => report.push(
                Status::Fail,
                "https",
                domain,
                format!("https://{name}{path}"),
                format!("via {addr}: {e}"),
                Some("check `mailconfd certs`, that the name reaches this host on port 443, and the log".into()),
            ),
            Ok(answer) if answer.status != 200 => report.push(
                Status::Fail,
                "https",
                domain,
                format!("https://{name}{path}"),
                format!("answered HTTP {}", answer.status),
                Some("another server answers for this name, or the config it runs is older (systemctl reload mailconfd)".into()),
            ),
            Ok(answer) => {
                let subject = format!("https://{name}{path}");
                if expected.as_ref().is_some_and(|e| *e != answer.body) {
                    report.push(
                        Status::Fail,
                        "https",
                        domain,
                        subject,
                        "answers, but not with this config's document",
                        Some("another server answers for this name, or the daemon runs an older config (systemctl reload mailconfd)".into()),
                    );
                    continue;
                }
                let now = crate::certs::unix_now();
                match answer.handshake.not_after {
                    Some(t) if t - now < EXPIRY_WARNING_SECS => report.push(
                        Status::Warn,
                        "https",
                        domain,
                        subject,
                        format!("right document, but the certificate expires in {} day(s)", (t - now) / 86_400),
                        Some("if mailconfd serves this name, `mailconfd certs` shows the renewal's last error; otherwise renew that server's certificate".into()),
                    ),
                    t => report.push(
                        Status::Ok,
                        "https",
                        domain,
                        subject,
                        format!(
                            "valid certificate ({}{}), right document",
                            answer.handshake.protocol,
                            t.map(|t| format!(", {} days left", (t - now) / 86_400)).unwrap_or_default()
                        ),
                        None,
                    ),
                }
            }
        }
    }
}

/// The path to fetch on `name` and the exact bytes this config serves there
/// (`None` when only the certificate and a 200 can be checked).
fn expected_document(
    provider: &Provider,
    domain: &str,
    name: &str,
) -> (&'static str, Option<Vec<u8>>) {
    if name.starts_with("autoconfig.") {
        (
            "/mail/config-v1.1.xml",
            Some(thunderbird::render(provider, domain, None).body),
        )
    } else if name.starts_with("autodiscover.") {
        (
            "/autodiscover/autodiscover.xml",
            Some(autodiscover::render_for_domain(provider, domain).body),
        )
    } else if name.starts_with("mta-sts.") {
        (
            "/.well-known/mta-sts.txt",
            provider.mta_sts.as_ref().map(|p| mta_sts::render(p).body),
        )
    } else if name.starts_with("ua-auto-config.") {
        (pacc::PATH, pacc::render(provider).map(|d| d.body))
    } else if name == domain {
        (
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            Some(thunderbird::render(provider, domain, None).body),
        )
    } else {
        ("/", None)
    }
}

fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
