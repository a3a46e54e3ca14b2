//! When to order and renew, and what to do when it fails.
//!
//! One task. Every configured mail domain gets one certificate for its names
//! (autoconfig, autodiscover, mta-sts), ordered eagerly at start and whenever a
//! reload adds a domain or a name; renewed at two thirds of its lifetime minus
//! a per-domain jitter, or earlier when the CA's renewal information (ARI,
//! RFC 9773, asked about twice a day per domain) says so; through a queue capped at `max_concurrent_orders` and a
//! token bucket of `new_orders_per_3h` for new orders (renewals are exempt, as
//! at Let's Encrypt). A failure backs off 1 min, 10 min, 100 min, then a day,
//! never more than 5 failed attempts per domain per hour, and the old
//! certificate keeps serving until it expires. Store first, then serve: a
//! certificate reaches the resolver only after it is flushed to disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{IssueError, Issuer, RenewalWindow, unix_now};
use crate::config::Config;
use crate::store::{CertRecord, DomainStatus, Store};
use crate::tls::{CertResolver, certkey};

/// Backoff after the 1st, 2nd, 3rd and later consecutive failures
/// (Let's Encrypt integration guide).
const BACKOFF_SECS: [i64; 4] = [60, 600, 6_000, 86_400];
/// Let's Encrypt allows 5 failed validations per name per hour; stay below.
const MAX_FAILURES_PER_HOUR: usize = 4;
/// Re-check everything at least this often even when nothing seems due.
const MAX_SLEEP_SECS: i64 = 3_600;
const BUCKET_WINDOW_SECS: f64 = 3.0 * 3600.0;
/// Renewal-information requests in flight at once.
const MAX_ARI_REQUESTS: usize = 4;
/// When the CA gave no window (or has no ARI), ask again after this.
const ARI_RETRY_SECS: i64 = 12 * 3_600;
/// While orders keep finishing, `certs.json` is rewritten at most this often.
const REPORT_INTERVAL_SECS: i64 = 5;

pub struct Manager {
    pub store: Arc<dyn Store>,
    pub resolver: Arc<CertResolver>,
    pub issuer: Arc<dyn Issuer>,
    pub config: watch::Receiver<Arc<Config>>,
    /// Where `certs.json` (the report `mailconfd certs` reads) is written.
    pub state_dir: PathBuf,
}

/// The names one mail domain's certificate must cover, by domain.
fn wanted(config: &Config) -> BTreeMap<String, Vec<String>> {
    config
        .domains()
        .map(|(d, _)| (d.to_owned(), config.names_for_domain(d)))
        .collect()
}

impl Manager {
    /// Deploys every stored, unexpired certificate whose names still fit the
    /// config. Runs before the listeners open, so a restart serves at once
    /// without contacting the CA.
    pub fn deploy_stored(&self) -> usize {
        let config = self.config.borrow().clone();
        let now = unix_now();
        let mut deployed = 0;
        for (domain, names) in wanted(&config) {
            match self.store.cert(&domain) {
                Ok(Some(record)) if record.not_after > now => {
                    // Serve what the certificate covers; a missing name is ordered later.
                    let served: Vec<String> = names
                        .into_iter()
                        .filter(|n| record.names.contains(n))
                        .collect();
                    self.resolver
                        .set_domain_pem(&domain, served, record.chain_pem, record.key_pem);
                    deployed += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(domain = %domain, error = %e, "reading the stored certificate failed")
                }
            }
        }
        tracing::info!(deployed, "stored certificates deployed");
        deployed
    }

    /// Orders and renews until `shutdown`.
    ///
    /// The schedule (when each domain is next due) lives in memory: it is
    /// computed from the store at start and on every config change, and for
    /// one domain when its order ends, so a hoster with 10,000 domains pays one
    /// pass over the store per reload, not per finished order.
    pub async fn run(
        mut self,
        max_concurrent_orders: usize,
        new_orders_per_3h: u32,
        shutdown: CancellationToken,
    ) {
        let mut bucket = TokenBucket::new(new_orders_per_3h, unix_now());
        let mut in_flight: HashSet<String> = HashSet::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        let tasks = tokio_util::task::TaskTracker::new();
        let mut wanted = BTreeMap::new();
        let mut schedule: HashMap<String, (i64, bool)> = HashMap::new();
        let mut config_changed = true;
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
                schedule = wanted
                    .iter()
                    .map(|(d, names)| (d.clone(), self.due(d, names, now)))
                    .collect();
                self.write_report();
                last_report = now;
            }
            let mut wake = now + MAX_SLEEP_SECS;
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
                    break; // a finishing order wakes us
                }
                if !renewal && !bucket.take(now) {
                    wake = wake.min(bucket.next_token_at());
                    continue;
                }
                in_flight.insert(domain.clone());
                let job = Job {
                    store: self.store.clone(),
                    resolver: self.resolver.clone(),
                    issuer: self.issuer.clone(),
                    domain: domain.clone(),
                    names: names.clone(),
                };
                let done = done_tx.clone();
                tasks.spawn(async move {
                    let domain = job.domain.clone();
                    job.run().await;
                    let _ = done.send(domain);
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
                let Some(record) = self.store.cert(domain).ok().flatten() else {
                    continue;
                };
                ari_in_flight.insert(domain.clone());
                let (issuer, domain, tx) = (self.issuer.clone(), domain.clone(), ari_tx.clone());
                tasks.spawn(async move {
                    let window = issuer.renewal_window(&record).await;
                    let _ = tx.send((domain, window));
                });
            }
            let sleep = Duration::from_secs((wake - now).clamp(1, MAX_SLEEP_SECS) as u64);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = self.config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    config_changed = true;
                }
                Some(domain) = done_rx.recv() => {
                    in_flight.remove(&domain);
                    if let Some(names) = wanted.get(&domain) {
                        schedule.insert(domain.clone(), self.due(&domain, names, unix_now()));
                    }
                    // The report lists every domain: write it when the queue
                    // drains, and at most every REPORT_INTERVAL_SECS while busy.
                    let now = unix_now();
                    if in_flight.is_empty() || now - last_report >= REPORT_INTERVAL_SECS {
                        self.write_report();
                        last_report = now;
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

    fn write_report(&self) {
        let config = self.config.borrow().clone();
        let rows = super::report::rows(&config, self.store.as_ref(), unix_now());
        if let Err(e) = super::report::write_snapshot(&self.state_dir, &rows) {
            tracing::warn!(error = %e, "writing certs.json failed");
        }
    }

    /// When `domain` next needs an order, and whether that order is a renewal
    /// of a certificate for the same names.
    fn due(&self, domain: &str, names: &[String], now: i64) -> (i64, bool) {
        let record = self.store.cert(domain).ok().flatten();
        let status = self.store.status(domain).ok().flatten().unwrap_or_default();
        let (base, renewal) = match &record {
            Some(r) if names.iter().all(|n| r.names.contains(n)) => (renew_at(r, domain), true),
            _ => (now, false),
        };
        (base.max(status.next_attempt.unwrap_or(0)), renewal)
    }
}

/// A stable point in the CA's window, spread by domain (RFC 9773 asks for a
/// random one; a hash spreads as well and survives restarts).
fn time_in_window(w: &RenewalWindow, domain: &str) -> i64 {
    let span = (w.end - w.start).max(0) as u64;
    w.start + (fnv1a(domain.as_bytes()) % (span + 1)) as i64
}

/// Two thirds into the lifetime (half for lifetimes under 10 days, as Let's
/// Encrypt advises), minus a stable per-domain jitter of up to 1/20 of the
/// lifetime so that certificates issued together do not renew together.
fn renew_at(record: &CertRecord, domain: &str) -> i64 {
    let lifetime = (record.not_after - record.not_before).max(1);
    let fraction_num = if lifetime < 10 * 86_400 { 1 } else { 2 };
    let fraction_den = if lifetime < 10 * 86_400 { 2 } else { 3 };
    let jitter_range = (lifetime / 20).max(1);
    let jitter = (fnv1a(domain.as_bytes()) % jitter_range as u64) as i64;
    record.not_before + lifetime * fraction_num / fraction_den - jitter
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One order for one domain, with its bookkeeping.
struct Job {
    store: Arc<dyn Store>,
    resolver: Arc<CertResolver>,
    issuer: Arc<dyn Issuer>,
    domain: String,
    names: Vec<String>,
}

impl Job {
    async fn run(self) {
        let started = unix_now();
        tracing::info!(domain = %self.domain, names = %self.names.join(","), "ordering certificate");
        let previous = self.store.cert(&self.domain).ok().flatten();
        let result = self
            .issuer
            .issue(&self.domain, &self.names, previous.as_ref())
            .await;
        let mut status = self
            .store
            .status(&self.domain)
            .ok()
            .flatten()
            .unwrap_or_default();
        status.last_attempt = Some(started);
        match result.and_then(|issued| self.deploy(issued)) {
            Ok(not_after) => {
                status = DomainStatus {
                    last_attempt: Some(started),
                    ..Default::default()
                };
                tracing::info!(domain = %self.domain, not_after, "certificate deployed");
            }
            Err(e) => {
                let now = unix_now();
                status.failures += 1;
                status.recent_failures.retain(|t| now - t < 3_600);
                status.recent_failures.push(now);
                status.next_attempt = Some(next_attempt(&status, now, e.retry_after_secs));
                status.last_error = Some(e.message.clone());
                let retry_in_secs = status.next_attempt.unwrap_or(now) - now;
                tracing::warn!(domain = %self.domain, error = %e.message, retry_in_secs, "certificate order failed; the old certificate, if any, keeps serving");
            }
        }
        if let Err(e) = self.store.put_status(&self.domain, &status) {
            tracing::error!(domain = %self.domain, error = %e, "storing the domain status failed");
        }
    }

    /// Stores the certificate (flushed), then serves it. Returns its expiry.
    fn deploy(&self, issued: super::Issued) -> Result<i64, IssueError> {
        let key = certkey::certified_key(&issued.chain_pem, &issued.key_pem)
            .map_err(|e| IssueError::new(format!("the CA's certificate is unusable: {e}")))?;
        let info = certkey::info(&issued.chain_pem)
            .map_err(|e| IssueError::new(format!("the CA's certificate is unusable: {e}")))?;
        let record = CertRecord {
            names: self.names.clone(),
            key_pem: issued.key_pem,
            chain_pem: issued.chain_pem,
            not_before: info.not_before,
            not_after: info.not_after,
            issuer: info.issuer,
            source: self.issuer.source().to_owned(),
        };
        self.store
            .put_cert(&self.domain, &record)
            .map_err(|e| IssueError::new(format!("storing the certificate: {e:#}")))?;
        self.resolver
            .set_domain(&self.domain, self.names.clone(), key);
        Ok(info.not_after)
    }
}

/// Backoff by consecutive failures, the CA's own wait, and the hourly budget.
fn next_attempt(status: &DomainStatus, now: i64, retry_after_secs: Option<u64>) -> i64 {
    let step = (status.failures.max(1) as usize - 1).min(BACKOFF_SECS.len() - 1);
    let mut next = now + BACKOFF_SECS[step];
    if let Some(wait) = retry_after_secs {
        next = next.max(now + wait as i64);
    }
    if status.recent_failures.len() >= MAX_FAILURES_PER_HOUR {
        let oldest = status.recent_failures.iter().copied().min().unwrap_or(now);
        next = next.max(oldest + 3_600);
    }
    next
}

/// `capacity` new orders per 3 hours, refilled continuously.
struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    updated: i64,
}

impl TokenBucket {
    fn new(capacity: u32, now: i64) -> TokenBucket {
        let capacity = f64::from(capacity.max(1));
        TokenBucket {
            capacity,
            tokens: capacity,
            per_sec: capacity / BUCKET_WINDOW_SECS,
            updated: now,
        }
    }

    fn take(&mut self, now: i64) -> bool {
        self.tokens =
            (self.tokens + (now - self.updated).max(0) as f64 * self.per_sec).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_token_at(&self) -> i64 {
        self.updated + ((1.0 - self.tokens).max(0.0) / self.per_sec).ceil() as i64
    }
}

#[cfg(test)]
mod tests;
