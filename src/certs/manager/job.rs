//! One order for one domain: ask the issuer, store the certificate, serve it.
//! The bookkeeping (failures, backoff) is the manager's, in memory.

use std::sync::Arc;

use tokio::sync::watch;

use super::super::{IssueError, Issued, Issuer, unix_now};
use crate::config::Config;
use crate::store::{CertRecord, DomainStatus, Store};
use crate::tls::{CertResolver, certkey};

pub(super) struct Job {
    pub(super) store: Arc<dyn Store>,
    pub(super) resolver: Arc<CertResolver>,
    pub(super) issuer: Arc<dyn Issuer>,
    pub(super) config: watch::Receiver<Arc<Config>>,
    pub(super) domain: String,
    pub(super) names: Vec<String>,
    /// The configured issuer's stored certificate this order replaces, if any.
    pub(super) previous: Option<CertRecord>,
}

/// How an order ended.
pub(super) enum Outcome {
    /// Stored and served; its expiry.
    Deployed(CertRecord),
    /// Served, but storing it failed: the manager keeps it in memory and
    /// stores it when the disk lets it (the CA issued it; ordering it again
    /// would only burn rate limit).
    Unsaved(CertRecord, String),
    /// A reload removed the domain while the order ran: not stored, not served.
    Dropped,
    Failed(IssueError),
    /// Shared store: once the lease was ours, another node's certificate was
    /// found there, newer than ours and not yet due: served, not ordered.
    Adopted(CertRecord),
    /// Shared store: not ordered now, because another node holds the
    /// lease, or backs off after a failure (`status`, its bookkeeping), or
    /// the store is unreachable. Not a failure of this domain.
    Postponed {
        until: i64,
        status: Option<DomainStatus>,
        reason: String,
    },
}

/// When a node that found the lease taken looks again. The holder's
/// certificate usually arrives first, through the change feed.
const LEASE_RECHECK_SECS: i64 = 10;
/// When a node that could not reach the shared store tries again.
const STORE_DOWN_RECHECK_SECS: i64 = 30;

impl Job {
    pub(super) async fn run(self) -> Outcome {
        let _keepalive = if self.store.is_shared() {
            if let Some(outcome) = self.claim().await {
                return outcome;
            }
            self.keep_lease()
        } else {
            None
        };
        tracing::info!(domain = %self.domain, names = %self.names.join(","), "ordering certificate");
        let result = self
            .issuer
            .issue(&self.domain, &self.names, self.previous.as_ref())
            .await;
        match result {
            Ok(issued) => self.deploy(issued).await,
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Shared store: takes the domain's lease, then looks at what other
    /// nodes left there. `None`: ours to order.
    async fn claim(&self) -> Option<Outcome> {
        let (store, domain, issuer) = (
            self.store.clone(),
            self.domain.clone(),
            self.issuer.source().to_owned(),
        );
        let looked = tokio::task::spawn_blocking(move || {
            if !store.try_lease(&domain, &issuer)? {
                return Ok(None);
            }
            Ok(Some((
                store.cert(&domain, &issuer)?,
                store.status(&domain, &issuer)?,
            )))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r: Result<_, crate::store::StoreError>| r.map_err(|e| e.to_string()));
        let now = unix_now();
        let (stored, status) = match looked {
            Ok(Some(found)) => found,
            Ok(None) => {
                tracing::debug!(domain = %self.domain, "another node is ordering this domain");
                return Some(Outcome::Postponed {
                    until: now + LEASE_RECHECK_SECS,
                    status: None,
                    reason: "another node holds the order lease".to_owned(),
                });
            }
            Err(e) => {
                return Some(Outcome::Postponed {
                    until: now + STORE_DOWN_RECHECK_SECS,
                    status: None,
                    reason: format!("no order while the shared store is unreachable: {e}"),
                });
            }
        };
        let newer = |r: &CertRecord| {
            self.previous
                .as_ref()
                .is_none_or(|p| r.not_after > p.not_after)
        };
        if let Some(record) = stored.filter(|r| {
            newer(r)
                && self.names.iter().all(|n| r.names.contains(n))
                && super::schedule::renew_at(r, &self.domain) > now
        }) {
            tracing::info!(domain = %self.domain, not_after = record.not_after, "another node's certificate found in the shared store; serving it instead of ordering");
            return Some(self.serve_adopted(record));
        }
        if let Some(status) = status.filter(|s| s.next_attempt.is_some_and(|t| t > now)) {
            return Some(Outcome::Postponed {
                until: status.next_attempt.unwrap_or(now),
                status: Some(status),
                reason: "another node's order failed recently; backing off with it".to_owned(),
            });
        }
        None
    }

    fn serve_adopted(&self, record: CertRecord) -> Outcome {
        let still_wanted = self.config.borrow().names_for_domain(&self.domain);
        super::serve_stored(&self.resolver, &self.domain, &still_wanted, &record);
        Outcome::Adopted(record)
    }

    /// Renews the lease while the order runs; stops when dropped.
    fn keep_lease(&self) -> Option<tokio_util::sync::DropGuard> {
        let every = self.store.lease_renewal()?;
        let token = tokio_util::sync::CancellationToken::new();
        let (store, domain, issuer, stop) = (
            self.store.clone(),
            self.domain.clone(),
            self.issuer.source().to_owned(),
            token.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let (s, d, i) = (store.clone(), domain.clone(), issuer.clone());
                match tokio::task::spawn_blocking(move || s.try_lease(&d, &i)).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        tracing::warn!(domain = %domain, "order lease lost to another node (this node was too slow to renew it)")
                    }
                    _ => tracing::debug!(domain = %domain, "renewing the order lease failed"),
                }
            }
        });
        Some(token.drop_guard())
    }

    /// Stores the certificate (flushed, off the runtime's workers), then
    /// serves it, if the domain is still configured.
    async fn deploy(&self, issued: Issued) -> Outcome {
        let key = match certkey::certified_key(&issued.chain_pem, &issued.key_pem) {
            Ok(k) => k,
            Err(e) => {
                return Outcome::Failed(IssueError::new(format!(
                    "the CA's certificate is unusable: {e}"
                )));
            }
        };
        let info = match certkey::info(&issued.chain_pem) {
            Ok(i) => i,
            Err(e) => {
                return Outcome::Failed(IssueError::new(format!(
                    "the CA's certificate is unusable: {e}"
                )));
            }
        };
        // Only names the config still lists are served (a reload may have
        // removed the domain, or names of it, while the order ran).
        let still_wanted = self.config.borrow().names_for_domain(&self.domain);
        let config_has_domain = self
            .config
            .borrow()
            .domains()
            .any(|(d, _)| d == self.domain);
        if !config_has_domain {
            tracing::info!(domain = %self.domain, "order finished for a domain the config no longer lists; certificate dropped");
            return Outcome::Dropped;
        }
        let record = CertRecord {
            names: self.names.clone(),
            key_pem: issued.key_pem,
            chain_pem: issued.chain_pem,
            not_before: info.not_before,
            not_after: info.not_after,
            issuer: info.issuer,
            source: self.issuer.source().to_owned(),
        };
        let store = self.store.clone();
        let (domain, to_store) = (self.domain.clone(), record.clone());
        let stored = tokio::task::spawn_blocking(move || store.put_cert(&domain, &to_store))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| format!("{e:#}")));
        let served: Vec<String> = self
            .names
            .iter()
            .filter(|n| still_wanted.contains(n))
            .cloned()
            .collect();
        self.resolver.set_domain(&self.domain, served, key);
        match stored {
            Ok(()) => Outcome::Deployed(record),
            Err(e) => Outcome::Unsaved(record, e),
        }
    }
}
