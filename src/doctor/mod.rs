//! `mailconfd doctor`: checks from the outside in what clients will see.
//!
//! For each mail domain: every record `mailconfd dns` prints is published
//! and equal; CAA lets the CA in use issue; the served names resolve to this
//! host; each HTTPS name answers with a valid certificate and this config's
//! document. Then every advertised IMAP/POP3/SMTP server: it resolves and
//! completes a TLS (or STARTTLS) handshake with a valid certificate for its
//! name. Each finding is ok, warn or fail, with the fix.
//!
//! Submodules: `records` (what `dns` prints, parsed), `lookup` (DNS through
//! hickory), `caa` (the CA in use and the CAA sets), `probe` (TLS, HTTPS,
//! STARTTLS), `report` (text and JSON).

pub mod caa;
pub mod lookup;
pub mod probe;
pub mod records;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::address::EmailAddress;
use crate::config::{Config, TlsMode};
use crate::model::{self, Provider, Security, ServerKind};
use crate::render::{autodiscover, dns, mta_sts, pacc, thunderbird};
use lookup::{Answer, Dns};
use probe::MailProtocol;
use report::{Report, Status};

/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;
/// More domains than this without `--domain`: a note that it takes a while.
const MANY_DOMAINS: usize = 20;

pub struct Options {
    pub domain: Option<String>,
    /// One DNS server to ask instead of the system's resolver.
    pub resolver: Option<SocketAddr>,
    /// An extra CA the HTTPS and mail certificates may chain to (a local or test CA).
    pub ca_file: Option<PathBuf>,
}

/// Runs every check.
///
/// # Errors
/// The options cannot be used (unknown `--domain`, unreadable CA file, no
/// resolver configuration).
pub async fn run(config: &Config, opts: &Options) -> Result<Report, String> {
    let domains: Vec<(&str, &Provider)> = match &opts.domain {
        Some(d) => {
            let wanted =
                crate::address::normalize_domain(d).map_err(|e| format!("--domain: {e}"))?;
            let found = config
                .lookup_domain(&wanted)
                .ok_or_else(|| format!("--domain: {wanted} is not a configured mail domain"))?;
            vec![found]
        }
        None => config.domains().collect(),
    };
    let dns_client = Dns::new(opts.resolver)?;
    let tls = probe::client_config(opts.ca_file.as_deref())?;
    let local = local_addresses();
    let mut report = Report::default();
    if domains.len() > MANY_DOMAINS {
        eprintln!(
            "doctor: checking {} domains one after another; use --domain D for one",
            domains.len()
        );
    }
    let ca = caa::ca_in_use(config).await;
    let mut mail_servers = BTreeMap::new();
    for (domain, provider) in &domains {
        check_records(&mut report, &dns_client, config, provider, domain).await;
        if let Some(ca) = &ca {
            caa::check(&mut report, &dns_client, config, ca, domain).await;
        }
        check_https(
            &mut report,
            &dns_client,
            &tls,
            &local,
            config,
            provider,
            domain,
        )
        .await;
        collect_mail_servers(&mut report, &mut mail_servers, provider, domain);
    }
    for ((host, port, _), (protocol, security)) in mail_servers {
        check_mail_server(
            &mut report,
            &dns_client,
            &tls,
            &host,
            port,
            security,
            protocol,
        )
        .await;
    }
    Ok(report)
}

/// Every record line of `mailconfd dns` for this domain, looked up.
async fn check_records(
    report: &mut Report,
    dns_client: &Dns,
    config: &Config,
    provider: &Provider,
    domain: &str,
) {
    let zone = dns::render(provider, domain, config.server.public_name.as_deref());
    let mut wanted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in records::parse(&zone) {
        if let records::Expected::Record {
            owner,
            rtype,
            rdata,
        } = e
        {
            wanted.entry((owner, rtype)).or_default().push(rdata);
        }
    }
    let fix = format!("publish what `mailconfd dns --domain {domain}` prints");
    for ((owner, rtype), expected) in wanted {
        let published = match dns_client.records(&owner, &rtype).await {
            Answer::Records(r) => r,
            Answer::None => Vec::new(),
            Answer::Failed(e) => {
                report.push(
                    Status::Fail,
                    "dns",
                    domain,
                    format!("{owner} {rtype}"),
                    format!("lookup failed: {e}"),
                    Some("check that the zone's name servers answer".into()),
                );
                continue;
            }
        };
        let subject = format!("{owner} {rtype}");
        let missing: Vec<&String> = expected.iter().filter(|r| !published.contains(r)).collect();
        // For TXT, only strings of the same kind (same "v=" tag) compete.
        let extra: Vec<&String> = published
            .iter()
            .filter(|p| !expected.contains(p))
            .filter(|p| rtype != "TXT" || expected.iter().any(|e| same_txt_kind(e, p)))
            .collect();
        if missing.is_empty() && extra.is_empty() {
            report.push(
                Status::Ok,
                "dns",
                domain,
                subject,
                expected.join(" | "),
                None,
            );
        } else if missing.is_empty() {
            report.push(
                Status::Warn,
                "dns",
                domain,
                subject,
                format!(
                    "published, plus records mailconfd does not print: {}",
                    join(&extra)
                ),
                Some("remove the extra records unless you added them on purpose".into()),
            );
        } else if published.is_empty() {
            report.push(
                Status::Fail,
                "dns",
                domain,
                subject,
                format!("not published; expected {}", join(&missing)),
                Some(fix.clone()),
            );
        } else {
            report.push(
                Status::Fail,
                "dns",
                domain,
                subject,
                format!(
                    "published {}, expected {}",
                    join(&published.iter().collect::<Vec<_>>()),
                    join(&missing)
                ),
                Some(fix.clone()),
            );
        }
    }
}

fn same_txt_kind(a: &str, b: &str) -> bool {
    let tag = |s: &str| {
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    tag(a) == tag(b)
}

fn join(v: &[&String]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each HTTPS name: resolves (to this host), answers with a valid
/// certificate and this config's document.
async fn check_https(
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
                        Some("see `mailconfd certs` for the renewal's last error".into()),
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

/// host, port, and the security as a number (the model's enum has no order).
type MailKey = (String, u16, u8);

fn collect_mail_servers(
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
        servers.insert((host, port, rank), (protocol, security));
    }
}

async fn check_mail_server(
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

fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The addresses of this host's interfaces.
fn local_addresses() -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    if let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() {
        for ifa in ifaddrs {
            if let Some(addr) = ifa.address {
                if let Some(v4) = addr.as_sockaddr_in() {
                    out.insert(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    out.insert(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
    out
}
