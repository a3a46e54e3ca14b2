//! Per-user values (login name, display name, and for sharded hosters the
//! IMAP/POP3/SMTP host of that user), looked up by address before rendering.
//!
//! One small trait, [`Directory`]; the backends (`map_file`, `sql`, `ldap`) only
//! answer it. Deadlines, the bounded cache (hits and misses, each with a
//! TTL), fail-open defaults and log rate limits are written once, in
//! [`Guarded`]. An address the directory does not know, a directory that is
//! down or slow: the provider's defaults, exactly as for anyone else, so the
//! answers never reveal which mailboxes exist, and never a 5xx or a hung
//! client. Renderers get the result as plain data ([`UserValues`]).

mod ldap;
mod map_file;
mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::address::EmailAddress;
use crate::config::users::{UserSource, UserSourceKind};

pub use crate::model::UserValues;

/// Answers "what is special about this address?".
pub trait Directory: Send + Sync {
    /// `Ok(None)`: the directory does not know the address.
    fn lookup<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<UserValues>, String>>;
}

/// A directory for a configured source, wrapped in [`Guarded`].
pub fn open(source: &UserSource) -> Guarded {
    let inner: Box<dyn Directory> = match &source.kind {
        UserSourceKind::MapFile { path } => Box::new(map_file::MapFile::new(path.clone())),
        UserSourceKind::Sql {
            url,
            password_file,
            query,
        } => Box::new(sql::Sql::new(
            url.clone(),
            password_file.clone(),
            query.clone(),
        )),
        UserSourceKind::Ldap {
            url,
            base,
            filter,
            bind_dn,
            bind_password_file,
            starttls,
            ca_file,
            attributes,
        } => Box::new(ldap::LdapDirectory::new(
            crate::sources::ldap::Endpoint {
                url: url.clone(),
                starttls: *starttls,
                ca_file: ca_file.clone(),
                bind_dn: bind_dn.clone(),
                password_file: bind_password_file.clone(),
            },
            base.clone(),
            filter.clone(),
            attributes.clone(),
        )),
    };
    Guarded::new(inner, source)
}

/// The directories of the current config, by provider id. Rebuilt (caches
/// emptied) only when `[provider.users_from]` changes in a reload.
#[derive(Default)]
pub struct Registry {
    current: std::sync::Mutex<(Vec<UserSource>, Arc<ByProvider>)>,
}

/// Directories by provider id.
type ByProvider = std::collections::HashMap<String, Arc<Guarded>>;

impl Registry {
    /// The directory of `provider_id` under `config`, if it has one.
    pub fn for_provider(
        &self,
        config: &crate::config::Config,
        provider_id: &str,
    ) -> Option<Arc<Guarded>> {
        if config.user_sources.is_empty() {
            return None;
        }
        let mut current = self
            .current
            .lock()
            .expect("registry lock is never poisoned: no panics while held");
        if current.0 != config.user_sources {
            let map = config
                .user_sources
                .iter()
                .map(|s| (config.providers[s.provider].id.clone(), Arc::new(open(s))))
                .collect();
            *current = (config.user_sources.clone(), Arc::new(map));
        }
        current.1.get(provider_id).cloned()
    }
}

/// Result of a guarded lookup, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Hit,
    Miss,
    Cached,
    Failed,
    TimedOut,
}

/// Deadline, cache and fail-open around a [`Directory`].
pub struct Guarded {
    inner: Box<dyn Directory>,
    timeout: Duration,
    cache: moka::future::Cache<String, Arc<Option<UserValues>>>,
    description: String,
    /// Unix seconds of the last failure log line (at most one per minute).
    last_failure_log: AtomicI64,
}

/// Hits and misses live for different times: a user added to the
/// directory should not wait as long as a renamed host.
struct TtlByAnswer {
    hit: Duration,
    miss: Duration,
}

impl moka::Expiry<String, Arc<Option<UserValues>>> for TtlByAnswer {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Option<UserValues>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() { self.hit } else { self.miss })
    }
}

impl Guarded {
    fn new(inner: Box<dyn Directory>, source: &UserSource) -> Guarded {
        let cache = moka::future::Cache::builder()
            .max_capacity(source.cache_entries)
            .expire_after(TtlByAnswer {
                hit: Duration::from_secs(source.hit_ttl_secs),
                miss: Duration::from_secs(source.miss_ttl_secs),
            })
            .build();
        Guarded {
            inner,
            timeout: Duration::from_millis(source.timeout_ms),
            cache,
            description: source.describe(),
            last_failure_log: AtomicI64::new(i64::MIN),
        }
    }

    /// The user's values, or `None` for the provider's defaults (unknown
    /// address, or the directory failed or was too slow).
    pub async fn lookup(&self, address: &EmailAddress) -> (Option<UserValues>, LookupResult) {
        let key = address.to_string();
        if let Some(cached) = self.cache.get(&key).await {
            return ((*cached).clone(), LookupResult::Cached);
        }
        match tokio::time::timeout(self.timeout, self.inner.lookup(address)).await {
            Ok(Ok(values)) => {
                let result = if values.is_some() {
                    LookupResult::Hit
                } else {
                    LookupResult::Miss
                };
                self.cache.insert(key, Arc::new(values.clone())).await;
                (values, result)
            }
            Ok(Err(e)) => {
                self.log_failure(&e);
                (None, LookupResult::Failed)
            }
            Err(_) => {
                self.log_failure(&format!("no answer within {} ms", self.timeout.as_millis()));
                (None, LookupResult::TimedOut)
            }
        }
    }

    /// Failures are not cached (the next request tries again) but logged
    /// at most once a minute: a dead directory must not flood the journal.
    fn log_failure(&self, error: &str) {
        let now = crate::certs::unix_now();
        let last = self.last_failure_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && self
                .last_failure_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(directory = %self.description, error = %error, "user lookup failed; answering with the provider's defaults (logged once a minute)");
        }
    }
}

#[cfg(test)]
mod tests;
