//! Per-user values for a provider (`[provider.users_from]`): a static map
//! file or an SQL query, with the lookup's deadline and cache bounds.
//! Validation only; the lookups are `crate::directory`'s.

use std::path::PathBuf;

use super::raw::RawUserSource;
use super::sources::{check_sql_url, redact_url, sqlx_url};
use super::validate::Problems;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSource {
    /// Index of the provider in `Config::providers`.
    pub provider: usize,
    pub kind: UserSourceKind,
    /// Longest a lookup may take before the defaults are served.
    pub timeout_ms: u64,
    /// Addresses remembered at most (hits and misses together).
    pub cache_entries: u64,
    pub hit_ttl_secs: u64,
    pub miss_ttl_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSourceKind {
    /// A TOML file: one table per address with `login_name`,
    /// `display_name`, `imap_host`, `pop3_host`, `smtp_host` (all optional).
    MapFile { path: PathBuf },
    /// A query with one parameter (the address), returning any of those
    /// columns by name.
    Sql {
        url: String,
        password_file: Option<PathBuf>,
        query: String,
    },
}

impl UserSource {
    pub fn describe(&self) -> String {
        match &self.kind {
            UserSourceKind::MapFile { path } => format!("map file {}", path.display()),
            UserSourceKind::Sql { url, .. } => format!("sql {}", redact_url(url)),
        }
    }
}

pub(super) fn user_source(
    key: &str,
    provider: usize,
    raw: RawUserSource,
    p: &mut Problems,
) -> Option<UserSource> {
    p.unknown(key, &raw.unknown);
    let mut bounded =
        |name: &str, v: Option<i64>, default: u64, range: std::ops::RangeInclusive<i64>| match v {
            None => default,
            Some(x) if range.contains(&x) => x as u64,
            Some(_) => {
                p.error(
                    format!("{key}.{name}"),
                    format!("must be {}-{}", range.start(), range.end()),
                );
                default
            }
        };
    // Well under a second by default: a client waits for this.
    let timeout_ms = bounded("timeout_ms", raw.timeout_ms, 500, 10..=10_000);
    let cache_entries = bounded("cache_entries", raw.cache_entries, 10_000, 0..=10_000_000);
    let hit_ttl_secs = bounded("hit_ttl_secs", raw.hit_ttl_secs, 300, 1..=86_400);
    let miss_ttl_secs = bounded("miss_ttl_secs", raw.miss_ttl_secs, 60, 1..=86_400);
    let kind = match (raw.file, raw.sql) {
        (Some(path), None) => {
            if raw.query.is_some() || raw.password_file.is_some() {
                p.error(key.to_owned(), "file takes no query or password_file");
            }
            UserSourceKind::MapFile {
                path: PathBuf::from(path),
            }
        }
        (None, Some(url)) => {
            check_sql_url(&format!("{key}.sql"), &url, p);
            let Some(query) = raw.query.filter(|q| !q.trim().is_empty()) else {
                p.error(
                    format!("{key}.query"),
                    "is required: one parameter, the address",
                );
                return None;
            };
            UserSourceKind::Sql {
                url: sqlx_url(&url),
                password_file: raw.password_file.map(PathBuf::from),
                query,
            }
        }
        _ => {
            p.error(key.to_owned(), "needs exactly one of file, sql");
            return None;
        }
    };
    Some(UserSource {
        provider,
        kind,
        timeout_ms,
        cache_entries,
        hit_ttl_secs,
        miss_ttl_secs,
    })
}
