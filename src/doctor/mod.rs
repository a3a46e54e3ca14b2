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
//! hickory), `caa` (the CA in use and the CAA sets), `https` (the served
//! names), `mail` (the advertised mail servers), `probe` (TLS, HTTPS,
//! STARTTLS), `report` (text and JSON).

pub mod caa;
mod https;
pub mod lookup;
mod mail;
pub mod probe;
pub mod records;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::config::Config;
use crate::model::Provider;
use crate::render::dns;
use lookup::{Answer, Dns};
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
        https::check(
            &mut report,
            &dns_client,
            &tls,
            &local,
            config,
            provider,
            domain,
        )
        .await;
        mail::collect(&mut report, &mut mail_servers, provider, domain);
    }
    for ((host, port, _, _), (protocol, security)) in mail_servers {
        mail::check(
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
