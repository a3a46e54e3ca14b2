//! RawConfig -> Config: every rule, every problem collected with its key path.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use base64::Engine as _;

use super::raw::{
    BoolOrList, RawAcme, RawConfig, RawLimits, RawMtaSts, RawProvider, RawServer, RawServerSection,
    RawTls, Unknown,
};
use super::{
    AcmeConfig, CertFiles, Challenge, Config, ExternalAccountBinding, IpNet, KeyType, LimitsConfig,
    ServerConfig, TlsConfig, TlsMode,
};
use crate::address::{check_hostname, normalize_domain};
use crate::model::{
    Auth, Endpoint, MtaSts, MtaStsMode, PLACEHOLDERS, Provider, Security, Server, ServerKind,
    host_template, sample_expansion, unknown_placeholder,
};

pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// RFC 8461 §3.2: max_age at most 31557600 seconds (about a year).
const MAX_MTA_STS_AGE_SECS: i64 = 31_557_600;
/// Limits that keep a hostile or mistaken config from ballooning documents.
const MAX_TEXT_CHARS: usize = 200;
const MAX_URL_BYTES: usize = 2048;

/// One thing wrong (or, as a warning, risky) in the config, at one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

#[derive(Default)]
pub(super) struct Problems {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Problems {
    pub(super) fn error(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(Problem {
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub(super) fn warn(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(Problem {
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub(super) fn unknown(&mut self, prefix: &str, unknown: &Unknown) {
        for key in unknown.keys() {
            let key = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            self.error(key, "unknown key");
        }
    }
}

pub fn validate(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    p.unknown("", &raw.unknown);
    let server = server_section(raw.server, &mut p);
    let tls = tls_section(raw.tls, &mut p);
    let acme = acme_section(raw.acme, &mut p);
    let limits = limits_section(raw.limits, &mut p);
    let state = super::state::state_section(raw.state, &mut p);

    if raw.provider.is_empty() {
        p.error("provider", "at least one [[provider]] is required");
    }
    let mut providers = Vec::new();
    let mut by_domain: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut domain_owner: HashMap<String, usize> = HashMap::new();
    let mut bare_domains = HashSet::new();
    let mut domain_sources = Vec::new();
    let mut user_sources = Vec::new();
    for (i, mut rp) in raw.provider.into_iter().enumerate() {
        let key = format!("provider[{i}]");
        let bare = rp.bare_domain.take();
        let source = rp.domains_from.take();
        let users = rp.users_from.take();
        let has_source = source.is_some();
        let Some(provider) = provider(&key, rp, has_source, &mut p) else {
            continue;
        };
        if let Some(raw_users) = users {
            user_sources.extend(super::users::user_source(
                &format!("{key}.users_from"),
                providers.len(),
                raw_users,
                &mut p,
            ));
        }
        if let Some(raw_source) = source {
            domain_sources.extend(super::sources::domain_source(
                &format!("{key}.domains_from"),
                providers.len(),
                raw_source,
                &mut p,
            ));
        }
        bare_domains.extend(bare_domain(&key, bare, &provider, &mut p));
        if let Some(first) = ids.insert(provider.id.clone(), i) {
            p.error(
                format!("{key}.id"),
                format!("\"{}\" is already used by provider[{first}]", provider.id),
            );
        }
        for (j, d) in provider.domains.iter().enumerate() {
            match domain_owner.get(d) {
                Some(&owner) => p.error(
                    format!("{key}.domains[{j}]"),
                    format!("\"{d}\" is already served by provider[{owner}]"),
                ),
                None => {
                    domain_owner.insert(d.clone(), i);
                    by_domain.insert(d.clone(), providers.len());
                }
            }
        }
        providers.push(provider);
    }
    if tls.mode == TlsMode::Files && tls.files.is_empty() {
        p.error(
            "tls.files",
            "tls.mode = \"files\" needs at least one [[tls.files]] entry",
        );
    }

    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    Ok(Config {
        server,
        tls,
        acme,
        limits,
        state,
        providers,
        warnings: p.warnings,
        by_domain,
        bare_domains,
        domain_sources,
        user_sources,
    })
}

/// `bare_domain`: which of the provider's mail domains are served under their
/// own name (`https://D/...`) and put into their certificate. Opt-in, because
/// a certificate order for D fails unless D's address points here.
fn bare_domain(
    key: &str,
    raw: Option<BoolOrList>,
    provider: &Provider,
    p: &mut Problems,
) -> Vec<String> {
    match raw {
        None | Some(BoolOrList::Bool(false)) => Vec::new(),
        Some(BoolOrList::Bool(true)) => provider.domains.clone(),
        Some(BoolOrList::List(list)) => {
            let mut out = Vec::new();
            for (j, d) in list.iter().enumerate() {
                let k = format!("{key}.bare_domain[{j}]");
                match normalize_domain(d) {
                    Ok(d) if provider.domains.contains(&d) => out.push(d),
                    Ok(d) => p.error(k, format!("\"{d}\" is not one of this provider's domains")),
                    Err(e) => p.error(k, format!("\"{d}\": {e}")),
                }
            }
            out
        }
    }
}

fn server_section(raw: RawServerSection, p: &mut Problems) -> ServerConfig {
    p.unknown("server", &raw.unknown);
    let listen = |key: &str, values: Option<Vec<String>>, default: &str, p: &mut Problems| {
        let values = values.unwrap_or_else(|| vec![default.to_owned()]);
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v.parse::<SocketAddr>() {
                Ok(a) => out.push(a),
                Err(_) => p.error(
                    format!("server.{key}[{i}]"),
                    format!(
                        "\"{v}\" is not an address:port such as \"[::]:443\" or \"127.0.0.1:8443\""
                    ),
                ),
            }
        }
        out
    };
    let http_listen = listen("http_listen", raw.http_listen, "[::]:80", p);
    let https_listen = listen("https_listen", raw.https_listen, "[::]:443", p);
    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| "/var/lib/mailconfd".to_owned());
    if state_dir.trim().is_empty() {
        p.error("server.state_dir", "must not be empty");
    }
    let mut trusted_proxies = Vec::new();
    for (i, v) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        match parse_ipnet(v) {
            Some(net) => trusted_proxies.push(net),
            None => p.error(
                format!("server.trusted_proxies[{i}]"),
                format!("\"{v}\" is not an IP address or CIDR range"),
            ),
        }
    }
    let public_name = raw.public_name.and_then(|n| match normalize_domain(&n) {
        Ok(n) => Some(n),
        Err(e) => {
            p.error("server.public_name", e.to_string());
            None
        }
    });
    let user = raw.user.filter(|u| {
        let ok = !u.is_empty()
            && u.len() <= 32
            && u.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            p.error("server.user", format!("\"{u}\" is not a user name"));
        }
        ok
    });
    let metrics_listen = raw
        .metrics_listen
        .and_then(|v| match v.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.error(
                    "server.metrics_listen",
                    format!("\"{v}\" is not an address:port such as \"127.0.0.1:9465\""),
                );
                None
            }
        });
    ServerConfig {
        metrics_listen,
        user,
        http_listen,
        https_listen,
        state_dir: PathBuf::from(state_dir),
        trusted_proxies,
        public_name,
    }
}

fn parse_ipnet(s: &str) -> Option<IpNet> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = len.unwrap_or(max);
    (prefix_len <= max).then_some(IpNet { addr, prefix_len })
}

fn tls_section(raw: RawTls, p: &mut Problems) -> TlsConfig {
    p.unknown("tls", &raw.unknown);
    let mode = match raw.mode.as_deref().unwrap_or("acme") {
        "acme" => TlsMode::Acme,
        "files" => TlsMode::Files,
        "local" => TlsMode::Local,
        "off" => TlsMode::Off,
        other => {
            p.error(
                "tls.mode",
                format!("\"{other}\" is not one of acme, files, local, off"),
            );
            TlsMode::Off
        }
    };
    let key_type = match raw.key_type.as_deref().unwrap_or("ecdsa-p256") {
        "ecdsa-p256" => KeyType::EcdsaP256,
        "rsa-2048" => KeyType::Rsa2048,
        other => {
            p.error(
                "tls.key_type",
                format!("\"{other}\" is not one of ecdsa-p256, rsa-2048"),
            );
            KeyType::EcdsaP256
        }
    };
    let mut files = Vec::new();
    for (i, f) in raw.files.into_iter().enumerate() {
        let key = format!("tls.files[{i}]");
        p.unknown(&key, &f.unknown);
        match (f.cert, f.key) {
            (Some(cert), Some(k)) => files.push(CertFiles {
                cert: cert.into(),
                key: k.into(),
            }),
            (None, _) => p.error(format!("{key}.cert"), "is required"),
            (_, None) => p.error(format!("{key}.key"), "is required"),
        }
    }
    TlsConfig {
        mode,
        files,
        key_type,
    }
}

fn acme_section(raw: RawAcme, p: &mut Problems) -> AcmeConfig {
    p.unknown("acme", &raw.unknown);
    let directory_url = match raw.directory.as_deref().unwrap_or("letsencrypt") {
        "letsencrypt" => LETSENCRYPT.to_owned(),
        "letsencrypt-staging" => LETSENCRYPT_STAGING.to_owned(),
        url if url.starts_with("https://") && url.len() > 8 => url.to_owned(),
        other => {
            p.error(
                "acme.directory",
                format!(
                    "\"{other}\" is neither letsencrypt, letsencrypt-staging nor an https:// URL"
                ),
            );
            String::new()
        }
    };
    let contact = raw.contact.unwrap_or_default();
    for (i, c) in contact.iter().enumerate() {
        let ok = c
            .strip_prefix("mailto:")
            .is_some_and(|a| crate::address::EmailAddress::parse(a).is_ok());
        if !ok {
            p.error(
                format!("acme.contact[{i}]"),
                format!("\"{c}\" is not a mailto: URI with a valid address"),
            );
        }
    }
    let challenge = match raw.challenge.as_deref().unwrap_or("tls-alpn-01") {
        "tls-alpn-01" => Challenge::TlsAlpn01,
        "http-01" => Challenge::Http01,
        other => {
            p.error(
                "acme.challenge",
                format!("\"{other}\" is not one of tls-alpn-01, http-01"),
            );
            Challenge::TlsAlpn01
        }
    };
    let eab = match (raw.eab_kid, raw.eab_hmac_key) {
        (None, None) => None,
        (Some(kid), Some(key)) => {
            match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key.trim_end_matches('='))
            {
                Ok(hmac_key) if !hmac_key.is_empty() && !kid.is_empty() => {
                    Some(ExternalAccountBinding { kid, hmac_key })
                }
                _ => {
                    p.error(
                        "acme.eab_hmac_key",
                        "must be the base64url HMAC key the CA gave you",
                    );
                    None
                }
            }
        }
        (Some(_), None) => {
            p.error("acme.eab_hmac_key", "is required with acme.eab_kid");
            None
        }
        (None, Some(_)) => {
            p.error("acme.eab_kid", "is required with acme.eab_hmac_key");
            None
        }
    };
    let max_concurrent_orders = match raw.max_concurrent_orders.unwrap_or(5) {
        n @ 1..=100 => n as usize,
        _ => {
            p.error("acme.max_concurrent_orders", "must be 1-100");
            1
        }
    };
    let new_orders_per_3h = match raw.new_orders_per_3h.unwrap_or(300) {
        n @ 1..=1_000_000 => n as u32,
        _ => {
            p.error("acme.new_orders_per_3h", "must be 1-1000000");
            1
        }
    };
    AcmeConfig {
        directory_url,
        contact,
        ca_file: raw.ca_file.map(PathBuf::from),
        challenge,
        eab,
        max_concurrent_orders,
        new_orders_per_3h,
    }
}

fn limits_section(raw: RawLimits, p: &mut Problems) -> LimitsConfig {
    p.unknown("limits", &raw.unknown);
    let d = LimitsConfig::default();
    let mut int = |key: &str, value: Option<i64>, default: u64, min: u64, max: u64| -> u64 {
        match value {
            None => default,
            Some(n) if (min as i64..=max as i64).contains(&n) => n as u64,
            Some(_) => {
                p.error(format!("limits.{key}"), format!("must be {min}-{max}"));
                default
            }
        }
    };
    let limits = LimitsConfig {
        max_connections: int(
            "max_connections",
            raw.max_connections,
            d.max_connections as u64,
            1,
            1_000_000,
        ) as usize,
        max_connections_per_client: int(
            "max_connections_per_client",
            raw.max_connections_per_client,
            d.max_connections_per_client as u64,
            1,
            1_000_000,
        ) as usize,
        ipv6_client_prefix: int("ipv6_client_prefix", raw.ipv6_client_prefix, 64, 16, 128) as u8,
        connections_per_second: int(
            "connections_per_second",
            raw.connections_per_second,
            d.connections_per_second.into(),
            1,
            1_000_000,
        ) as u32,
        connection_burst: int(
            "connection_burst",
            raw.connection_burst,
            d.connection_burst.into(),
            1,
            1_000_000,
        ) as u32,
        requests_per_second: int(
            "requests_per_second",
            raw.requests_per_second,
            d.requests_per_second.into(),
            1,
            1_000_000,
        ) as u32,
        request_burst: int(
            "request_burst",
            raw.request_burst,
            d.request_burst.into(),
            1,
            1_000_000,
        ) as u32,
    };
    if limits.max_connections_per_client > limits.max_connections {
        p.error(
            "limits.max_connections_per_client",
            "must not be larger than limits.max_connections",
        );
    }
    limits
}

fn provider(key: &str, raw: RawProvider, has_source: bool, p: &mut Problems) -> Option<Provider> {
    let errors_before = p.errors.len();
    p.unknown(key, &raw.unknown);
    let id = match raw.id.as_deref().map(normalize_domain) {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            p.error(
                format!("{key}.id"),
                format!("must be hostname-like (Thunderbird rejects anything else): {e}"),
            );
            String::new()
        }
        None => {
            p.error(format!("{key}.id"), "is required");
            String::new()
        }
    };
    let name = text(&format!("{key}.name"), raw.name, p).unwrap_or_default();
    let short_name = match raw.short_name {
        Some(s) => text(&format!("{key}.short_name"), Some(s), p).unwrap_or_default(),
        None => name.clone(),
    };
    let mut domains = Vec::new();
    match raw.domains {
        Some(list) if !list.is_empty() => {
            // A hoster lists thousands of domains: a set, not Vec::contains.
            let mut seen = std::collections::HashSet::new();
            for (j, d) in list.iter().enumerate() {
                match normalize_domain(d) {
                    Ok(d) if !seen.insert(d.clone()) => p.error(
                        format!("{key}.domains[{j}]"),
                        format!("\"{d}\" is listed twice"),
                    ),
                    Ok(d) => domains.push(d),
                    Err(e) => p.error(format!("{key}.domains[{j}]"), format!("\"{d}\": {e}")),
                }
            }
        }
        // Domains may all come from [provider.domains_from].
        _ if has_source => {}
        _ => p.error(
            format!("{key}.domains"),
            "at least one mail domain is required (or a [provider.domains_from] source)",
        ),
    }
    let mut servers = Vec::new();
    let server_count = raw.server.len();
    for (j, rs) in raw.server.into_iter().enumerate() {
        if let Some(s) = server(&format!("{key}.server[{j}]"), rs, p) {
            servers.push(s);
        }
    }
    // A server already reported as broken must not also count as "missing".
    let all_servers_valid = servers.len() == server_count;
    if all_servers_valid && !servers.iter().any(|s| s.kind.is_incoming()) {
        p.error(
            format!("{key}.server"),
            "needs at least one imap or pop3 server (every client requires one)",
        );
    }
    if all_servers_valid && !servers.iter().any(|s| s.kind == ServerKind::Smtp) {
        p.error(
            format!("{key}.server"),
            "needs at least one smtp server (Thunderbird and Apple require one)",
        );
    }
    quirk_warnings(key, &servers, p);
    super::standards::jmap_urls(key, &servers, p);
    let publish_pacc = raw.pacc.unwrap_or(false);
    let oauth2 = raw
        .oauth2
        .and_then(|o| super::standards::oauth2(&format!("{key}.oauth2"), o, &servers, p));
    let mta_sts = raw
        .mta_sts
        .and_then(|m| mta_sts(&format!("{key}.mta_sts"), m, p));
    let logo_url = raw
        .logo_url
        .and_then(|u| url(&format!("{key}.logo_url"), &u, p));
    let support = raw.support.and_then(|s| {
        let ok = s.starts_with("https://")
            || s.starts_with("http://")
            || crate::address::EmailAddress::parse(s.trim_start_matches("mailto:")).is_ok();
        if ok && s.len() <= MAX_URL_BYTES && !s.chars().any(char::is_control) {
            Some(s)
        } else {
            p.error(
                format!("{key}.support"),
                "must be an http(s) URL or an e-mail address",
            );
            None
        }
    });
    (p.errors.len() == errors_before)
        .then_some(Provider {
            id,
            name,
            short_name,
            domains,
            servers,
            mta_sts,
            logo_url,
            support,
            oauth2,
            publish_pacc,
            user_display_name: None,
        })
        .inspect(|provider| super::standards::pacc_warning(key, provider, p))
}

/// A display string: required, bounded, printable.
fn text(key: &str, value: Option<String>, p: &mut Problems) -> Option<String> {
    let Some(v) = value else {
        p.error(key, "is required");
        return None;
    };
    let v = v.trim().to_owned();
    if v.is_empty() {
        p.error(key, "must not be empty");
    } else if v.chars().count() > MAX_TEXT_CHARS {
        p.error(key, format!("longer than {MAX_TEXT_CHARS} characters"));
    } else if v.chars().any(char::is_control) {
        p.error(key, "must not contain control characters");
    } else {
        return Some(v);
    }
    None
}

pub(super) fn url(key: &str, u: &str, p: &mut Problems) -> Option<String> {
    let scheme_ok = u.starts_with("https://") || u.starts_with("http://");
    let host = u
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    let host_ok = host.is_some_and(|h| {
        let h = h
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(h, |(h, _)| h);
        check_hostname(&sample_expansion(h).to_ascii_lowercase()).is_ok()
    });
    if !scheme_ok
        || !host_ok
        || u.len() > MAX_URL_BYTES
        || u.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '<' || c == '>')
    {
        p.error(
            key,
            format!("\"{u}\" is not an absolute http(s) URL with a valid host name"),
        );
        return None;
    }
    if !check_placeholders(key, u, p) {
        return None;
    }
    Some(u.to_owned())
}

/// Every `%WORD%` must be a known placeholder.
fn check_placeholders(key: &str, s: &str, p: &mut Problems) -> bool {
    match unknown_placeholder(s) {
        Some(token) => {
            p.error(
                key,
                format!(
                    "unknown placeholder {token} (known: {})",
                    PLACEHOLDERS.join(", ")
                ),
            );
            false
        }
        None => true,
    }
}

fn server(key: &str, raw: RawServer, p: &mut Problems) -> Option<Server> {
    let errors_before = p.errors.len();
    p.unknown(key, &raw.unknown);
    let kind = match raw.kind.as_deref() {
        Some(t) => match ServerKind::from_config_name(t) {
            Some(k) => k,
            None => {
                p.error(
                    format!("{key}.type"),
                    format!("\"{t}\" is not one of imap, pop3, smtp, caldav, carddav, activesync"),
                );
                return None;
            }
        },
        None => {
            p.error(format!("{key}.type"), "is required");
            return None;
        }
    };
    let endpoint = if kind.uses_url() {
        for (field, present) in [
            ("host", raw.host.is_some()),
            ("port", raw.port.is_some()),
            ("security", raw.security.is_some()),
        ] {
            if present {
                p.error(
                    format!("{key}.{field}"),
                    format!(
                        "{} servers are given by url, not {field}",
                        kind.config_name()
                    ),
                );
            }
        }
        match raw.url {
            Some(u) => Endpoint::Url(url(&format!("{key}.url"), &u, p).unwrap_or_default()),
            None => {
                p.error(
                    format!("{key}.url"),
                    format!("is required for {} servers", kind.config_name()),
                );
                Endpoint::Url(String::new())
            }
        }
    } else {
        if raw.url.is_some() {
            p.error(
                format!("{key}.url"),
                format!(
                    "{} servers are given by host and port, not url",
                    kind.config_name()
                ),
            );
        }
        let security = match raw.security.as_deref() {
            None => Security::Tls,
            Some(s) => Security::from_config_name(s).unwrap_or_else(|| {
                p.error(
                    format!("{key}.security"),
                    format!("\"{s}\" is not one of tls, starttls, plain"),
                );
                Security::Tls
            }),
        };
        let host = match raw.host {
            Some(h) => {
                let lower = h.trim().trim_end_matches('.').to_owned();
                let normalized = if check_placeholders(&format!("{key}.host"), &lower, p) {
                    host_template(&lower)
                } else {
                    Ok(lower.clone())
                };
                match normalized {
                    Ok(h) => h,
                    Err(e) => {
                        p.error(format!("{key}.host"), format!("\"{h}\": {e}"));
                        String::new()
                    }
                }
            }
            None => {
                p.error(format!("{key}.host"), "is required");
                String::new()
            }
        };
        let port = match raw.port {
            Some(n @ 1..=65535) => n as u16,
            Some(_) => {
                p.error(format!("{key}.port"), "must be 1-65535");
                0
            }
            None => kind
                .default_port(security)
                .expect("mail server kinds have default ports"),
        };
        Endpoint::Host {
            host,
            port,
            security,
        }
    };
    let auth_names = raw
        .auth
        .map(|a| a.into_vec())
        .unwrap_or_else(|| vec!["password-cleartext".to_owned()]);
    let mut auth = Vec::new();
    if auth_names.is_empty() {
        p.error(format!("{key}.auth"), "must name at least one method");
    }
    for name in &auth_names {
        match Auth::from_name(name) {
            Some(a) if auth.contains(&a) => {
                p.error(format!("{key}.auth"), format!("\"{name}\" is listed twice"))
            }
            Some(a) => auth.push(a),
            None => p.error(
                format!("{key}.auth"),
                format!(
                    "\"{name}\" is not one of {}",
                    Auth::ALL.map(Auth::thunderbird_name).join(", ")
                ),
            ),
        }
    }
    let username = raw.username.unwrap_or_else(|| "%EMAILADDRESS%".to_owned());
    if username.chars().any(char::is_control) || username.len() > MAX_TEXT_CHARS {
        p.error(
            format!("{key}.username"),
            "must be printable and at most 200 characters",
        );
    }
    check_placeholders(&format!("{key}.username"), &username, p);
    (p.errors.len() == errors_before).then_some(Server {
        kind,
        endpoint,
        auth,
        username,
    })
}

/// Warnings for configurations that are valid but that a known client mishandles.
fn quirk_warnings(key: &str, servers: &[Server], p: &mut Problems) {
    for (j, s) in servers.iter().enumerate() {
        let skey = format!("{key}.server[{j}]");
        if let Some((_, _, Security::Plain)) = s.host_port() {
            if matches!(s.kind, ServerKind::Imap | ServerKind::Smtp) {
                p.warn(format!("{skey}.security"), "\"plain\" makes Thunderbird for Android reject the whole autoconfig document, not just this server");
            } else {
                p.warn(
                    format!("{skey}.security"),
                    "\"plain\" sends passwords unencrypted; clients warn or refuse",
                );
            }
        }
        if s.auth.first() == Some(&Auth::OAuth2) && !s.auth.iter().any(|a| a.uses_password()) {
            p.warn(format!("{skey}.auth"), "OAuth2 without a password method after it: Thunderbird drops OAuth2 for servers it does not know and then rejects this server; add \"password-cleartext\"");
        }
        if s.kind.is_incoming() || s.kind == ServerKind::Smtp {
            let android_ok = s.auth.iter().any(|a| {
                matches!(
                    a,
                    Auth::OAuth2 | Auth::PasswordCleartext | Auth::PasswordEncrypted
                )
            });
            if !android_ok && s.kind != ServerKind::Pop3 {
                p.warn(format!("{skey}.auth"), "Thunderbird for Android needs OAuth2, password-cleartext or password-encrypted and rejects the whole document otherwise");
            }
        }
    }
    for kind in [ServerKind::Imap, ServerKind::Pop3, ServerKind::Smtp] {
        let count = servers.iter().filter(|s| s.kind == kind).count();
        if count > 1 {
            p.warn(format!("{key}.server"), format!("{count} {} servers: Evolution takes the last one listed, other clients the first", kind.config_name()));
        }
    }
}

fn mta_sts(key: &str, raw: RawMtaSts, p: &mut Problems) -> Option<MtaSts> {
    let errors_before = p.errors.len();
    p.unknown(key, &raw.unknown);
    let mode = match raw.mode.as_deref() {
        Some("enforce") => MtaStsMode::Enforce,
        Some("testing") => MtaStsMode::Testing,
        Some("none") => MtaStsMode::None,
        Some(other) => {
            p.error(
                format!("{key}.mode"),
                format!("\"{other}\" is not one of enforce, testing, none"),
            );
            MtaStsMode::None
        }
        None => {
            p.error(format!("{key}.mode"), "is required");
            MtaStsMode::None
        }
    };
    let mut mx = Vec::new();
    for (i, m) in raw.mx.unwrap_or_default().iter().enumerate() {
        let (wildcard, rest) = match m.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, m.as_str()),
        };
        match normalize_domain(rest) {
            Ok(h) => mx.push(if wildcard { format!("*.{h}") } else { h }),
            Err(e) => p.error(format!("{key}.mx[{i}]"), format!("\"{m}\": {e}")),
        }
    }
    if mx.is_empty() && mode != MtaStsMode::None {
        p.error(
            format!("{key}.mx"),
            "at least one MX host is required unless mode = \"none\"",
        );
    }
    let max_age = match raw.max_age {
        Some(n @ 0..=MAX_MTA_STS_AGE_SECS) => n as u32,
        Some(_) => {
            p.error(
                format!("{key}.max_age"),
                format!("must be 0-{MAX_MTA_STS_AGE_SECS} seconds (RFC 8461)"),
            );
            0
        }
        None => 604_800,
    };
    let mut tlsrpt_rua = Vec::new();
    for (i, r) in raw.tlsrpt_rua.unwrap_or_default().iter().enumerate() {
        // Stored with an A-label domain: the TXT record must be ASCII (RFC 8460 §3).
        let normalized = match r.strip_prefix("mailto:") {
            Some(a) => crate::address::EmailAddress::parse(a)
                .ok()
                .map(|a| format!("mailto:{a}")),
            None => (r.starts_with("https://")
                && r.is_ascii()
                && !r.contains([',', ';', ' ', '"', '!']))
            .then(|| r.clone()),
        };
        match normalized {
            Some(n) => tlsrpt_rua.push(n),
            None => p.error(
                format!("{key}.tlsrpt_rua[{i}]"),
                format!("\"{r}\" is not a mailto: or https: URI"),
            ),
        }
    }
    (p.errors.len() == errors_before).then_some(MtaSts {
        mode,
        mx,
        max_age,
        tlsrpt_rua,
    })
}
