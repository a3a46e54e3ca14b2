//! Which of our names a Host header is: `autoconfig.D`, `autodiscover.D`,
//! `mta-sts.D`, `ua-auto-config.D` or D itself, for a configured D.

use crate::config::Config;
use crate::model::Provider;

/// Which of our names a Host header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Autoconfig,
    Autodiscover,
    MtaSts,
    /// The mail domain itself (`.well-known` autoconfig, autodiscover).
    Apex,
    /// `ua-auto-config.D`, PACC's fixed name (only where PACC is served).
    UaAutoConfig,
}

/// Parses a Host value: port dropped, case and one trailing dot ignored. IP
/// literals and anything not a configured name give `None`.
pub fn classify_host<'c>(
    host: &str,
    config: &'c Config,
) -> Option<(HostKind, &'c str, &'c Provider)> {
    let name = strip_port(host)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let name = name.to_ascii_lowercase();
    if let Some((d, p)) = config.lookup_domain(&name) {
        return Some((HostKind::Apex, d, p));
    }
    for (prefix, kind) in [
        ("autoconfig.", HostKind::Autoconfig),
        ("autodiscover.", HostKind::Autodiscover),
        ("mta-sts.", HostKind::MtaSts),
        ("ua-auto-config.", HostKind::UaAutoConfig),
    ] {
        if let Some((d, p)) = name
            .strip_prefix(prefix)
            .and_then(|rest| config.lookup_domain(rest))
        {
            if kind == HostKind::MtaSts && p.mta_sts.is_none() {
                return None;
            }
            if kind == HostKind::UaAutoConfig && !p.serves_pacc() {
                return None;
            }
            return Some((kind, d, p));
        }
    }
    None
}

/// `name[:port]` or `[v6]:port` -> name; bracketed IPv6 literals are never ours.
pub(super) fn strip_port(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        return None;
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => Some(name),
        Some(_) => None,
        None => Some(host),
    }
}
