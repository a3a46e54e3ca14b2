//! The config file: read TOML, validate everything, hand out an immutable `Config`.
//!
//! `load` never half-succeeds: either every key is valid and a `Config` comes
//! back, or a `ConfigError` lists every problem as `key.path: reason`. Quirks that
//! some client trips over are not errors; they come back as `Config::warnings`.

mod raw;
pub mod sources;
mod standards;
pub mod state;
pub mod users;
mod validate;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::model::Provider;

pub use validate::Problem;

/// Where the config is read from when neither `-c` nor `MAILCONFD_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/mailconfd/mailconfd.toml";
/// A config file larger than this is refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// A validated configuration. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub acme: AcmeConfig,
    pub limits: LimitsConfig,
    /// `[state]`: sled on this node, or PostgreSQL shared by several.
    pub state: state::StateBackend,
    pub providers: Vec<Provider>,
    /// Client quirks the operator should know about; never fatal.
    pub warnings: Vec<Problem>,
    /// mail domain (A-label) -> index into `providers`.
    by_domain: HashMap<String, usize>,
    /// Mail domains served under their own name too (`bare_domain`, opt-in).
    bare_domains: HashSet<String>,
    /// `[provider.domains_from]`: domains fetched at run time and merged in
    /// with [`Config::with_source_domains`].
    pub domain_sources: Vec<sources::DomainSource>,
    /// `[provider.users_from]`: per-user values looked up by address.
    pub user_sources: Vec<users::UserSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub http_listen: Vec<SocketAddr>,
    pub https_listen: Vec<SocketAddr>,
    pub state_dir: PathBuf,
    /// Proxies whose `X-Forwarded-For` names the client in logs.
    pub trusted_proxies: Vec<IpNet>,
    /// Started as root, become this user once the ports are bound.
    pub user: Option<String>,
    /// The host name that autoconfig/autodiscover/mta-sts names should point at
    /// (used only by `mailconfd dns`).
    pub public_name: Option<String>,
    /// Prometheus metrics, /ready and /live (off when unset).
    pub metrics_listen: Option<SocketAddr>,
}

/// `[limits]`: what one client may hold and how fast it may ask. A client is
/// an IPv4 address or an IPv6 prefix of `ipv6_client_prefix` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Open connections at once, all listeners together.
    pub max_connections: usize,
    /// Open connections at once from one client.
    pub max_connections_per_client: usize,
    /// IPv6 clients are counted by this many leading bits (a host usually owns a /64).
    pub ipv6_client_prefix: u8,
    /// New connections per second from one client (token bucket rate and size).
    pub connections_per_second: u32,
    pub connection_burst: u32,
    /// Requests per second from one client (token bucket rate and size).
    pub requests_per_second: u32,
    pub request_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_connections: 16_384,
            max_connections_per_client: 64,
            ipv6_client_prefix: 64,
            connections_per_second: 20,
            connection_burst: 100,
            requests_per_second: 50,
            request_burst: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Certificates from an ACME CA, obtained and renewed by mailconfd.
    Acme,
    /// Certificates from files (e.g. certbot), names taken from their SANs.
    Files,
    /// A CA of our own in `state_dir`: HTTPS that works without DNS or a public
    /// CA, for trying mailconfd out and for tests.
    Local,
    /// Plain HTTP only, e.g. behind a proxy that terminates TLS.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub mode: TlsMode,
    pub files: Vec<CertFiles>,
    /// Key type for new certificates.
    pub key_type: KeyType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    Rsa2048,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    TlsAlpn01,
    Http01,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    pub directory_url: String,
    pub contact: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub challenge: Challenge,
    pub eab: Option<ExternalAccountBinding>,
    /// Orders in flight at once.
    pub max_concurrent_orders: usize,
    /// New (non-renewal) orders allowed per 3 hours (Let's Encrypt: 300).
    pub new_orders_per_3h: u32,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ExternalAccountBinding {
    pub kid: String,
    /// The HMAC key, decoded from base64url.
    pub hmac_key: Vec<u8>,
}

impl fmt::Debug for ExternalAccountBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccountBinding")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// An address range in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_CONFIG_BYTES} bytes", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {message}", .path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: {} problem(s)", .path.display(), .problems.len())]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// One line per cause, each naming the file and the key: what `check` prints.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => problems
                .iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect(),
            ConfigError::Read { path, source } => {
                vec![format!("{}: cannot read: {source}", path.display())]
            }
            other => vec![other.to_string()],
        }
    }
}

/// Reads and validates the file at `path`.
///
/// # Errors
/// `Read`/`TooLarge` if the file cannot be read, `Syntax` if it is not TOML or a
/// value has the wrong type, `Invalid` with every problem found otherwise.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse(&text).map_err(|e| e.with_path(path))
}

/// Parses and validates config text. Errors carry an empty path; `load` fills it in.
///
/// # Errors
/// As `load`, without `Read`.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: PathBuf::new(),
            message: syntax_message(text, &e),
        })?;
    let raw: raw::RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            ConfigError::Syntax {
                path: PathBuf::new(),
                message: format!("{}: {}", e.path(), e.inner().message()),
            }
        })?;
    validate::validate(raw).map_err(|problems| ConfigError::Invalid {
        path: PathBuf::new(),
        problems,
    })
}

fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}

impl ConfigError {
    fn with_path(self, p: &Path) -> ConfigError {
        let path = p.to_owned();
        match self {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax { path, message },
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid { path, problems },
            other => other,
        }
    }
}

impl Config {
    /// The provider serving mail domain `domain` (lower-case A-labels).
    pub fn provider_for_domain(&self, domain: &str) -> Option<&Provider> {
        self.by_domain.get(domain).map(|&i| &self.providers[i])
    }

    /// The stored spelling of mail domain `domain` and its provider.
    pub fn lookup_domain(&self, domain: &str) -> Option<(&str, &Provider)> {
        let (d, &i) = self.by_domain.get_key_value(domain)?;
        Some((d.as_str(), &self.providers[i]))
    }

    /// Every configured mail domain with its provider, in config order.
    pub fn domains(&self) -> impl Iterator<Item = (&str, &Provider)> {
        self.providers
            .iter()
            .flat_map(|p| p.domains.iter().map(move |d| (d.as_str(), p)))
    }

    /// Whether `https://domain/` is ours: the provider set `bare_domain` for it.
    pub fn serves_bare_domain(&self, domain: &str) -> bool {
        self.bare_domains.contains(domain)
    }

    /// The TLS host names mailconfd answers for, for mail domain `domain`:
    /// autoconfig, autodiscover, mta-sts when the provider publishes a policy,
    /// the domain itself when `bare_domain` enables it, and ua-auto-config
    /// when the provider serves PACC (`pacc = true`).
    pub fn names_for_domain(&self, domain: &str) -> Vec<String> {
        let mut names = vec![
            format!("autoconfig.{domain}"),
            format!("autodiscover.{domain}"),
        ];
        if self
            .provider_for_domain(domain)
            .is_some_and(|p| p.mta_sts.is_some())
        {
            names.push(format!("mta-sts.{domain}"));
        }
        if self.serves_bare_domain(domain) {
            names.push(domain.to_owned());
        }
        // PACC (draft-ietf-mailmaint-pacc-02) is fetched from this fixed name.
        if self
            .provider_for_domain(domain)
            .is_some_and(Provider::serves_pacc)
        {
            names.push(format!("ua-auto-config.{domain}"));
        }
        names
    }
}

#[cfg(test)]
mod tests;
