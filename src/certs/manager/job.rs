//! One order for one domain: ask the issuer, store the certificate, serve it.
//! The bookkeeping (failures, backoff) is the manager's, in memory.

use std::sync::Arc;

use tokio::sync::watch;

use super::super::{IssueError, Issued, Issuer};
use crate::config::Config;
use crate::store::{CertRecord, Store};
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
}

impl Job {
    pub(super) async fn run(self) -> Outcome {
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
