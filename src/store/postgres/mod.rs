//! The shared backend: PostgreSQL, for several nodes serving the same
//! domains (README "Several nodes").
//!
//! Besides what every store holds it carries what nodes must agree on: order
//! leases (one order per domain cluster-wide; a dead node's lease expires
//! after `lease_secs`), challenge answers (any node answers any validation),
//! and a change feed (`feed`) that tells every node within seconds that
//! another one stored a certificate.
//!
//! Requests never touch the database: certificates are served from memory.
//! The database is read at start, when a domain appears, when the feed says
//! something changed, and by the manager around orders. Every call has a
//! deadline (`OP_TIMEOUT`). When the database is unreachable, reads fall back
//! to a local copy (`state_dir/cache`, written through on every read and
//! write) so that a node restarted during an outage still serves; writes
//! fail, and the manager keeps what it must store in memory and retries.
//!
//! The trait is synchronous (sled's is) and callers run it on blocking
//! threads, or briefly inline. sqlx is async, so this store owns a small
//! runtime of its own: every call is spawned there and the caller waits on a
//! channel. That works from any thread, inside another runtime or not,
//! without the "runtime within a runtime" panic of `block_on`.

mod challenges;
mod crypt;
mod feed;
mod health;
mod leases;
mod order_budget;
pub mod schema;
mod store_impl;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row as _};
use tokio::sync::{mpsc, watch};

pub use crypt::Cipher;
pub(crate) use health::Health;
use health::PROBE_EVERY;

use super::{CertRecord, SledStore, Store, StoreError};
use crate::config::state::PostgresState;

/// Longest any one database call may take, connection included.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per node: the manager, the feed and a few challenge lookups.
const POOL_SIZE: u32 = 8;

pub struct PostgresStore {
    runtime: Option<tokio::runtime::Runtime>,
    pool: PgPool,
    url: String,
    node: String,
    lease_secs: u64,
    cipher: Option<Arc<Cipher>>,
    /// This node's copy (absent for one-shot commands, which must not
    /// fight the running daemon for its lock).
    cache: Option<SledStore>,
    schema_ready: AtomicBool,
    health: Arc<Health>,
}

impl PostgresStore {
    /// Connects, migrates the schema, and opens the local cache.
    ///
    /// When the database cannot be reached the store still opens if the
    /// local cache holds something to serve (it logs that it does); a node
    /// with nothing cached refuses, naming `[state].url`.
    ///
    /// # Errors
    /// Bad password or key file, the cache cannot be opened, or the database
    /// is unreachable and nothing is cached.
    pub fn open(settings: &PostgresState, state_dir: &Path) -> anyhow::Result<PostgresStore> {
        PostgresStore::open_with(settings, Some(state_dir))
    }

    /// For one-shot commands (`state export`, `certs`): no local cache, and
    /// an unreachable database is an error.
    ///
    /// # Errors
    /// As `open`.
    pub fn open_uncached(settings: &PostgresState) -> anyhow::Result<PostgresStore> {
        PostgresStore::open_with(settings, None)
    }

    fn open_with(
        settings: &PostgresState,
        state_dir: Option<&Path>,
    ) -> anyhow::Result<PostgresStore> {
        let cipher = match &settings.encryption_key_file {
            Some(path) => Some(Arc::new(
                Cipher::from_file(path).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        };
        let mut options: PgConnectOptions = settings
            .url
            .parse()
            .map_err(|e| anyhow::anyhow!("state.url {}: {e}", settings.describe()))?;
        if let Some(path) = &settings.password_file {
            let password = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("state.password_file {}: {e}", path.display()))?;
            options = options.password(password.trim_end_matches(['\n', '\r']));
        }
        options = options.application_name(&format!("mailconfd {}", settings.node));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mailconfd-state")
            .enable_all()
            .build()?;
        let pool = {
            let _guard = runtime.enter();
            PgPoolOptions::new()
                .max_connections(POOL_SIZE)
                .acquire_timeout(OP_TIMEOUT)
                .connect_lazy_with(options)
        };
        let cache = state_dir.map(SledStore::open_cache).transpose()?;
        let store = PostgresStore {
            runtime: Some(runtime),
            pool,
            url: settings.describe(),
            node: settings.node.clone(),
            lease_secs: settings.lease_secs,
            cipher,
            cache,
            schema_ready: AtomicBool::new(false),
            health: Arc::new(Health::new(settings.describe())),
        };
        match store.ensure_schema() {
            Ok(()) => {
                tracing::info!(url = %store.url, node = %store.node, schema = schema::CURRENT, "shared state database ready");
            }
            Err(e) => {
                let cached = store
                    .cache
                    .as_ref()
                    .and_then(|c| c.dump().ok())
                    .map_or(0, |d| d.certs.len());
                if cached == 0 {
                    anyhow::bail!(
                        "state.url {}: {e}; no local copy{} to serve from meanwhile",
                        store.url,
                        state_dir.map_or(String::new(), |d| format!(
                            " in {}",
                            d.join("cache").display()
                        ))
                    );
                }
                tracing::warn!(url = %store.url, cached, error = %e, "shared state database unreachable at start; serving this node's local copy until it returns");
            }
        }
        Ok(store)
    }

    /// This node's name, as leases and stored certificates carry it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// True while the database answers; changes are logged once each way.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.health.subscribe()
    }

    /// Domains whose certificate another node stored, as they are stored
    /// (LISTEN/NOTIFY, with polling as the fallback). Start it once.
    pub fn changes(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(feed::QUEUE);
        let feed = feed::Feed {
            pool: self.pool.clone(),
            node: self.node.clone(),
            tx,
            health: self.health.clone(),
        };
        self.runtime().spawn(feed.run());
        rx
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// Runs `op` on this store's runtime with the deadline and waits for it.
    fn call<T, F>(&self, op: impl FnOnce(PgPool) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        if !self.health.allow() {
            return Err(StoreError::Unavailable {
                url: self.url.clone(),
                reason: format!(
                    "unreachable (tried again every {} s)",
                    PROBE_EVERY.as_secs()
                ),
            });
        }
        let future = op(self.pool.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let result = tokio::time::timeout(OP_TIMEOUT, future).await;
            let _ = tx.send(result);
        });
        let outcome = match rx.recv() {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(_)) => Err(format!("no answer within {} s", OP_TIMEOUT.as_secs())),
            Err(_) => Err("the store's runtime stopped".to_owned()),
        };
        self.health.note(outcome.is_ok());
        outcome.map_err(|reason| StoreError::Unavailable {
            url: self.url.clone(),
            reason,
        })
    }

    /// Migrates once per process (again after a failure).
    fn ensure_schema(&self) -> Result<(), StoreError> {
        if self.schema_ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        let applied = self.call(schema::migrate)?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "shared state schema migrated");
        }
        self.schema_ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Reads through the database, else the local copy.
    fn read_or_cached<T>(
        &self,
        read: impl FnOnce() -> Result<T, StoreError>,
        keep: impl FnOnce(&SledStore, &T),
        cached: impl FnOnce(&SledStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match (self.ensure_schema().and_then(|()| read()), &self.cache) {
            (Ok(value), cache) => {
                if let Some(cache) = cache {
                    keep(cache, &value);
                }
                Ok(value)
            }
            (Err(StoreError::Unavailable { .. }), Some(cache)) => cached(cache),
            (Err(e), _) => Err(e),
        }
    }

    fn seal(&self, plain: &[u8], row: &str) -> (Vec<u8>, bool) {
        match &self.cipher {
            Some(c) => (c.seal(plain, row), true),
            None => (plain.to_vec(), false),
        }
    }

    fn unseal(&self, stored: Vec<u8>, encrypted: bool, row: &str) -> Result<Vec<u8>, StoreError> {
        if !encrypted {
            return Ok(stored);
        }
        match &self.cipher {
            Some(c) => c.open(&stored, row).map_err(StoreError::Crypto),
            None => Err(StoreError::Crypto(format!(
                "{row} is encrypted in the shared database: set state.encryption_key_file to the key the other nodes use"
            ))),
        }
    }

    fn cert_from_row(
        &self,
        domain: &str,
        row: &sqlx::postgres::PgRow,
    ) -> Result<CertRecord, StoreError> {
        let issuer: String = row.get("issuer");
        let key = self.unseal(
            row.get("key"),
            row.get("key_encrypted"),
            &cert_row(domain, &issuer),
        )?;
        let names: String = row.get("names");
        Ok(CertRecord {
            names: names
                .split(' ')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            key_pem: String::from_utf8(key).map_err(|_| {
                StoreError::Crypto(format!("{}: key is not text", cert_row(domain, &issuer)))
            })?,
            chain_pem: row.get("chain_pem"),
            not_before: row.get("not_before"),
            not_after: row.get("not_after"),
            issuer: row.get("issuer_name"),
            source: issuer,
        })
    }

    fn select_certs(&self, domain: Option<&str>) -> Result<Vec<(String, CertRecord)>, StoreError> {
        let domain = domain.map(str::to_owned);
        let rows = self.call(move |pool| async move {
            let sql = "SELECT domain, issuer, names, chain_pem, key, key_encrypted, not_before, not_after, issuer_name
                       FROM mailconfd_certs WHERE $1::text IS NULL OR domain = $1";
            sqlx::query(sql).bind(domain).fetch_all(&pool).await
        })?;
        rows.iter()
            .map(|row| {
                let domain: String = row.get("domain");
                let record = self.cert_from_row(&domain, row)?;
                Ok((domain, record))
            })
            .collect()
    }
}

/// The names encrypted values are bound to (the AEAD's associated data):
/// one spelling each, for sealing and opening alike.
fn cert_row(domain: &str, issuer: &str) -> String {
    format!("cert|{domain}|{issuer}")
}

fn account_row(directory_url: &str) -> String {
    format!("account|{directory_url}")
}

fn blob_row(name: &str) -> String {
    format!("blob|{name}")
}

/// Copies `records` into the local cache, writing only what changed (a
/// start reads every certificate; most are already there).
fn keep_certs(cache: &SledStore, domain: &str, records: &[CertRecord]) {
    for r in records {
        if cache.cert(domain, &r.source).ok().flatten().as_ref() != Some(r) {
            let _ = cache.put_cert(domain, r);
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
