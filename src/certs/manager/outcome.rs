//! What an order's end changes: memory first (the schedule's authority),
//! then the store's copy, then the lease; and the metrics.

use super::job::Outcome;
use super::{Manager, persist, schedule, serve_stored, unix_now};
use crate::store::{CertRecord, DomainStatus};

impl Manager {
    /// Books an order's outcome in memory, then copies it to the store.
    pub(super) async fn finish(&mut self, domain: &str, outcome: Outcome) {
        let now = unix_now();
        let status = self.statuses.entry(domain.to_owned()).or_default();
        status.last_attempt = Some(now);
        match outcome {
            Outcome::Deployed(record) => {
                self.count_order(None);
                let status = self.statuses.entry(domain.to_owned()).or_default();
                *status = DomainStatus {
                    last_attempt: Some(now),
                    ..Default::default()
                };
                tracing::info!(domain = %domain, not_after = record.not_after, "certificate deployed");
                self.unsaved.remove(domain);
                self.records.insert(domain.to_owned(), record);
                self.note_write(Ok(()));
            }
            Outcome::Unsaved(record, error) => {
                self.count_order(None);
                let status = self.statuses.entry(domain.to_owned()).or_default();
                *status = DomainStatus {
                    last_attempt: Some(now),
                    ..Default::default()
                };
                tracing::info!(domain = %domain, not_after = record.not_after, "certificate deployed");
                self.note_write(Err(format!("storing the certificate: {error}")));
                self.unsaved.insert(domain.to_owned());
                self.records.insert(domain.to_owned(), record);
            }
            Outcome::Dropped => {
                self.statuses.remove(domain);
                self.release_lease(domain).await;
                return;
            }
            Outcome::Adopted(record) => {
                self.adopt_record(domain, record);
                self.release_lease(domain).await;
                return;
            }
            Outcome::Postponed {
                until,
                status,
                reason,
            } => {
                // Memory only: the store's copy is another node's to write.
                let status = match status {
                    Some(s) => self
                        .statuses
                        .entry(domain.to_owned())
                        .insert_entry(s)
                        .into_mut(),
                    None => self.statuses.entry(domain.to_owned()).or_default(),
                };
                status.next_attempt = Some(status.next_attempt.unwrap_or(0).max(until));
                tracing::debug!(domain = %domain, retry_in_secs = until - now, reason = %reason, "order postponed");
                return;
            }
            Outcome::Failed(e) => {
                self.count_order(Some(&e.message));
                let status = self.statuses.entry(domain.to_owned()).or_default();
                let next = schedule::record_failure(status, now, e.retry_after_secs);
                status.last_error = Some(e.message.clone());
                tracing::warn!(domain = %domain, error = %e.message, retry_in_secs = next - now, "certificate order failed; the old certificate, if any, keeps serving");
            }
        }
        let copy = self.statuses.get(domain).cloned().unwrap_or_default();
        let (store, domain_owned, issuer) = (
            self.store.clone(),
            domain.to_owned(),
            self.issuer_name().to_owned(),
        );
        let result =
            tokio::task::spawn_blocking(move || store.put_status(&domain_owned, &issuer, &copy))
                .await;
        self.note_write(persist::flatten(result));
        // After the status: a node that takes the lease next sees the backoff.
        self.release_lease(domain).await;
    }

    pub(super) fn count_order(&self, failure: Option<&str>) {
        use crate::metrics::{AcmeError, AcmeErrorLabels, Outcome as Result_, OutcomeLabels};
        let Some(m) = &self.metrics else { return };
        let result = if failure.is_some() {
            Result_::failed
        } else {
            Result_::ok
        };
        m.acme_orders.get_or_create(&OutcomeLabels { result }).inc();
        if let Some(message) = failure {
            m.acme_order_failures
                .get_or_create(&AcmeErrorLabels {
                    error: AcmeError::classify(message),
                })
                .inc();
        }
    }

    /// Shared store: lets other nodes order `domain` again.
    pub(super) async fn release_lease(&self, domain: &str) {
        if !self.store.is_shared() {
            return;
        }
        let (store, d, issuer) = (
            self.store.clone(),
            domain.to_owned(),
            self.issuer_name().to_owned(),
        );
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || store.release_lease(&d, &issuer)).await
        {
            // It expires by itself after lease_secs.
            tracing::debug!(domain = %domain, error = %e, "releasing the order lease failed");
        }
    }

    /// Takes `record` (another node's, from the shared store) as this
    /// domain's certificate, already served: its schedule starts over.
    pub(super) fn adopt_record(&mut self, domain: &str, record: CertRecord) {
        self.statuses.insert(
            domain.to_owned(),
            DomainStatus {
                last_attempt: self.statuses.get(domain).and_then(|s| s.last_attempt),
                ..Default::default()
            },
        );
        self.unsaved.remove(domain);
        self.records.insert(domain.to_owned(), record);
    }

    /// The change feed said another node stored `domain`'s certificate: if
    /// it is newer than ours, serve it. True when it was taken.
    pub(super) async fn take_stored(&mut self, domain: &str, names: &[String]) -> bool {
        let (store, d, issuer) = (
            self.store.clone(),
            domain.to_owned(),
            self.issuer_name().to_owned(),
        );
        let record = match tokio::task::spawn_blocking(move || store.cert(&d, &issuer)).await {
            Ok(Ok(Some(r))) => r,
            Ok(Err(e)) => {
                tracing::debug!(domain = %domain, error = %e, "reading a changed certificate failed; the next poll retries");
                return false;
            }
            _ => return false,
        };
        if self
            .records
            .get(domain)
            .is_some_and(|own| own.not_after >= record.not_after)
        {
            return false;
        }
        serve_stored(&self.resolver, domain, names, &record);
        tracing::info!(domain = %domain, not_after = record.not_after, "serving a certificate another node stored");
        self.adopt_record(domain, record);
        true
    }
}
