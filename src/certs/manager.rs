//! When to order and renew, and what to do when it fails.
//!
//! One task. Every configured mail domain gets one certificate for its names
//! (autoconfig, autodiscover, mta-sts), ordered eagerly at start and whenever a
//! reload adds a domain or a name; renewed at two thirds of its lifetime minus
//! a per-domain jitter, or earlier when the CA's renewal information (ARI,
//! RFC 9773, asked about twice a day per domain) says so; through a queue
//! capped at `max_concurrent_orders` and a token bucket of `new_orders_per_3h`
//! for new orders (renewals are exempt, as at Let's Encrypt). A failure backs
//! off 1 min, 10 min, 100 min, then a day, never more than 4 failed attempts
//! per domain per hour, and the old certificate keeps serving until it expires.
//!
//! Memory is the authority, the store a copy: the schedule and each domain's
//! failures live here and are only *copied* to the store, so a full or
//! read-only disk cannot make a failing domain retry at the CA's speed. The
//! store copy seeds them at start, and the token bucket is stored after each
//! new order, so that a crash loop cannot exceed the backoff or the bucket.
//! Only certificates of the configured issuer (directory URL) are renewed;
//! one from another CA keeps serving until the new CA's replaces it.

mod budget;
mod job;
mod outcome;
mod persist;
mod schedule;
mod status;
mod stored;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Issuer, RenewalWindow, unix_now};
use crate::config::Config;
use crate::store::{CertRecord, DomainStatus, Store};
use crate::tls::CertResolver;
use budget::OrderBudget;
use job::{Job, Outcome};
use schedule::{renew_at, time_in_window};
pub use status::StatusCounts;
use stored::serve_stored;

/// From this many newly configured domains on, the store is read in bulk
/// (when it offers that) rather than per domain.
const BULK_READ_FROM: usize = 100;
/// Re-check everything at least this often even when nothing seems due.
const MAX_SLEEP_SECS: i64 = 3_600;
/// Renewal-information requests in flight at once.
const MAX_ARI_REQUESTS: usize = 4;
/// When the CA gave no window (or has no ARI), ask again after this.
const ARI_RETRY_SECS: i64 = 12 * 3_600;
/// While orders keep finishing, `certs.json` is rewritten at most this often.
const REPORT_INTERVAL_SECS: i64 = 5;
/// While writes to the state directory fail, they are tried again this often
/// (a certificate that could not be stored, the report).
const UNSAVED_RETRY_SECS: i64 = 5;

pub struct Manager {
    store: Arc<dyn Store>,
    resolver: Arc<CertResolver>,
    issuer: Arc<dyn Issuer>,
    config: watch::Receiver<Arc<Config>>,
    /// Where `certs.json` (the report `mailconfd certs` reads) is written.
    state_dir: PathBuf,
    counts: watch::Sender<StatusCounts>,
    /// Each domain's bookkeeping; the store holds a copy.
    statuses: HashMap<String, DomainStatus>,
    /// The configured issuer's latest certificate per domain, read from the
    /// store once when the domain appears, then kept here: scheduling never
    /// depends on reading the store back.
    records: HashMap<String, CertRecord>,
    /// Domains whose certificate in `records` is served but not yet stored
    /// (the disk refused it).
    unsaved: HashSet<String>,
    /// The last write to the store failed; it is retried (and the store
    /// asked to recover) every `UNSAVED_RETRY_SECS`.
    store_failing: bool,
    /// The last write of `certs.json` failed.
    report_failing: bool,
    /// Orders and their failures are counted here when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Shared store: domains whose certificate another node stored.
    changes: Option<mpsc::Receiver<String>>,
}

/// The next changed domain; pends forever without a change feed.
async fn next_change(changes: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match changes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The names one mail domain's certificate must cover, by domain.
fn wanted(config: &Config) -> BTreeMap<String, Vec<String>> {
    config
        .domains()
        .map(|(d, _)| (d.to_owned(), config.names_for_domain(d)))
        .collect()
}

impl Manager {
    pub fn new(
        store: Arc<dyn Store>,
        resolver: Arc<CertResolver>,
        issuer: Arc<dyn Issuer>,
        config: watch::Receiver<Arc<Config>>,
        state_dir: PathBuf,
    ) -> Manager {
        Manager {
            store,
            resolver,
            issuer,
            config,
            state_dir,
            counts: watch::channel(StatusCounts::default()).0,
            statuses: HashMap::new(),
            records: HashMap::new(),
            unsaved: HashSet::new(),
            store_failing: false,
            report_failing: false,
            metrics: None,
            changes: None,
        }
    }

    /// Serve certificates other nodes store, as the shared store reports them.
    #[must_use]
    pub fn with_changes(mut self, changes: mpsc::Receiver<String>) -> Manager {
        self.changes = Some(changes);
        self
    }

    /// Count finished orders (by result) and failures (by the CA's error type).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Manager {
        self.metrics = Some(metrics);
        self
    }

    /// Counts for readiness, updated as orders start and end. Take it before
    /// `run`; it stays valid (with the last counts) after `run` returns.
    pub fn status_counts(&self) -> watch::Receiver<StatusCounts> {
        self.counts.subscribe()
    }

    fn issuer_name(&self) -> &str {
        self.issuer.source()
    }

    /// The certificate to serve for `domain`, for the report: the configured
    /// issuer's, else (until it is replaced) an unexpired one of another CA.
    fn serving_record(&self, domain: &str, now: i64) -> Option<CertRecord> {
        if let Some(r) = self.records.get(domain).filter(|r| r.not_after > now) {
            return Some(r.clone());
        }
        let others = self.store.certs_for(domain).unwrap_or_default();
        super::pick(&others, self.issuer_name(), now)
            .cloned()
            .or_else(|| self.records.get(domain).cloned())
    }

    /// The configured issuer's certificate for `domain`, expired or not.
    fn own_record(&self, domain: &str) -> Option<CertRecord> {
        self.records.get(domain).cloned()
    }

    /// Orders and renews until `shutdown`.
    ///
    /// The schedule (when each domain is next due) lives in memory: it is
    /// computed at start and on every config change, and for one domain when
    /// its order ends, so a hoster with 10,000 domains pays one pass over the
    /// store per reload, not per finished order.
    pub async fn run(
        mut self,
        max_concurrent_orders: usize,
        new_orders_per_3h: u32,
        shutdown: CancellationToken,
    ) {
        let mut budget = OrderBudget::open(
            self.store.as_ref(),
            self.issuer_name(),
            new_orders_per_3h,
            unix_now(),
        );
        let mut in_flight: HashSet<String> = HashSet::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Outcome)>();
        let tasks = tokio_util::task::TaskTracker::new();
        let mut wanted = BTreeMap::new();
        let mut schedule: HashMap<String, (i64, bool)> = HashMap::new();
        let mut config_changed = true;
        let mut report_due = false;
        let mut last_report = 0;
        // ACME Renewal Information: when each domain is next asked, and answers.
        let mut ari_due: HashMap<String, i64> = HashMap::new();
        let mut ari_in_flight: HashSet<String> = HashSet::new();
        let (ari_tx, mut ari_rx) = mpsc::unbounded_channel::<(String, Option<RenewalWindow>)>();
        loop {
            let now = unix_now();
            if config_changed {
                config_changed = false;
                let config = self.config.borrow_and_update().clone();
                wanted = self::wanted(&config);
                self.resolver.retain_domains(|d| wanted.contains_key(d));
                self.statuses.retain(|d, _| wanted.contains_key(d));
                self.unsaved.retain(|d| wanted.contains_key(d));
                self.records.retain(|d, _| wanted.contains_key(d));
                let new_domains = wanted
                    .keys()
                    .filter(|d| !self.statuses.contains_key(*d))
                    .count();
                // Many new domains (the start) from a shared database: one query.
                let mut bulk = if new_domains > BULK_READ_FROM {
                    match self.store.bulk() {
                        Some(Ok(b)) => Some(b),
                        _ => None,
                    }
                } else {
                    None
                };
                for domain in wanted.keys() {
                    if let (false, Some(b)) = (self.statuses.contains_key(domain), bulk.as_mut()) {
                        let issuer = self.issuer.source().to_owned();
                        let certs = b.certs.remove(domain).unwrap_or_default();
                        if let Some(record) = certs.into_iter().find(|r| r.source == issuer) {
                            self.records.insert(domain.clone(), record);
                        }
                        let status = b
                            .statuses
                            .remove(&(domain.clone(), issuer))
                            .unwrap_or_default();
                        self.statuses.insert(domain.clone(), status);
                        continue;
                    }
                    if !self.statuses.contains_key(domain) {
                        match self.store.cert(domain, self.issuer.source()) {
                            Ok(Some(record)) => {
                                self.records.insert(domain.clone(), record);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(domain = %domain, error = %e, "reading the stored certificate failed")
                            }
                        }
                        // The store's copy seeds memory once; memory rules after.
                        let copy = self
                            .store
                            .status(domain, self.issuer.source())
                            .ok()
                            .flatten()
                            .unwrap_or_default();
                        self.statuses.insert(domain.clone(), copy);
                    }
                }
                schedule = wanted
                    .iter()
                    .map(|(d, names)| (d.clone(), self.due(d, names, now)))
                    .collect();
                // At once, whatever is in flight: `mailconfd certs` shows the new list.
                report_due = true;
                last_report = 0;
            }
            if self.store_failing || !self.unsaved.is_empty() {
                self.retry_store().await;
            }
            let mut wake = now + MAX_SLEEP_SECS;
            if !self.unsaved.is_empty() {
                wake = wake.min(now + UNSAVED_RETRY_SECS);
            }
            if self.report_failing && now - last_report >= UNSAVED_RETRY_SECS {
                // certs.json is current again soon after space returns.
                report_due = true;
            }
            if self.report_failing || self.store_failing {
                wake = wake.min(now + UNSAVED_RETRY_SECS);
            }
            let mut queued = 0;
            for (domain, names) in &wanted {
                if in_flight.contains(domain) {
                    continue;
                }
                let Some(&(due, renewal)) = schedule.get(domain) else {
                    continue;
                };
                if due > now {
                    wake = wake.min(due);
                    continue;
                }
                if in_flight.len() >= max_concurrent_orders {
                    queued += 1;
                    continue; // a finishing order wakes us
                }
                if !renewal && let Err(at) = self.take_order_token(&mut budget, now).await {
                    wake = wake.min(at);
                    queued += 1;
                    continue;
                }
                in_flight.insert(domain.clone());
                let job = Job {
                    store: self.store.clone(),
                    resolver: self.resolver.clone(),
                    issuer: self.issuer.clone(),
                    config: self.config.clone(),
                    domain: domain.clone(),
                    names: names.clone(),
                    previous: self.own_record(domain).filter(|_| renewal),
                };
                let done = done_tx.clone();
                tasks.spawn(async move {
                    let domain = job.domain.clone();
                    let outcome = job.run().await;
                    let _ = done.send((domain, outcome));
                });
            }
            for (domain, &(due, renewal)) in &schedule {
                if !renewal
                    || due <= now
                    || in_flight.contains(domain)
                    || ari_in_flight.contains(domain)
                {
                    continue;
                }
                let check_at = *ari_due.get(domain).unwrap_or(&now);
                if check_at > now {
                    wake = wake.min(check_at);
                    continue;
                }
                if ari_in_flight.len() >= MAX_ARI_REQUESTS {
                    break;
                }
                let Some(record) = self.own_record(domain) else {
                    continue;
                };
                ari_in_flight.insert(domain.clone());
                let (issuer, domain, tx) = (self.issuer.clone(), domain.clone(), ari_tx.clone());
                tasks.spawn(async move {
                    let window = issuer.renewal_window(&record).await;
                    let _ = tx.send((domain, window));
                });
            }
            // The report lists every domain: write it when the queue drains,
            // and at most every REPORT_INTERVAL_SECS while busy.
            if report_due && (in_flight.is_empty() || now - last_report >= REPORT_INTERVAL_SECS) {
                report_due = false;
                last_report = now;
                self.write_report().await;
            } else if report_due {
                wake = wake.min(last_report + REPORT_INTERVAL_SECS);
            }
            self.publish_counts(&wanted, in_flight.len(), queued, now);
            let sleep = Duration::from_secs((wake - now).clamp(1, MAX_SLEEP_SECS) as u64);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = self.config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    config_changed = true;
                }
                Some((domain, outcome)) = done_rx.recv() => {
                    in_flight.remove(&domain);
                    let placed_no_order = matches!(outcome, Outcome::Postponed { .. } | Outcome::Adopted(_));
                    if placed_no_order && schedule.get(&domain).is_some_and(|(_, renewal)| !renewal) {
                        self.give_back_order_token(&mut budget).await;
                    }
                    self.finish(&domain, outcome).await;
                    // An order that ended after a reload removed (some of) its
                    // names must not have brought them back.
                    self.resolver.retain_domains(|d| wanted.contains_key(d));
                    if let Some(names) = wanted.get(&domain) {
                        schedule.insert(domain.clone(), self.due(&domain, names, unix_now()));
                    }
                    report_due = true;
                }
                Some(domain) = next_change(&mut self.changes) => {
                    if let Some(names) = wanted.get(&domain).cloned()
                        && self.take_stored(&domain, &names).await
                    {
                        if !in_flight.contains(&domain) {
                            schedule.insert(domain.clone(), self.due(&domain, &names, unix_now()));
                        }
                        report_due = true;
                    }
                }
                Some((domain, window)) = ari_rx.recv() => {
                    ari_in_flight.remove(&domain);
                    let now = unix_now();
                    match window {
                        Some(w) => {
                            if let Some(entry) = schedule.get_mut(&domain) {
                                entry.0 = entry.0.min(time_in_window(&w, &domain));
                            }
                            ari_due.insert(domain, now + w.recheck_secs);
                        }
                        None => {
                            ari_due.insert(domain, now + ARI_RETRY_SECS);
                        }
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        // Orders in flight are abandoned: nothing half-written can be left,
        // because a certificate is stored in one flushed write.
        tasks.close();
    }

    /// When `domain` next needs an order, and whether that order is a renewal
    /// of the configured issuer's certificate for the same names. A
    /// certificate from another CA counts as absent.
    fn due(&self, domain: &str, names: &[String], now: i64) -> (i64, bool) {
        let status = self.statuses.get(domain).cloned().unwrap_or_default();
        let (base, renewal) = match self.own_record(domain) {
            Some(r) if names.iter().all(|n| r.names.contains(n)) => (renew_at(&r, domain), true),
            _ => (now, false),
        };
        (base.max(status.next_attempt.unwrap_or(0)), renewal)
    }
}

#[cfg(test)]
mod tests;
