//! Domain sources at run time: each `[provider.domains_from]` is fetched at
//! start, on its interval, when its file changes and on SIGHUP; the
//! published config is always the file's config plus the last good list of
//! every source ([`Publisher`]).
//!
//! A source that fails keeps its last good list (kept in memory and in
//! `state_dir/sources/`, so a restart while the database is down still serves
//! every domain), says so once in the log, and shows in `STATUS=` and
//! `/ready`. New domains reach the certificate manager through the ordinary
//! config channel; removed ones stop being served at once (their stored
//! certificates stay in the store).

mod file;
pub(crate) mod ldap;
mod sql;

pub use sql::sql_url;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::config::sources::{DomainSource, SourceKind, normalize_list};

/// One fetch, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a file source's metadata is looked at for changes.
const FILE_POLL: Duration = Duration::from_secs(2);

/// Fetches a source once: its domains (normalized, deduplicated) and the
/// lines it had to skip.
///
/// # Errors
/// The source cannot be read, connected to or queried within [`FETCH_TIMEOUT`].
pub async fn fetch(source: &DomainSource) -> Result<(Vec<String>, Vec<String>), String> {
    let lines = tokio::time::timeout(FETCH_TIMEOUT, async {
        match &source.kind {
            SourceKind::File { path } => file::read(path).await,
            SourceKind::Sql {
                url,
                password_file,
                query,
            } => sql::query(url, password_file.as_deref(), query).await,
            SourceKind::Ldap {
                url,
                base,
                filter,
                attribute,
                bind_dn,
                bind_password_file,
                starttls,
                ca_file,
            } => {
                let endpoint = ldap::Endpoint {
                    url: url.clone(),
                    starttls: *starttls,
                    ca_file: ca_file.clone(),
                    bind_dn: bind_dn.clone(),
                    password_file: bind_password_file.clone(),
                };
                ldap::search(&endpoint, base, filter, attribute).await
            }
        }
    })
    .await
    .map_err(|_| format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))??;
    // IDNA normalization of a hoster's list: milliseconds per 10,000 lines.
    tokio::task::spawn_blocking(move || normalize_list(lines.iter().map(String::as_str)))
        .await
        .map_err(|e| format!("normalizing the list: {e}"))
}

#[derive(Debug, Default)]
struct SourceState {
    /// The last list fetched (or loaded from the cache); shared with the
    /// merge, which runs off the async workers.
    domains: Option<Arc<Vec<String>>>,
    /// The current failure, if the last fetch failed.
    error: Option<String>,
}

/// Publishes the file's config merged with every source's last good list.
pub struct Publisher {
    tx: watch::Sender<Arc<Config>>,
    state_dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    base: Option<Arc<Config>>,
    /// By provider id.
    sources: HashMap<String, SourceState>,
    /// Merge problems already logged (each once).
    logged_conflicts: Vec<String>,
    /// Incremented by every publish; only the newest one sends.
    generation: u64,
}

impl Publisher {
    pub fn new(tx: watch::Sender<Arc<Config>>, state_dir: &Path) -> Arc<Publisher> {
        Arc::new(Publisher {
            tx,
            state_dir: state_dir.to_owned(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("publisher lock is never poisoned: no panics while held")
    }

    /// A new config from the file (start, SIGHUP); returns once it is published.
    pub async fn set_base(self: &Arc<Self>, base: Arc<Config>) {
        self.record_base(base);
        self.publish().await;
    }

    fn record_base(&self, base: Arc<Config>) {
        let mut inner = self.lock();
        let ids: Vec<String> = base
            .domain_sources
            .iter()
            .map(|s| base.providers[s.provider].id.clone())
            .collect();
        inner.sources.retain(|id, _| ids.contains(id));
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(slot) = inner.sources.entry(id) {
                let cached = read_cache(&self.state_dir, slot.key());
                slot.insert(SourceState {
                    domains: cached.map(Arc::new),
                    error: None,
                });
            }
        }
        inner.base = Some(base);
    }

    /// A fetch of provider `id`'s source finished; returns once a changed
    /// list is published.
    pub async fn source_result(
        self: &Arc<Self>,
        id: &str,
        description: &str,
        result: Result<(Vec<String>, Vec<String>), String>,
    ) {
        if self.record_result(id, description, result) {
            self.publish().await;
        }
    }

    /// Updates the source's state; true when its list changed.
    fn record_result(
        &self,
        id: &str,
        description: &str,
        result: Result<(Vec<String>, Vec<String>), String>,
    ) -> bool {
        let mut inner = self.lock();
        let Some(state) = inner.sources.get_mut(id) else {
            return false; // the source went away with a reload
        };
        match result {
            Ok((domains, skipped)) => {
                let recovered = state.error.take().is_some();
                if recovered {
                    tracing::info!(provider = %id, source = %description, domains = domains.len(), "domain source answers again");
                }
                if !skipped.is_empty() {
                    tracing::warn!(provider = %id, source = %description, skipped = skipped.len(), first = %skipped[0], "domain source: entries skipped");
                }
                if state.domains.as_deref() == Some(&domains) {
                    if recovered {
                        self.write_status(&inner);
                    }
                    return false;
                }
                let before = state.domains.as_ref().map_or(0, |d| d.len());
                tracing::info!(provider = %id, source = %description, before, after = domains.len(), "domain list changed");
                // Disk work (a hoster's list is megabytes, fsynced) off the async workers.
                let (dir, owned_id, copy) =
                    (self.state_dir.clone(), id.to_owned(), domains.clone());
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = write_cache(&dir, &owned_id, &copy) {
                        tracing::warn!(provider = %owned_id, error = %e, "cannot cache the domain list; a restart while the source is down would lose it");
                    }
                });
                state.domains = Some(Arc::new(domains));
            }
            Err(e) => {
                let first = state.error.is_none();
                if first {
                    let kept = state.domains.as_ref().map_or(0, |d| d.len());
                    tracing::error!(provider = %id, source = %description, error = %e, kept, "domain source failed; serving its last good list");
                }
                state.error = Some(e);
                if first {
                    self.write_status(&inner);
                }
                return false;
            }
        }
        self.write_status(&inner);
        true
    }

    /// `state_dir/sources/status.json` for `mailconfd certs` (the daemon
    /// holds the database; the command reads this file).
    fn write_status(&self, inner: &Inner) {
        let mut rows: Vec<StatusRow> = inner
            .sources
            .iter()
            .map(|(id, s)| StatusRow {
                provider: id.clone(),
                domains: s.domains.as_ref().map_or(0, |d| d.len()),
                error: s.error.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.provider.cmp(&b.provider));
        let path = status_file(&self.state_dir);
        tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec_pretty(&rows).expect("rows serialize: plain data");
            let tmp = path.with_extension("json.tmp");
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&tmp, bytes))
                .and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                tracing::debug!(error = %e, "cannot write the domain source status");
            }
        });
    }

    /// Merges the base with every list and sends the result. The merge of
    /// a hoster's list (a copy of the config plus an index of every domain)
    /// runs off the async workers; a merge that finishes after a newer one
    /// started is dropped, so the newest state always wins.
    async fn publish(self: &Arc<Self>) {
        let (base, lists, generation) = {
            let mut inner = self.lock();
            let Some(base) = inner.base.clone() else {
                return;
            };
            let lists: HashMap<String, Arc<Vec<String>>> = inner
                .sources
                .iter()
                .filter_map(|(id, s)| Some((id.clone(), s.domains.clone()?)))
                .collect();
            inner.generation += 1;
            (base, lists, inner.generation)
        };
        let this = self.clone();
        let merge = tokio::task::spawn_blocking(move || {
            let config = if lists.is_empty() {
                base
            } else {
                let (merged, conflicts) = base.with_source_domains(&lists);
                let mut inner = this.lock();
                for c in conflicts {
                    if !inner.logged_conflicts.contains(&c) {
                        tracing::warn!(problem = %c, "domain source conflict");
                        inner.logged_conflicts.push(c);
                    }
                }
                Arc::new(merged)
            };
            // Checked and sent under the lock: no older merge overtakes.
            let inner = this.lock();
            if inner.generation == generation {
                this.tx.send_replace(config);
            }
        });
        if let Err(e) = merge.await {
            tracing::error!(error = %e, "merging the domain lists failed");
        }
    }

    /// Sources failing now: (provider id, error).
    pub fn failing(&self) -> Vec<(String, String)> {
        let inner = self.lock();
        let mut out: Vec<(String, String)> = inner
            .sources
            .iter()
            .filter_map(|(id, s)| Some((id.clone(), s.error.clone()?)))
            .collect();
        out.sort();
        out
    }

    /// Fetches every source of the current base once, concurrently (start-up:
    /// before READY=1, so the first answers already know every domain).
    pub async fn fetch_all_once(self: &Arc<Self>) {
        let Some(base) = self.lock().base.clone() else {
            return;
        };
        let fetches = base.domain_sources.iter().map(|s| {
            let id = base.providers[s.provider].id.clone();
            let source = s.clone();
            async move { (id, source.describe(), fetch(&source).await) }
        });
        for (id, description, result) in futures_util::future::join_all(fetches).await {
            self.source_result(&id, &description, result).await;
        }
    }

    /// Keeps every source of the current base fresh until shutdown: each on
    /// its interval, files also when they change; restarted when a reload
    /// changes the sources.
    pub fn spawn_refreshers(self: &Arc<Self>, shutdown: CancellationToken) {
        let publisher = self.clone();
        let mut base_rx = self.tx.subscribe();
        tokio::spawn(async move {
            let mut current: Vec<DomainSource> = Vec::new();
            let mut children = CancellationToken::new();
            loop {
                let base = publisher.lock().base.clone();
                if let Some(base) = base
                    && base.domain_sources != current
                {
                    children.cancel();
                    children = shutdown.child_token();
                    current = base.domain_sources.clone();
                    for s in &current {
                        let id = base.providers[s.provider].id.clone();
                        tokio::spawn(refresh_loop(
                            publisher.clone(),
                            id,
                            s.clone(),
                            children.clone(),
                        ));
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = base_rx.changed() => if changed.is_err() { return },
                }
            }
        });
    }
}

async fn refresh_loop(
    publisher: Arc<Publisher>,
    id: String,
    source: DomainSource,
    stop: CancellationToken,
) {
    let description = source.describe();
    let interval = Duration::from_secs(source.refresh_secs);
    let file = match &source.kind {
        SourceKind::File { path } => Some(path.clone()),
        _ => None,
    };
    let mut last_seen = match &file {
        Some(p) => file::fingerprint(p).await,
        None => None,
    };
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let poll = if file.is_some() { FILE_POLL } else { interval };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(poll.min(next.saturating_duration_since(tokio::time::Instant::now()))) => {}
        }
        let due = tokio::time::Instant::now() >= next;
        let changed = match &file {
            Some(p) => {
                let now = file::fingerprint(p).await;
                let changed = now != last_seen;
                last_seen = now;
                changed
            }
            None => false,
        };
        if due || changed {
            let result = fetch(&source).await;
            publisher.source_result(&id, &description, result).await;
            next = tokio::time::Instant::now() + interval;
        }
    }
}

/// One source's state as `mailconfd certs` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatusRow {
    pub provider: String,
    /// Domains in the list served now (last good).
    pub domains: usize,
    /// Why the last fetch failed, while it does.
    pub error: Option<String>,
}

pub fn status_file(state_dir: &Path) -> PathBuf {
    state_dir.join("sources").join("status.json")
}

/// What the running daemon last wrote (empty without sources or daemon).
pub fn read_status(state_dir: &Path) -> Vec<StatusRow> {
    std::fs::read(status_file(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn cache_file(state_dir: &Path, id: &str) -> PathBuf {
    // Provider ids are hostname-like (validated): safe as a file name.
    state_dir.join("sources").join(format!("{id}.domains"))
}

fn read_cache(state_dir: &Path, id: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(cache_file(state_dir, id)).ok()?;
    let (domains, _) = normalize_list(text.lines());
    tracing::info!(provider = %id, domains = domains.len(), "domain list loaded from the cache until the source answers");
    Some(domains)
}

/// Write, fsync, rename, fsync the directory: never a half list after a crash.
fn write_cache(state_dir: &Path, id: &str, domains: &[String]) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = cache_file(state_dir, id);
    let dir = path.parent().expect("cache file has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    for d in domains {
        writeln!(f, "{d}")?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}
