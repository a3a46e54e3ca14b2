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
//!
//! Backends: `sled` (embedded, one node, the default) and `postgres` (shared
//! by several nodes: it also holds order leases and challenge answers, see
//! that module). `dump` moves everything between them.

pub mod dump;
pub mod postgres;
mod sled;

use std::path::{Path, PathBuf};

pub use self::postgres::PostgresStore;
pub use self::sled::SledStore;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: ::sled::Error,
    },
    #[error("creating state directory {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database")]
    Db(#[from] ::sled::Error),
    #[error("state database closed after a write error; it is reopened at the next write")]
    Closed,
    /// The shared database did not answer (down, unreachable, too slow).
    #[error("state database {url} unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// A stored private key cannot be decrypted (wrong or missing key file).
    #[error("{0}")]
    Crypto(String),
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

    /// Everything stored, for `mailconfd state export`.
    fn dump(&self) -> Result<dump::Dump, StoreError>;

    /// Every certificate and status at once, for a start with many domains,
    /// when one query beats one per domain (a database across the network).
    /// None: read them one by one (sled, where each read is a memory lookup).
    fn bulk(&self) -> Option<Result<Bulk, StoreError>> {
        None
    }

    /// Whether other nodes share this store. Only then do leases and shared
    /// challenges mean anything; a single node skips those round trips.
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes (or extends, when this node already holds it) the right to
    /// order `domain`'s certificate from `issuer`, for the store's lease
    /// time. `Ok(false)`: another node holds it. One node: always granted.
    fn try_lease(&self, _domain: &str, _issuer: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// How often a node holding a lease must renew it while its order runs;
    /// None when leases do not expire (one node).
    fn lease_renewal(&self) -> Option<std::time::Duration> {
        None
    }

    /// Records on this node's lease the order it placed (URL and names), so
    /// that a node taking the lease over after this one dies can finish it.
    fn set_lease_order(
        &self,
        _domain: &str,
        _issuer: &str,
        _order_url: &str,
        _names: &[String],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// The order recorded on the domain's lease by its previous holder.
    fn lease_order(
        &self,
        _domain: &str,
        _issuer: &str,
    ) -> Result<Option<(String, Vec<String>)>, StoreError> {
        Ok(None)
    }

    /// Gives the lease back (only if this node holds it).
    fn release_lease(&self, _domain: &str, _issuer: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Publishes a challenge answer so that any node can answer the CA.
    fn put_challenge(&self, _answer: &ChallengeAnswer) -> Result<(), StoreError> {
        Ok(())
    }

    /// A challenge answer some node published: the key authorization for
    /// HTTP-01 (`token` given), or for TLS-ALPN-01 (`token` None) the hex
    /// SHA-256 digest of it.
    fn challenge(
        &self,
        _kind: ChallengeKind,
        _name: &str,
        _token: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Withdraws a published answer once its order ended.
    fn clear_challenge(&self, _answer: &ChallengeAnswer) -> Result<(), StoreError> {
        Ok(())
    }

    /// One token from the new-order bucket `name` (`per_3h` tokens per 3
    /// hours) that every node sharing this store draws from, taken
    /// atomically: the CA's limit is per account, and the nodes share one.
    /// `None`: not shared; the caller keeps its own bucket.
    fn take_order_token(
        &self,
        _name: &str,
        _per_3h: u32,
    ) -> Option<Result<OrderToken, StoreError>> {
        None
    }

    /// Returns a token taken for an order that was not placed after all.
    fn give_back_order_token(&self, _name: &str, _per_3h: u32) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `Store::take_order_token`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderToken {
    Taken,
    /// None left; the next one comes in this many seconds.
    EmptyFor(u64),
}

/// `Store::bulk`'s answer: records by mail domain.
#[derive(Debug, Default)]
pub struct Bulk {
    pub certs: std::collections::HashMap<String, Vec<CertRecord>>,
    /// By (domain, issuer).
    pub statuses: std::collections::HashMap<(String, String), DomainStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Http01,
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// One challenge answer, as `Store::put_challenge` shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeAnswer {
    pub kind: ChallengeKind,
    /// The DNS name being validated.
    pub name: String,
    /// HTTP-01's token; empty for TLS-ALPN-01 (one answer per name).
    pub token: String,
    /// HTTP-01: the key authorization; TLS-ALPN-01: its SHA-256, hex.
    pub value: String,
}

/// `DOMAIN|ISSUER`: a domain name never contains `|`, so a prefix scan for
/// `DOMAIN|` finds exactly that domain's records.
pub(crate) fn key(domain: &str, issuer: &str) -> String {
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
