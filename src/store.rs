//! Durable state: the ACME account, certificates with their keys, and each
//! domain's issuance status, behind the small `Store` trait so that a shared
//! backend can replace sled without touching the rest.
//!
//! Contract: a `put_*` returns only after the write is flushed to disk (sled
//! without flush lost thousands of acknowledged writes to kill -9 in the
//! research runs), so whatever the caller does next may rely on it. Values are
//! JSON. Certificates and statuses are keyed by mail domain *and* issuer (the
//! ACME directory URL, or "local"), `DOMAIN|ISSUER`, so that certificates from
//! two CAs never mix (STYLE.md section 10); records written before that, keyed
//! by the domain alone, are still read, for their own issuer only. The
//! database directory is created 0700 because it holds private keys.
//!
//! The store is a copy, not the authority, for anything the certificate
//! manager decides with: a write that fails (full or read-only disk) must not
//! change what the running daemon does. Callers on the async runtime run these
//! (blocking, fsyncing) calls through `spawn_blocking`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("creating state directory {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database")]
    Db(#[from] sled::Error),
    #[error("state database closed after a write error; it is reopened at the next write")]
    Closed,
    #[error("corrupt record {key} in tree {tree}")]
    Corrupt {
        tree: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A certificate as issued, with its private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// The DNS names it covers.
    pub names: Vec<String>,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// Leaf first, then intermediates, PEM.
    pub chain_pem: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The issuer's distinguished name, for `mailconfd certs`.
    pub issuer: String,
    /// ACME directory (or "local") that issued it.
    pub source: String,
}

/// Issuance bookkeeping for one mail domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainStatus {
    /// Failed attempts since the last success.
    pub failures: u32,
    /// Unix seconds of the last failed validation attempts (kept for the
    /// per-hour failed-validation budget).
    pub recent_failures: Vec<i64>,
    pub last_error: Option<String>,
    /// Unix seconds; none = as soon as the queue allows.
    pub next_attempt: Option<i64>,
    pub last_attempt: Option<i64>,
}

/// What the certificate manager needs from durable storage.
pub trait Store: Send + Sync {
    /// The serialized ACME account for a directory URL.
    fn account(&self, directory_url: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_account(&self, directory_url: &str, credentials: &[u8]) -> Result<(), StoreError>;
    /// The certificate `issuer` (a directory URL or "local") issued for `domain`.
    fn cert(&self, domain: &str, issuer: &str) -> Result<Option<CertRecord>, StoreError>;
    /// Stores `record` under its own issuer (`record.source`).
    fn put_cert(&self, domain: &str, record: &CertRecord) -> Result<(), StoreError>;
    /// Every stored certificate for `domain`, whichever CA issued it.
    fn certs_for(&self, domain: &str) -> Result<Vec<CertRecord>, StoreError>;
    fn status(&self, domain: &str, issuer: &str) -> Result<Option<DomainStatus>, StoreError>;
    fn put_status(
        &self,
        domain: &str,
        issuer: &str,
        status: &DomainStatus,
    ) -> Result<(), StoreError>;
    /// A small blob by name (e.g. the local CA), flushed like everything else.
    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Waits for every write to reach the disk.
    fn flush(&self) -> Result<(), StoreError>;
    /// After a failed write (e.g. a full disk, now with space again): gets
    /// the backend writable again if it needs help for that. A no-op when
    /// nothing failed.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

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
}

struct Trees {
    db: sled::Db,
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
        Ok(Trees {
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
        create_private_dir(state_dir)?;
        let path = state_dir.join("db");
        let trees = Trees::open(&path)?;
        Ok(SledStore {
            path,
            trees: std::sync::RwLock::new(Some(trees)),
            broken: std::sync::atomic::AtomicBool::new(false),
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
            tree.flush()?;
            Ok(())
        });
        if result.is_err() {
            self.broken.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        result
    }
}

/// `DOMAIN|ISSUER`: a domain name never contains `|`, so a prefix scan for
/// `DOMAIN|` finds exactly that domain's records.
fn key(domain: &str, issuer: &str) -> String {
    format!("{domain}|{issuer}")
}

/// Replaces `path` with `bytes` so that after a crash or power loss it holds
/// either the old or the new content, never an empty or half file: write a
/// temporary file, fsync it, rename it over `path`, fsync the directory.
///
/// # Errors
/// Any step fails (full or read-only disk); `path` is then untouched.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = dir.join(name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let err = |source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    // Existing directories (e.g. made by systemd's StateDirectory=) are tightened too.
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(err)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests;
