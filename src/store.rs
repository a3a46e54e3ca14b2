//! Durable state: the ACME account, certificates with their keys, and each
//! domain's issuance status, behind the small `Store` trait so that a shared
//! backend can replace sled without touching the rest.
//!
//! Contract: a `put_*` returns only after the write is flushed to disk (sled
//! without flush lost thousands of acknowledged writes to kill -9 in the
//! research runs), so whatever the caller does next may rely on it. Values are
//! JSON, keyed by mail domain; the database directory is created 0700 because
//! it holds private keys.

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
    fn cert(&self, domain: &str) -> Result<Option<CertRecord>, StoreError>;
    fn put_cert(&self, domain: &str, record: &CertRecord) -> Result<(), StoreError>;
    /// Every stored certificate, by mail domain.
    fn certs(&self) -> Result<Vec<(String, CertRecord)>, StoreError>;
    fn status(&self, domain: &str) -> Result<Option<DomainStatus>, StoreError>;
    fn put_status(&self, domain: &str, status: &DomainStatus) -> Result<(), StoreError>;
    /// A small blob by name (e.g. the local CA), flushed like everything else.
    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Waits for every write to reach the disk.
    fn flush(&self) -> Result<(), StoreError>;
}

/// The sled 0.34.7 implementation.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    accounts: sled::Tree,
    certs: sled::Tree,
    status: sled::Tree,
    blobs: sled::Tree,
}

impl SledStore {
    /// Opens (creating 0700) `state_dir/db`.
    ///
    /// # Errors
    /// The directory cannot be created, or the database is locked or broken.
    pub fn open(state_dir: &Path) -> Result<SledStore, StoreError> {
        create_private_dir(state_dir)?;
        let path = state_dir.join("db");
        let db = sled::Config::new()
            .path(&path)
            // A few MB of cache is plenty: the hot data lives in memory anyway.
            .cache_capacity(8 * 1024 * 1024)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })
        };
        Ok(SledStore {
            accounts: tree("accounts")?,
            certs: tree("certs")?,
            status: tree("status")?,
            blobs: tree("blobs")?,
            db,
        })
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

    fn put_flushed(&self, tree: &sled::Tree, key: &str, value: &[u8]) -> Result<(), StoreError> {
        tree.insert(key, value)?;
        tree.flush()?;
        Ok(())
    }
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
        Ok(self.accounts.get(directory_url)?.map(|v| v.to_vec()))
    }

    fn put_account(&self, directory_url: &str, credentials: &[u8]) -> Result<(), StoreError> {
        self.put_flushed(&self.accounts, directory_url, credentials)
    }

    fn cert(&self, domain: &str) -> Result<Option<CertRecord>, StoreError> {
        Self::get_json(&self.certs, "certs", domain)
    }

    fn put_cert(&self, domain: &str, record: &CertRecord) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(record).expect("CertRecord serializes: plain strings and integers");
        self.put_flushed(&self.certs, domain, &bytes)
    }

    fn certs(&self) -> Result<Vec<(String, CertRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.certs.iter() {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let record = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                tree: "certs",
                key: key.clone(),
                source,
            })?;
            out.push((key, record));
        }
        Ok(out)
    }

    fn status(&self, domain: &str) -> Result<Option<DomainStatus>, StoreError> {
        Self::get_json(&self.status, "status", domain)
    }

    fn put_status(&self, domain: &str, status: &DomainStatus) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(status)
            .expect("DomainStatus serializes: plain strings and integers");
        self.put_flushed(&self.status, domain, &bytes)
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(name)?.map(|v| v.to_vec()))
    }

    fn put_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_flushed(&self.blobs, name, value)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> CertRecord {
        CertRecord {
            names: vec!["autoconfig.example.com".into()],
            key_pem: "KEY".into(),
            chain_pem: "CHAIN".into(),
            not_before: n,
            not_after: n + 100,
            issuer: "CN=test".into(),
            source: "local".into(),
        }
    }

    #[test]
    fn round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        {
            let store = SledStore::open(&state).unwrap();
            store.put_cert("example.com", &record(1)).unwrap();
            store.put_account("https://ca/dir", b"{}").unwrap();
            store
                .put_status(
                    "example.com",
                    &DomainStatus {
                        failures: 2,
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        let store = SledStore::open(&state).unwrap();
        assert_eq!(store.cert("example.com").unwrap(), Some(record(1)));
        assert_eq!(
            store.account("https://ca/dir").unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(store.status("example.com").unwrap().unwrap().failures, 2);
        assert_eq!(store.certs().unwrap().len(), 1);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn corrupt_records_are_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.certs.insert("bad.example", &b"not json"[..]).unwrap();
        assert!(matches!(
            store.cert("bad.example"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
