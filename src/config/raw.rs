//! The config file as written: every field optional and loosely typed, so that
//! validation (not serde) can name each problem with its key path and reason,
//! and report all of them at once. Unknown keys land in `unknown` and are errors
//! too (a typo must not silently fall back to a default).

use std::collections::BTreeMap;

use serde::Deserialize;

pub type Unknown = BTreeMap<String, toml::Value>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServerSection,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub acme: RawAcme,
    #[serde(default)]
    pub provider: Vec<RawProvider>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub state: RawState,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[state]`: which store holds certificates and the ACME account.
#[derive(Debug, Default, Deserialize)]
pub struct RawState {
    pub backend: Option<String>,
    pub url: Option<String>,
    pub password_file: Option<String>,
    pub encryption_key_file: Option<String>,
    pub node: Option<String>,
    pub lease_secs: Option<i64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub max_connections: Option<i64>,
    pub max_connections_per_client: Option<i64>,
    pub ipv6_client_prefix: Option<i64>,
    pub connections_per_second: Option<i64>,
    pub connection_burst: Option<i64>,
    pub requests_per_second: Option<i64>,
    pub request_burst: Option<i64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServerSection {
    pub http_listen: Option<Vec<String>>,
    pub https_listen: Option<Vec<String>>,
    pub state_dir: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub public_name: Option<String>,
    pub user: Option<String>,
    pub metrics_listen: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    pub mode: Option<String>,
    #[serde(default)]
    pub files: Vec<RawCertFiles>,
    pub key_type: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCertFiles {
    pub cert: Option<String>,
    pub key: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAcme {
    pub directory: Option<String>,
    pub contact: Option<Vec<String>>,
    pub ca_file: Option<String>,
    pub challenge: Option<String>,
    pub eab_kid: Option<String>,
    pub eab_hmac_key: Option<String>,
    pub max_concurrent_orders: Option<i64>,
    pub new_orders_per_3h: Option<i64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawProvider {
    pub id: Option<String>,
    pub name: Option<String>,
    pub short_name: Option<String>,
    pub domains: Option<Vec<String>>,
    #[serde(default)]
    pub server: Vec<RawServer>,
    pub mta_sts: Option<RawMtaSts>,
    pub logo_url: Option<String>,
    pub support: Option<String>,
    pub bare_domain: Option<BoolOrList>,
    pub domains_from: Option<RawDomainSource>,
    pub users_from: Option<RawUserSource>,
    pub oauth2: Option<RawOAuth2>,
    pub pacc: Option<bool>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[provider.users_from]`: exactly one of `file`, `sql`, `ldap`.
#[derive(Debug, Default, Deserialize)]
pub struct RawUserSource {
    pub file: Option<String>,
    pub sql: Option<String>,
    pub password_file: Option<String>,
    pub query: Option<String>,
    pub ldap: Option<String>,
    pub base: Option<String>,
    pub filter: Option<String>,
    pub bind_dn: Option<String>,
    pub starttls: Option<bool>,
    pub ca_file: Option<String>,
    pub attributes: Option<RawLdapAttributes>,
    pub timeout_ms: Option<i64>,
    pub cache_entries: Option<i64>,
    pub hit_ttl_secs: Option<i64>,
    pub miss_ttl_secs: Option<i64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[provider.users_from.attributes]`: which LDAP attribute holds each value.
#[derive(Debug, Default, Deserialize)]
pub struct RawLdapAttributes {
    pub login_name: Option<String>,
    pub display_name: Option<String>,
    pub imap_host: Option<String>,
    pub pop3_host: Option<String>,
    pub smtp_host: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[provider.domains_from]`: exactly one of `file`, `sql`, `ldap`.
#[derive(Debug, Default, Deserialize)]
pub struct RawDomainSource {
    pub file: Option<String>,
    pub sql: Option<String>,
    pub ldap: Option<String>,
    pub query: Option<String>,
    pub base: Option<String>,
    pub filter: Option<String>,
    pub attribute: Option<String>,
    pub bind_dn: Option<String>,
    pub password_file: Option<String>,
    pub starttls: Option<bool>,
    pub ca_file: Option<String>,
    pub refresh_secs: Option<i64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `bare_domain = true` or `bare_domain = ["example.com"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BoolOrList {
    Bool(bool),
    List(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub security: Option<String>,
    pub auth: Option<OneOrMany>,
    pub username: Option<String>,
    pub url: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `auth = "x"` or `auth = ["x", "y"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawMtaSts {
    pub mode: Option<String>,
    pub mx: Option<Vec<String>>,
    pub max_age: Option<i64>,
    pub tlsrpt_rua: Option<Vec<String>>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[provider.oauth2]`: where clients get tokens for servers that list OAuth2.
#[derive(Debug, Default, Deserialize)]
pub struct RawOAuth2 {
    pub issuer: Option<String>,
    /// `scope = "a b"` or `scope = ["a", "b"]`.
    pub scope: Option<OneOrMany>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    #[serde(flatten)]
    pub unknown: Unknown,
}
