//! DNS as a client sees it, through hickory's resolver: the system's
//! resolv.conf, or one server given with `--resolver` (then /etc/hosts is
//! not consulted, so a test or a check against an authoritative server sees
//! only that server).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};
use hickory_resolver::{ResolveError, TokioResolver};

use super::records;

/// Per query attempt.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Dns {
    resolver: TokioResolver,
    pub description: String,
}

/// A lookup's answer: records, none (NXDOMAIN/NODATA), or a failure.
pub enum Answer {
    Records(Vec<String>),
    None,
    Failed(String),
}

impl Dns {
    /// # Errors
    /// The system's resolver configuration cannot be read.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 2;
        // Every answer fresh: the point is to see what is published now.
        opts.cache_size = 0;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let (resolver, description) = match server {
            Some(addr) => {
                opts.use_hosts_file = ResolveHosts::Never;
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
                let r =
                    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                        .with_options(opts)
                        .build();
                (r, format!("resolver {addr}"))
            }
            None => {
                let mut builder = TokioResolver::builder_tokio()
                    .map_err(|e| format!("reading /etc/resolv.conf: {e}"))?;
                *builder.options_mut() = opts;
                (builder.build(), "the system's resolver".to_owned())
            }
        };
        Ok(Dns {
            resolver,
            description,
        })
    }

    /// The records of `rtype` at `name`, each normalized as `records` compares them.
    pub async fn records(&self, name: &str, rtype: &str) -> Answer {
        let Ok(record_type) = rtype.parse::<RecordType>() else {
            return Answer::Failed(format!("unknown record type {rtype}"));
        };
        match self.resolver.lookup(fqdn(name), record_type).await {
            Ok(lookup) => {
                let found: Vec<String> = lookup
                    .record_iter()
                    .filter(|r| r.record_type() == record_type)
                    .map(|r| records::normalize_rdata(rtype, &rdata_text(rtype, r.data())))
                    .collect();
                if found.is_empty() {
                    Answer::None
                } else {
                    Answer::Records(found)
                }
            }
            Err(e) => none_or_failed(&e),
        }
    }

    /// The addresses `name` resolves to (following CNAMEs).
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        match self.resolver.lookup_ip(fqdn(name)).await {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) => match failure(&e) {
                None => Ok(Vec::new()),
                Some(why) => Err(why),
            },
        }
    }
}

fn none_or_failed(e: &ResolveError) -> Answer {
    match failure(e) {
        None => Answer::None,
        Some(why) => Answer::Failed(why),
    }
}

/// `None` when the answer says there is no such record (NXDOMAIN, or NOERROR
/// without data); otherwise why the lookup failed. hickory reports a REFUSED
/// or SERVFAIL answer as "no records found" too, but that is a broken or
/// unreachable zone, not an unpublished record, and the fix differs.
fn failure(e: &ResolveError) -> Option<String> {
    match e.proto().map(ProtoError::kind) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
            ResponseCode::NXDomain | ResponseCode::NoError => None,
            code => Some(format!(
                "the name server answered {}",
                format!("{code:?}").to_ascii_uppercase()
            )),
        },
        _ => Some(e.to_string()),
    }
}

/// Zone-file text of one record's data; TXT strings quoted so that
/// `records::normalize_rdata` treats them like the ones `dns` prints.
fn rdata_text(rtype: &str, data: &hickory_resolver::proto::rr::RData) -> String {
    use hickory_resolver::proto::rr::RData;
    match (rtype, data) {
        ("TXT", RData::TXT(txt)) => txt
            .iter()
            .map(|s| {
                let escaped: String = String::from_utf8_lossy(s)
                    .chars()
                    .flat_map(|c| match c {
                        '"' | '\\' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                format!("\"{escaped}\"")
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => data.to_string(),
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}
