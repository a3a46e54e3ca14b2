//! Where a provider's domains live besides `domains = [...]`
//! (`[provider.domains_from]`): a file with one domain per line (Postfix's
//! `virtual_mailbox_domains` style), an SQL query (PostgreSQL, MySQL/MariaDB,
//! SQLite) or an LDAP search. This module validates the settings and merges
//! fetched lists into a config; fetching is `crate::sources`' job.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::Config;
use super::raw::RawDomainSource;
use super::validate::Problems;
use crate::address::normalize_domain;

/// Default refresh interval of SQL and LDAP sources (files are also watched).
pub const DEFAULT_REFRESH_SECS: u64 = 300;
/// Domains one source may contribute; a runaway query must not eat the memory.
pub const MAX_SOURCE_DOMAINS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSource {
    /// Index of the provider in `Config::providers` the domains join.
    pub provider: usize,
    pub kind: SourceKind,
    /// Re-read this often (and on SIGHUP).
    pub refresh_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// One domain per line; `#` starts a comment; blank lines are skipped.
    File { path: PathBuf },
    /// `query` returns the domains in its first column.
    Sql {
        url: String,
        password_file: Option<PathBuf>,
        query: String,
    },
    /// Each entry under `base` matching `filter` contributes the values of `attribute`.
    Ldap {
        url: String,
        base: String,
        filter: String,
        attribute: String,
        bind_dn: Option<String>,
        bind_password_file: Option<PathBuf>,
        starttls: bool,
        /// A private CA to trust besides the system's roots.
        ca_file: Option<PathBuf>,
    },
}

impl DomainSource {
    /// A short description without secrets, for logs and `check`.
    pub fn describe(&self) -> String {
        match &self.kind {
            SourceKind::File { path } => format!("file {}", path.display()),
            SourceKind::Sql { url, .. } => format!("sql {}", redact_url(url)),
            SourceKind::Ldap { url, base, .. } => format!("ldap {} base {base}", redact_url(url)),
        }
    }
}

/// A URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// `sql = "..."` of a domain or user source: a scheme sqlx knows, and a
/// warning when the URL itself holds a password.
pub(super) fn check_sql_url(key: &str, url: &str, p: &mut Problems) {
    const SCHEMES: [&str; 5] = [
        "postgres://",
        "postgresql://",
        "mysql://",
        "mariadb://",
        "sqlite:",
    ];
    if !SCHEMES.iter().any(|s| url.starts_with(s)) {
        p.error(
            key,
            "must be a postgresql://, mysql://, mariadb:// or sqlite: URL",
        );
    }
    if redact_url(url) != url {
        p.warn(
            key,
            "the URL holds a password in this world-readable file: use password_file (or a systemd credential) instead",
        );
    }
}

/// LDAP settings shared by domain and user sources: a simple bind needs
/// both the DN and the password file (an anonymous bind needs neither).
pub(super) fn check_ldap(
    key: &str,
    (url, starttls): (&str, bool),
    bind_dn: Option<&str>,
    password_file: Option<&str>,
    p: &mut Problems,
) {
    let host = url
        .strip_prefix("ldap://")
        .map(|rest| rest.split(['/', ':']).next().unwrap_or(""));
    let loopback = |h: &str| h == "localhost" || h.starts_with("127.") || h.starts_with("[::1]");
    if bind_dn.is_some() && !starttls && host.is_some_and(|h| !loopback(h)) {
        p.warn(
            format!("{key}.starttls"),
            "the bind password would cross the network in clear text: set starttls = true or use ldaps://",
        );
    }
    match (bind_dn, password_file) {
        (Some(_), None) => p.error(
            format!("{key}.password_file"),
            "is required with bind_dn (the bind password, never in this file)",
        ),
        (None, Some(_)) => p.error(
            format!("{key}.bind_dn"),
            "is required with password_file (whom the password is for)",
        ),
        _ => {}
    }
}

/// The URL as sqlx's `Any` driver takes it (MariaDB speaks MySQL's protocol).
pub(super) fn sqlx_url(url: &str) -> String {
    url.replacen("mariadb://", "mysql://", 1)
}

pub(super) fn domain_source(
    key: &str,
    provider: usize,
    raw: RawDomainSource,
    p: &mut Problems,
) -> Option<DomainSource> {
    p.unknown(key, &raw.unknown);
    let refresh_secs = match raw.refresh_secs {
        None => DEFAULT_REFRESH_SECS,
        Some(s) if (5..=86_400).contains(&s) => s as u64,
        Some(_) => {
            p.error(format!("{key}.refresh_secs"), "must be 5-86400");
            DEFAULT_REFRESH_SECS
        }
    };
    let kinds = [raw.file.is_some(), raw.sql.is_some(), raw.ldap.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        p.error(key.to_owned(), "needs exactly one of file, sql, ldap");
        return None;
    }
    let nonempty = |name: &str, v: Option<String>, p: &mut Problems| -> Option<String> {
        match v {
            Some(v) if !v.trim().is_empty() => Some(v),
            _ => {
                p.error(format!("{key}.{name}"), "is required and must not be empty");
                None
            }
        }
    };
    if raw.ca_file.is_some() && raw.ldap.is_none() {
        p.error(format!("{key}.ca_file"), "is for ldap sources only");
    }
    let kind = if let Some(path) = raw.file {
        if raw.query.is_some() || raw.base.is_some() {
            p.error(key.to_owned(), "file takes no query, base or filter");
        }
        SourceKind::File {
            path: PathBuf::from(nonempty("file", Some(path), p)?),
        }
    } else if let Some(url) = raw.sql {
        check_sql_url(&format!("{key}.sql"), &url, p);
        let query = nonempty("query", raw.query, p)?;
        SourceKind::Sql {
            url: sqlx_url(&url),
            password_file: raw.password_file.map(PathBuf::from),
            query,
        }
    } else {
        let url = raw.ldap.expect("counted above");
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            p.error(format!("{key}.ldap"), "must be an ldap:// or ldaps:// URL");
        }
        let starttls = raw.starttls.unwrap_or(false);
        if starttls && url.starts_with("ldaps://") {
            p.error(format!("{key}.starttls"), "ldaps:// is already TLS");
        }
        let filter = raw.filter.unwrap_or_else(|| "(objectClass=*)".to_owned());
        check_ldap(
            key,
            (&url, starttls),
            raw.bind_dn.as_deref(),
            raw.password_file.as_deref(),
            p,
        );
        if ldap3::parse_filter(&filter).is_err() {
            p.error(format!("{key}.filter"), "is not an LDAP filter (RFC 4515)");
        }
        SourceKind::Ldap {
            url,
            base: nonempty("base", raw.base, p)?,
            filter,
            attribute: nonempty("attribute", raw.attribute, p)?,
            bind_dn: raw.bind_dn,
            bind_password_file: raw.password_file.map(PathBuf::from),
            starttls,
            ca_file: raw.ca_file.map(PathBuf::from),
        }
    };
    Some(DomainSource {
        provider,
        kind,
        refresh_secs,
    })
}

/// Turns fetched text lines into domains: normalized A-labels, comments and
/// blank lines skipped, duplicates dropped. Bad lines are returned as problems.
pub fn normalize_list<'a>(lines: impl IntoIterator<Item = &'a str>) -> (Vec<String>, Vec<String>) {
    let mut seen = HashSet::new();
    let mut domains = Vec::new();
    let mut bad = Vec::new();
    for line in lines {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match normalize_domain(entry) {
            Ok(d) => {
                if seen.insert(d.clone()) {
                    domains.push(d);
                }
            }
            Err(e) => bad.push(format!("{entry:?}: {e}")),
        }
        if domains.len() >= MAX_SOURCE_DOMAINS {
            bad.push(format!(
                "more than {MAX_SOURCE_DOMAINS} domains: the rest is ignored"
            ));
            break;
        }
    }
    (domains, bad)
}

impl Config {
    /// This config with each source's domains added to its provider (keyed
    /// by provider id, which survives reloads). A domain another provider
    /// already serves stays with that provider (returned as a problem); the
    /// file's own `domains` always win.
    pub fn with_source_domains(
        &self,
        lists: &HashMap<String, std::sync::Arc<Vec<String>>>,
    ) -> (Config, Vec<String>) {
        let mut merged = self.clone();
        let mut problems = Vec::new();
        let mut ids: Vec<&String> = lists.keys().collect();
        ids.sort();
        for id in ids {
            let Some(i) = merged.providers.iter().position(|p| &p.id == id) else {
                continue;
            };
            let provider = &mut merged.providers[i];
            for d in lists[id].iter() {
                match merged.by_domain.get(d) {
                    Some(&owner) if owner == i => {}
                    Some(&owner) => problems.push(format!(
                        "{d} comes from provider[{i}]'s source but provider[{owner}] serves it"
                    )),
                    None => {
                        merged.by_domain.insert(d.clone(), i);
                        provider.domains.push(d.clone());
                    }
                }
            }
        }
        (merged, problems)
    }
}
