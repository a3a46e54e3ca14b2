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

mod crypt;
mod feed;
mod order_budget;
pub mod schema;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row as _};
use tokio::sync::{mpsc, watch};

pub use crypt::Cipher;

use super::dump::Dump;
use super::{
    CertRecord, ChallengeAnswer, ChallengeKind, DomainStatus, SledStore, Store, StoreError,
};
use crate::config::state::PostgresState;

/// Longest any one database call may take, connection included.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per node: the manager, the feed and a few challenge lookups.
const POOL_SIZE: u32 = 8;
/// A challenge answer nobody withdrew (its node died) is gone after this.
const CHALLENGE_TTL_SECS: f64 = 900.0;

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

/// Whether the database answers, as the last call (or the feed's poll) saw.
/// While it does not, calls fail at once instead of each waiting out its
/// deadline (a node restarted during an outage would otherwise spend
/// `OP_TIMEOUT` per domain before serving its local copy); one call per
/// `PROBE_EVERY` goes through to find out whether it is back.
pub(crate) struct Health {
    url: String,
    up: watch::Sender<bool>,
    last_probe: std::sync::Mutex<Option<std::time::Instant>>,
}

/// While the database is down, how often a call may try it.
const PROBE_EVERY: Duration = Duration::from_secs(5);

impl Health {
    fn new(url: String) -> Health {
        Health {
            url,
            up: watch::channel(true).0,
            last_probe: std::sync::Mutex::new(None),
        }
    }

    /// Whether a call should try the database now.
    fn allow(&self) -> bool {
        if *self.up.borrow() {
            return true;
        }
        let mut last = self
            .last_probe
            .lock()
            .expect("probe lock is never poisoned: no panics while held");
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < PROBE_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Logs the database going away and coming back, once each.
    pub(crate) fn note(&self, ok: bool) {
        if !ok {
            // A failure is a probe too: the next one waits PROBE_EVERY
            // (without this, the first calls after a failed start each
            // waited out the pool's connect timeout).
            *self
                .last_probe
                .lock()
                .expect("probe lock is never poisoned: no panics while held") =
                Some(std::time::Instant::now());
        }
        let was = self.up.send_replace(ok);
        if was && !ok {
            tracing::warn!(url = %self.url, "shared state database unreachable: serving from memory and the local copy, retrying");
        } else if !was && ok {
            tracing::info!(url = %self.url, "shared state database reachable again");
        }
    }
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
        self.health.up.subscribe()
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

impl Store for PostgresStore {
    fn account(&self, directory_url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let url = directory_url.to_owned();
        self.read_or_cached(
            || {
                let row = self.call(move |pool| async move {
                    sqlx::query("SELECT credentials, encrypted FROM mailconfd_accounts WHERE directory_url = $1")
                        .bind(url)
                        .fetch_optional(&pool)
                        .await
                })?;
                row.map(|r| {
                    self.unseal(
                        r.get("credentials"),
                        r.get("encrypted"),
                        &account_row(directory_url),
                    )
                })
                .transpose()
            },
            |cache, value| {
                if let Some(v) = value {
                    let _ = cache.put_account(directory_url, v);
                }
            },
            |cache| cache.account(directory_url),
        )
    }

    fn put_account(&self, directory_url: &str, credentials: &[u8]) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let (value, encrypted) = self.seal(credentials, &account_row(directory_url));
        let url = directory_url.to_owned();
        self.call(move |pool| async move {
            sqlx::query(
                "INSERT INTO mailconfd_accounts (directory_url, credentials, encrypted) VALUES ($1, $2, $3)
                 ON CONFLICT (directory_url) DO UPDATE SET credentials = $2, encrypted = $3, updated_at = clock_timestamp()",
            )
            .bind(url)
            .bind(value)
            .bind(encrypted)
            .execute(&pool)
            .await
        })?;
        let _ = self
            .cache
            .as_ref()
            .map(|c| c.put_account(directory_url, credentials));
        Ok(())
    }

    fn cert(&self, domain: &str, issuer: &str) -> Result<Option<CertRecord>, StoreError> {
        Ok(self
            .certs_for(domain)?
            .into_iter()
            .find(|r| r.source == issuer))
    }

    fn put_cert(&self, domain: &str, record: &CertRecord) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let (key, key_encrypted) =
            self.seal(record.key_pem.as_bytes(), &cert_row(domain, &record.source));
        let (d, r, node) = (domain.to_owned(), record.clone(), self.node.clone());
        self.call(move |pool| async move {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO mailconfd_certs
                   (domain, issuer, names, chain_pem, key, key_encrypted, not_before, not_after, issuer_name, node)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (domain, issuer) DO UPDATE SET
                   names = $3, chain_pem = $4, key = $5, key_encrypted = $6, not_before = $7,
                   not_after = $8, issuer_name = $9, node = $10, updated_at = clock_timestamp()",
            )
            .bind(&d)
            .bind(&r.source)
            .bind(r.names.join(" "))
            .bind(&r.chain_pem)
            .bind(key)
            .bind(key_encrypted)
            .bind(r.not_before)
            .bind(r.not_after)
            .bind(&r.issuer)
            .bind(&node)
            .execute(tx.as_mut())
            .await?;
            // Delivered at commit, to every node listening (feed.rs).
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(feed::CHANNEL)
                .bind(feed::payload(&d, &node))
                .execute(tx.as_mut())
                .await?;
            tx.commit().await
        })?;
        let _ = self.cache.as_ref().map(|c| c.put_cert(domain, record));
        Ok(())
    }

    fn certs_for(&self, domain: &str) -> Result<Vec<CertRecord>, StoreError> {
        self.read_or_cached(
            || {
                Ok(self
                    .select_certs(Some(domain))?
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect())
            },
            |cache, records: &Vec<CertRecord>| keep_certs(cache, domain, records),
            |cache| cache.certs_for(domain),
        )
    }

    fn status(&self, domain: &str, issuer: &str) -> Result<Option<DomainStatus>, StoreError> {
        let (d, i) = (domain.to_owned(), issuer.to_owned());
        self.read_or_cached(
            || {
                let text: Option<String> = self.call(move |pool| async move {
                    sqlx::query_scalar(
                        "SELECT status FROM mailconfd_status WHERE domain = $1 AND issuer = $2",
                    )
                    .bind(d)
                    .bind(i)
                    .fetch_optional(&pool)
                    .await
                })?;
                text.map(|t| {
                    serde_json::from_str(&t).map_err(|source| StoreError::Corrupt {
                        tree: "mailconfd_status",
                        key: format!("{domain}|{issuer}"),
                        source,
                    })
                })
                .transpose()
            },
            |_, _| {},
            |cache| cache.status(domain, issuer),
        )
    }

    fn put_status(
        &self,
        domain: &str,
        issuer: &str,
        status: &DomainStatus,
    ) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let text = serde_json::to_string(status)
            .expect("DomainStatus serializes: plain strings and integers");
        let (d, i) = (domain.to_owned(), issuer.to_owned());
        self.call(move |pool| async move {
            sqlx::query(
                "INSERT INTO mailconfd_status (domain, issuer, status) VALUES ($1, $2, $3)
                 ON CONFLICT (domain, issuer) DO UPDATE SET status = $3",
            )
            .bind(d)
            .bind(i)
            .bind(text)
            .execute(&pool)
            .await
        })?;
        let _ = self
            .cache
            .as_ref()
            .map(|c| c.put_status(domain, issuer, status));
        Ok(())
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let n = name.to_owned();
        self.read_or_cached(
            || {
                let row = self.call(move |pool| async move {
                    sqlx::query("SELECT value, encrypted FROM mailconfd_blobs WHERE name = $1")
                        .bind(n)
                        .fetch_optional(&pool)
                        .await
                })?;
                row.map(|r| self.unseal(r.get("value"), r.get("encrypted"), &blob_row(name)))
                    .transpose()
            },
            |cache, value| {
                if let Some(v) = value {
                    let _ = cache.put_blob(name, v);
                }
            },
            |cache| cache.blob(name),
        )
    }

    fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let (sealed, encrypted) = self.seal(value, &blob_row(name));
        let n = name.to_owned();
        self.call(move |pool| async move {
            sqlx::query(
                "INSERT INTO mailconfd_blobs (name, value, encrypted) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET value = $2, encrypted = $3",
            )
            .bind(n)
            .bind(sealed)
            .bind(encrypted)
            .execute(&pool)
            .await
        })?;
        let _ = self.cache.as_ref().map(|c| c.put_blob(name, value));
        Ok(())
    }

    /// Every write is committed (hence durable) before it returns.
    fn flush(&self) -> Result<(), StoreError> {
        self.cache.as_ref().map_or(Ok(()), SledStore::flush)
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.ensure_schema()?;
        self.call(|pool| async move { sqlx::query("SELECT 1").execute(&pool).await })?;
        Ok(())
    }

    fn dump(&self) -> Result<Dump, StoreError> {
        self.ensure_schema()?;
        let mut dump = Dump::new();
        let accounts = self.call(|pool| async move {
            sqlx::query("SELECT directory_url, credentials, encrypted FROM mailconfd_accounts ORDER BY directory_url")
                .fetch_all(&pool)
                .await
        })?;
        for r in &accounts {
            let url: String = r.get("directory_url");
            let plain =
                self.unseal(r.get("credentials"), r.get("encrypted"), &account_row(&url))?;
            dump.push_account(&url, &plain);
        }
        for (domain, record) in self.select_certs(None)? {
            dump.certs.push(super::dump::Cert { domain, record });
        }
        let statuses = self.call(|pool| async move {
            sqlx::query(
                "SELECT domain, issuer, status FROM mailconfd_status ORDER BY domain, issuer",
            )
            .fetch_all(&pool)
            .await
        })?;
        for r in &statuses {
            let (domain, issuer, text): (String, String, String) =
                (r.get("domain"), r.get("issuer"), r.get("status"));
            let status = serde_json::from_str(&text).map_err(|source| StoreError::Corrupt {
                tree: "mailconfd_status",
                key: format!("{domain}|{issuer}"),
                source,
            })?;
            dump.statuses.push(super::dump::Status {
                domain,
                issuer,
                status,
            });
        }
        let blobs = self.call(|pool| async move {
            sqlx::query("SELECT name, value, encrypted FROM mailconfd_blobs ORDER BY name")
                .fetch_all(&pool)
                .await
        })?;
        for r in &blobs {
            let name: String = r.get("name");
            let plain = self.unseal(r.get("value"), r.get("encrypted"), &blob_row(&name))?;
            dump.push_blob(&name, &plain);
        }
        Ok(dump)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn bulk(&self) -> Option<Result<super::Bulk, StoreError>> {
        let load = || -> Result<super::Bulk, StoreError> {
            self.ensure_schema()?;
            let mut bulk = super::Bulk::default();
            for (domain, record) in self.select_certs(None)? {
                bulk.certs.entry(domain).or_default().push(record);
            }
            let rows = self.call(|pool| async move {
                sqlx::query("SELECT domain, issuer, status FROM mailconfd_status")
                    .fetch_all(&pool)
                    .await
            })?;
            for r in &rows {
                let (domain, issuer, text): (String, String, String) =
                    (r.get("domain"), r.get("issuer"), r.get("status"));
                if let Ok(status) = serde_json::from_str(&text) {
                    bulk.statuses.insert((domain, issuer), status);
                }
            }
            Ok(bulk)
        };
        Some(load().inspect(|bulk| {
            if let Some(cache) = &self.cache {
                for (domain, records) in &bulk.certs {
                    keep_certs(cache, domain, records);
                }
            }
        }))
    }

    fn try_lease(&self, domain: &str, issuer: &str) -> Result<bool, StoreError> {
        self.ensure_schema()?;
        let (d, i, node, secs) = (
            domain.to_owned(),
            issuer.to_owned(),
            self.node.clone(),
            self.lease_secs as f64,
        );
        // Taken when free, expired, or already ours (a renewal, or this node
        // restarted under the same name).
        let owner: Option<String> = self.call(move |pool| async move {
            sqlx::query_scalar(
                "INSERT INTO mailconfd_leases (domain, issuer, owner, expires_at)
                 VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
                 ON CONFLICT (domain, issuer) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                 WHERE mailconfd_leases.expires_at < clock_timestamp() OR mailconfd_leases.owner = EXCLUDED.owner
                 RETURNING owner",
            )
            .bind(d)
            .bind(i)
            .bind(node)
            .bind(secs)
            .fetch_optional(&pool)
            .await
        })?;
        Ok(owner.is_some())
    }

    fn release_lease(&self, domain: &str, issuer: &str) -> Result<(), StoreError> {
        let (d, i, node) = (domain.to_owned(), issuer.to_owned(), self.node.clone());
        self.call(move |pool| async move {
            sqlx::query(
                "DELETE FROM mailconfd_leases WHERE domain = $1 AND issuer = $2 AND owner = $3",
            )
            .bind(d)
            .bind(i)
            .bind(node)
            .execute(&pool)
            .await
        })?;
        Ok(())
    }

    fn set_lease_order(
        &self,
        domain: &str,
        issuer: &str,
        order_url: &str,
        names: &[String],
    ) -> Result<(), StoreError> {
        let (d, i, node, url, names) = (
            domain.to_owned(),
            issuer.to_owned(),
            self.node.clone(),
            order_url.to_owned(),
            names.join(" "),
        );
        self.call(move |pool| async move {
            sqlx::query(
                "UPDATE mailconfd_leases SET order_url = $4, order_names = $5
                 WHERE domain = $1 AND issuer = $2 AND owner = $3",
            )
            .bind(d)
            .bind(i)
            .bind(node)
            .bind(url)
            .bind(names)
            .execute(&pool)
            .await
        })?;
        Ok(())
    }

    fn lease_order(
        &self,
        domain: &str,
        issuer: &str,
    ) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let (d, i) = (domain.to_owned(), issuer.to_owned());
        let row: Option<(Option<String>, Option<String>)> = self.call(move |pool| async move {
            sqlx::query_as(
                "SELECT order_url, order_names FROM mailconfd_leases WHERE domain = $1 AND issuer = $2",
            )
            .bind(d)
            .bind(i)
            .fetch_optional(&pool)
            .await
        })?;
        Ok(match row {
            Some((Some(url), Some(names))) => Some((
                url,
                names
                    .split(' ')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            _ => None,
        })
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(Duration::from_secs((self.lease_secs / 3).max(1)))
    }

    fn put_challenge(&self, answer: &ChallengeAnswer) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let a = answer.clone();
        self.call(move |pool| async move {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM mailconfd_challenges WHERE expires_at < clock_timestamp()")
                .execute(tx.as_mut())
                .await?;
            sqlx::query(
                "INSERT INTO mailconfd_challenges (kind, name, token, value, expires_at)
                 VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5))
                 ON CONFLICT (kind, name, token) DO UPDATE SET value = $4, expires_at = EXCLUDED.expires_at",
            )
            .bind(a.kind.as_str())
            .bind(&a.name)
            .bind(&a.token)
            .bind(&a.value)
            .bind(CHALLENGE_TTL_SECS)
            .execute(tx.as_mut())
            .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    fn challenge(
        &self,
        kind: ChallengeKind,
        name: &str,
        token: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let (n, t) = (name.to_owned(), token.unwrap_or("").to_owned());
        self.call(move |pool| async move {
            sqlx::query_scalar(
                "SELECT value FROM mailconfd_challenges
                 WHERE kind = $1 AND name = $2 AND token = $3 AND expires_at > clock_timestamp()",
            )
            .bind(kind.as_str())
            .bind(n)
            .bind(t)
            .fetch_optional(&pool)
            .await
        })
    }

    fn clear_challenge(&self, answer: &ChallengeAnswer) -> Result<(), StoreError> {
        let a = answer.clone();
        self.call(move |pool| async move {
            sqlx::query(
                "DELETE FROM mailconfd_challenges WHERE kind = $1 AND name = $2 AND token = $3",
            )
            .bind(a.kind.as_str())
            .bind(&a.name)
            .bind(&a.token)
            .execute(&pool)
            .await
        })?;
        Ok(())
    }

    fn take_order_token(
        &self,
        name: &str,
        per_3h: u32,
    ) -> Option<Result<super::OrderToken, StoreError>> {
        let taken = self.ensure_schema().and_then(|()| {
            let name = name.to_owned();
            self.call(move |pool| order_budget::take(pool, name, per_3h))
        });
        Some(taken)
    }

    fn give_back_order_token(&self, name: &str, per_3h: u32) -> Result<(), StoreError> {
        self.ensure_schema()?;
        let name = name.to_owned();
        self.call(move |pool| order_budget::give_back(pool, name, per_3h))
    }
}
