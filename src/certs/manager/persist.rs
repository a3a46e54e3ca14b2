//! The manager's copies to disk: statuses, certificates the disk refused
//! earlier, the new-order bucket and `certs.json`. All of it through
//! `spawn_blocking` (sled flushes, fsyncs), none of it relied on for
//! scheduling, and a failing disk logged once, not per write.

use super::Manager;
use crate::certs::unix_now;
use crate::store::{CertRecord, DomainStatus};

impl Manager {
    /// After a failed write: lets the store recover (sled stays failed after
    /// an I/O error until it is reopened), then stores the certificates the
    /// disk refused earlier and the statuses since. Each try is one write
    /// when the disk is still full.
    pub(super) async fn retry_store(&mut self) {
        let pending: Vec<(String, CertRecord)> = self
            .unsaved
            .iter()
            .filter_map(|d| Some((d.clone(), self.records.get(d)?.clone())))
            .collect();
        let statuses: Vec<(String, DomainStatus)> = if self.store_failing {
            self.statuses
                .iter()
                .map(|(d, s)| (d.clone(), s.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let (store, issuer) = (self.store.clone(), self.issuer_name().to_owned());
        let result = tokio::task::spawn_blocking(move || {
            store.recover()?;
            let mut saved = Vec::new();
            for (domain, record) in pending {
                store.put_cert(&domain, &record)?;
                saved.push(domain);
            }
            for (domain, status) in statuses {
                store.put_status(&domain, &issuer, &status)?;
            }
            Ok::<_, crate::store::StoreError>(saved)
        })
        .await;
        match result {
            Ok(Ok(saved)) => {
                for d in saved {
                    self.unsaved.remove(&d);
                }
                self.note_write(Ok(()));
            }
            Ok(Err(e)) => self.note_write(Err(format!("{e:#}"))),
            Err(e) => self.note_write(Err(e.to_string())),
        }
    }

    pub(super) async fn store_blob(&mut self, name: &str, bytes: Vec<u8>) {
        let (store, name) = (self.store.clone(), name.to_owned());
        let result = tokio::task::spawn_blocking(move || store.put_blob(&name, &bytes)).await;
        self.note_write(flatten(result));
    }

    /// Logs a failing store once, and once when it works again.
    pub(super) fn note_write(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) if self.store_failing => {
                self.store_failing = false;
                tracing::info!(state_dir = %self.state_dir.display(), "writing the state directory works again");
            }
            Ok(()) => {}
            Err(e) if !self.store_failing => {
                self.store_failing = true;
                tracing::error!(state_dir = %self.state_dir.display(), error = %e, "writing the state directory failed; serving and scheduling continue from memory");
            }
            Err(_) => {}
        }
    }

    pub(super) async fn write_report(&mut self) {
        let config = self.config.borrow().clone();
        let now = unix_now();
        let issuer = self.issuer_name().to_owned();
        let rows = crate::certs::report::rows_from(
            &config,
            |d| self.serving_record(d, now),
            |d| self.statuses.get(d).cloned().unwrap_or_default(),
            &issuer,
            now,
        );
        let dir = self.state_dir.clone();
        let result =
            tokio::task::spawn_blocking(move || crate::certs::report::write_snapshot(&dir, &rows))
                .await;
        let result = match result {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => self.report_failing = false,
            Err(e) if !self.report_failing => {
                self.report_failing = true;
                tracing::warn!(path = %crate::certs::report::snapshot_file(&self.state_dir).display(), error = %e, "writing certs.json failed; `mailconfd certs` shows older data until it works");
            }
            Err(_) => {}
        }
    }
}

pub(super) fn flatten(
    result: Result<Result<(), crate::store::StoreError>, tokio::task::JoinError>,
) -> Result<(), String> {
    match result {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(e) => Err(e.to_string()),
    }
}
