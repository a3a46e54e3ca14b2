//! `mailconfd state export` / `state import`: everything a store holds, as
//! one JSON document, so that a node can move from sled to PostgreSQL (and
//! back) keeping its ACME account and certificates: no re-issuance, no
//! spent rate limit. The file holds private keys: it is written 0600.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{CertRecord, DomainStatus, Store};

/// Bumped when the layout changes; `import` refuses versions it does not know.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dump {
    pub format: u32,
    /// ACME accounts by directory URL; the credentials base64.
    pub accounts: Vec<Account>,
    pub certs: Vec<Cert>,
    pub statuses: Vec<Status>,
    /// Small named values (the local CA, the new-order token bucket); base64.
    pub blobs: Vec<Blob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub directory_url: String,
    pub credentials: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cert {
    pub domain: String,
    pub record: CertRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub domain: String,
    pub issuer: String,
    pub status: DomainStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub name: String,
    pub value: String,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub accounts: usize,
    pub certs: usize,
    pub statuses: usize,
    pub blobs: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ACME account(s), {} certificate(s), {} domain status(es), {} blob(s)",
            self.accounts, self.certs, self.statuses, self.blobs
        )
    }
}

impl Dump {
    pub fn new() -> Dump {
        Dump {
            format: FORMAT_VERSION,
            ..Dump::default()
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            accounts: self.accounts.len(),
            certs: self.certs.len(),
            statuses: self.statuses.len(),
            blobs: self.blobs.len(),
        }
    }

    pub fn push_account(&mut self, directory_url: &str, credentials: &[u8]) {
        self.accounts.push(Account {
            directory_url: directory_url.to_owned(),
            credentials: b64().encode(credentials),
        });
    }

    pub fn push_blob(&mut self, name: &str, value: &[u8]) {
        self.blobs.push(Blob {
            name: name.to_owned(),
            value: b64().encode(value),
        });
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Writes `store`'s content to `path`, created 0600 (it holds private keys).
///
/// # Errors
/// The store cannot be read, or the file cannot be written.
pub fn export(store: &dyn Store, path: &Path) -> anyhow::Result<Counts> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dump = store.dump()?;
    let json = serde_json::to_vec_pretty(&dump).expect("a dump serializes: strings and integers");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(dump.counts())
}

/// Reads a dump from `path` and writes every record into `store`
/// (overwriting records with the same key).
///
/// # Errors
/// The file is unreadable or not a dump of a known format, or a write fails.
pub fn import(store: &dyn Store, path: &Path) -> anyhow::Result<Counts> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let dump: Dump = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a mailconfd state dump: {e}", path.display()))?;
    if dump.format != FORMAT_VERSION {
        anyhow::bail!(
            "{}: dump format {} is not supported (this build reads {FORMAT_VERSION})",
            path.display(),
            dump.format
        );
    }
    let decode = |what: &str, v: &str| {
        b64()
            .decode(v)
            .map_err(|e| anyhow::anyhow!("{}: {what}: bad base64: {e}", path.display()))
    };
    for a in &dump.accounts {
        store.put_account(&a.directory_url, &decode("account", &a.credentials)?)?;
    }
    for c in &dump.certs {
        store.put_cert(&c.domain, &c.record)?;
    }
    for s in &dump.statuses {
        store.put_status(&s.domain, &s.issuer, &s.status)?;
    }
    for b in &dump.blobs {
        store.put_blob(&b.name, &decode("blob", &b.value)?)?;
    }
    store.flush()?;
    Ok(dump.counts())
}

/// Splits a `DOMAIN|ISSUER` key (sled's layout).
pub(super) fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('|')
}
