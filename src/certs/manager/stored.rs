//! Serving what the store already holds: at start (before the listeners
//! open) and whenever a stored certificate is adopted.

use super::{Manager, unix_now, wanted};
use crate::store::CertRecord;
use crate::tls::CertResolver;

/// Serves a stored certificate for the names of `domain` the config wants
/// and the certificate covers; a missing name is ordered later.
pub(super) fn serve_stored(
    resolver: &CertResolver,
    domain: &str,
    wanted: &[String],
    record: &CertRecord,
) {
    let served: Vec<String> = wanted
        .iter()
        .filter(|n| record.names.contains(n))
        .cloned()
        .collect();
    resolver.set_domain_pem(
        domain,
        served,
        record.chain_pem.clone(),
        record.key_pem.clone(),
    );
}

impl Manager {
    /// Deploys every stored, unexpired certificate whose names still fit the
    /// config: the configured CA's, or another CA's until it is replaced.
    /// Runs before the listeners open, so a restart serves at once without
    /// contacting the CA.
    pub fn deploy_stored(&self) -> usize {
        let config = self.config.borrow().clone();
        let now = unix_now();
        let mut deployed = 0;
        // A shared database: one query for all, not one per domain. When it
        // fails (down at start), per-domain reads fall back to the local copy.
        let mut bulk = match self.store.bulk() {
            Some(Ok(b)) => Some(b),
            _ => None,
        };
        for (domain, names) in wanted(&config) {
            let stored = match bulk.as_mut() {
                Some(b) => Ok(b.certs.remove(&domain).unwrap_or_default()),
                None => self.store.certs_for(&domain),
            };
            let records = match stored {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(domain = %domain, error = %e, "reading the stored certificate failed");
                    continue;
                }
            };
            let Some(record) = crate::certs::pick(&records, self.issuer_name(), now).cloned()
            else {
                continue;
            };
            if record.source != self.issuer_name() {
                tracing::info!(domain = %domain, previous_issuer = %record.source, "serving a certificate from another CA until the configured one issues");
            }
            serve_stored(&self.resolver, &domain, &names, &record);
            deployed += 1;
        }
        tracing::info!(deployed, "stored certificates deployed");
        deployed
    }
}
