//! The embedded, single-node backend: sled 0.34.7 in `state_dir/db`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CertRecord, DomainStatus, Store, StoreError, create_private_dir, key};

/// The sled 0.34.7 implementation.
///
/// sled stays failed after an I/O error (ENOSPC included: every later
/// operation returns it, even once space is back), so a failed write marks
/// the database broken and `recover` closes and reopens it; its recovery
/// keeps everything flushed before the error.
pub struct SledStore {
    path: PathBuf,
    trees: std::sync::RwLock<Option<Trees>>,
    broken: std::sync::atomic::AtomicBool,
    /// Our latest fsync failed: the disk, not sled, is broken. sled's close
    /// fsyncs too and panics when that fails (unless it saw an error
    /// itself), so this store is then left unclosed: the process is about
    /// to exit or to reopen it, and has nothing more to write.
    disk_failed: std::sync::atomic::AtomicBool,
    /// False for a cache of another store (sled's own background flush,
    /// every 500 ms, is enough there, and deploying 100,000 certificates must
    /// not cost 100,000 fsyncs).
    flush_writes: bool,
}

struct Trees {
    db: sled::Db,
    /// sled's log file, opened a second time only to fsync it: on Linux
    /// `Tree::flush` ends in `sync_file_range`, which writes the data but
    /// not the file's size and block map, so a record that grew the file is
    /// durable only after sled's next periodic `sync_all` (500 ms) or
    /// ext4's journal commit (5 s). A disk that fails in between loses a
    /// certificate the log already called stored.
    log_file: std::fs::File,
    accounts: sled::Tree,
    certs: sled::Tree,
    status: sled::Tree,
    blobs: sled::Tree,
}

impl Trees {
    fn open(path: &Path) -> Result<Trees, StoreError> {
        let db = sled::Config::new()
            .path(path)
            // A few MB of cache is plenty: the hot data lives in memory anyway.
            .cache_capacity(8 * 1024 * 1024)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })
        };
        let log_file = std::fs::File::open(path.join("db")).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: sled::Error::Io(e),
        })?;
        Ok(Trees {
            log_file,
            accounts: tree("accounts")?,
            certs: tree("certs")?,
            status: tree("status")?,
            blobs: tree("blobs")?,
            db,
        })
    }
}

impl SledStore {
    /// Opens (creating 0700) `state_dir/db`.
    ///
    /// # Errors
    /// The directory cannot be created, or the database is locked or broken.
    pub fn open(state_dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_at(state_dir, "db", true)
    }

    /// Opens (creating 0700) `state_dir/cache`: this node's copy of a shared
    /// store's records, read when the shared store is unreachable.
    ///
    /// # Errors
    /// As `open`.
    pub fn open_cache(state_dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_at(state_dir, "cache", false)
    }

    fn open_at(state_dir: &Path, name: &str, flush_writes: bool) -> Result<SledStore, StoreError> {
        create_private_dir(state_dir)?;
        let path = state_dir.join(name);
        let trees = Trees::open(&path)?;
        Ok(SledStore {
            path,
            trees: std::sync::RwLock::new(Some(trees)),
            broken: std::sync::atomic::AtomicBool::new(false),
            disk_failed: std::sync::atomic::AtomicBool::new(false),
            flush_writes,
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Trees) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let guard = self
            .trees
            .read()
            .expect("store lock is never poisoned: no panics while held");
        f(guard.as_ref().ok_or(StoreError::Closed)?)
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        tree: &sled::Tree,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Corrupt {
                        tree: name,
                        key: key.to_owned(),
                        source,
                    })
            }
        }
    }

    fn put_flushed(
        &self,
        tree: impl FnOnce(&Trees) -> &sled::Tree,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let result = self.read(|t| {
            let tree = tree(t);
            tree.insert(key, value)?;
            if self.flush_writes {
                tree.flush()?;
            }
            Ok(())
        });
        if result.is_err() {
            self.broken.store(true, std::sync::atomic::Ordering::SeqCst);
            return result;
        }
        if self.flush_writes {
            self.sync_log()?;
        }
        Ok(())
    }

    /// fsyncs sled's log. A failure is the disk's, not sled's: sled stays
    /// open (not reopened, not closed: see `disk_failed`).
    fn sync_log(&self) -> Result<(), StoreError> {
        let result = self.read(|t| t.log_file.sync_all().map_err(|e| sled::Error::Io(e).into()));
        // Cleared again by a sync that works: sled's own at close will too.
        self.disk_failed
            .store(result.is_err(), std::sync::atomic::Ordering::SeqCst);
        result
    }
}

impl Store for SledStore {
    fn account(&self, directory_url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|t| Ok(t.accounts.get(directory_url)?.map(|v| v.to_vec())))
    }

    fn put_account(&self, directory_url: &str, credentials: &[u8]) -> Result<(), StoreError> {
        self.put_flushed(|t| &t.accounts, directory_url, credentials)
    }

    fn cert(&self, domain: &str, issuer: &str) -> Result<Option<CertRecord>, StoreError> {
        self.read(|t| {
            if let Some(record) = Self::get_json(&t.certs, "certs", &key(domain, issuer))? {
                return Ok(Some(record));
            }
            // A record from before keys named the issuer: valid for its own issuer only.
            Ok(Self::get_json::<CertRecord>(&t.certs, "certs", domain)?
                .filter(|r| r.source == issuer))
        })
    }

    fn put_cert(&self, domain: &str, record: &CertRecord) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(record).expect("CertRecord serializes: plain strings and integers");
        self.put_flushed(|t| &t.certs, &key(domain, &record.source), &bytes)
    }

    fn certs_for(&self, domain: &str) -> Result<Vec<CertRecord>, StoreError> {
        self.read(|t| {
            let mut out: Vec<CertRecord> = Self::get_json(&t.certs, "certs", domain)?
                .into_iter()
                .collect();
            for item in t.certs.scan_prefix(format!("{domain}|")) {
                let (k, v) = item?;
                let record = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    tree: "certs",
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source,
                })?;
                out.push(record);
            }
            Ok(out)
        })
    }

    fn status(&self, domain: &str, issuer: &str) -> Result<Option<DomainStatus>, StoreError> {
        self.read(|t| Self::get_json(&t.status, "status", &key(domain, issuer)))
    }

    fn put_status(
        &self,
        domain: &str,
        issuer: &str,
        status: &DomainStatus,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(status)
            .expect("DomainStatus serializes: plain strings and integers");
        self.put_flushed(|t| &t.status, &key(domain, issuer), &bytes)
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|t| Ok(t.blobs.get(name)?.map(|v| v.to_vec())))
    }

    fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_flushed(|t| &t.blobs, name, value)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.read(|t| {
            t.db.flush()?;
            Ok(())
        })?;
        self.sync_log()
    }

    fn dump(&self) -> Result<super::dump::Dump, StoreError> {
        self.read(|t| {
            let mut dump = super::dump::Dump::new();
            for item in t.accounts.iter() {
                let (k, v) = item?;
                dump.push_account(&String::from_utf8_lossy(&k), &v);
            }
            for item in t.certs.iter() {
                let (k, v) = item?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let record: CertRecord =
                    serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                        tree: "certs",
                        key: key.clone(),
                        source,
                    })?;
                // Records from before keys named the issuer are keyed by domain alone.
                let domain = super::dump::split_key(&key).map_or(key.as_str(), |(d, _)| d);
                dump.certs.push(super::dump::Cert {
                    domain: domain.to_owned(),
                    record,
                });
            }
            for item in t.status.iter() {
                let (k, v) = item?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let Some((domain, issuer)) = super::dump::split_key(&key) else {
                    continue;
                };
                let status = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    tree: "status",
                    key: key.clone(),
                    source,
                })?;
                dump.statuses.push(super::dump::Status {
                    domain: domain.to_owned(),
                    issuer: issuer.to_owned(),
                    status,
                });
            }
            for item in t.blobs.iter() {
                let (k, v) = item?;
                dump.push_blob(&String::from_utf8_lossy(&k), &v);
            }
            Ok(dump)
        })
    }

    fn recover(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if !self.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut guard = self
            .trees
            .write()
            .expect("store lock is never poisoned: no panics while held");
        // The old instance must be gone (its file lock released) before the
        // new one opens. Until that succeeds, reads fail with `Closed`:
        // callers schedule from memory, not from the store.
        drop(guard.take());
        *guard = Some(Trees::open(&self.path)?);
        self.broken.store(false, Ordering::SeqCst);
        tracing::info!(path = %self.path.display(), "state database reopened after a write error");
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        let failed = *self.disk_failed.get_mut();
        if let Ok(trees) = self.trees.get_mut()
            && let Some(trees) = trees.take()
            && failed
        {
            tracing::warn!(path = %self.path.display(), "the state database is left unclosed: its disk failed");
            std::mem::forget(trees);
        }
    }
}

#[cfg(test)]
mod tests;
