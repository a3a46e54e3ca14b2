//! A private CA kept in the state database: HTTPS that works on a fresh
//! machine without DNS or a public CA (`tls.mode = "local"`), as Caddy's
//! internal issuer does. Clients must trust `state_dir/local-ca.pem`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::FutureExt as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::{IssueError, Issued, Issuer};
use crate::config::KeyType;
use crate::store::{Store, StoreError};

const CA_BLOB: &str = "local-ca";
/// Leaf certificates live 30 days and are renewed after 20, like short ACME ones.
const LEAF_LIFETIME_DAYS: i64 = 30;
const CA_LIFETIME_DAYS: i64 = 3650;

pub struct LocalIssuer {
    ca_cert_pem: String,
    ca_key_pem: String,
    key_type: KeyType,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_pem: String,
}

impl LocalIssuer {
    /// Loads the CA from the store, creating it on first use, and writes its
    /// certificate to `state_dir/local-ca.pem` for clients to trust.
    ///
    /// # Errors
    /// The store fails, or the CA file cannot be written.
    pub fn open(
        store: &Arc<dyn Store>,
        state_dir: &Path,
        key_type: KeyType,
    ) -> anyhow::Result<LocalIssuer> {
        let stored = match store.blob(CA_BLOB)? {
            Some(bytes) => serde_json::from_slice::<StoredCa>(&bytes)
                .map_err(|e| anyhow::anyhow!("local CA record is corrupt: {e}"))?,
            None => {
                let ca = new_ca()?;
                let bytes = serde_json::to_vec(&ca).expect("StoredCa serializes: two strings");
                store
                    .put_blob(CA_BLOB, &bytes)
                    .map_err(|e: StoreError| anyhow::anyhow!(e))?;
                tracing::info!("created a local CA");
                ca
            }
        };
        let path = ca_file(state_dir);
        // Durably: clients are told to trust this file; after a power loss
        // it must not be empty.
        let unchanged = std::fs::read(&path).is_ok_and(|b| b == stored.cert_pem.as_bytes());
        if !unchanged {
            crate::store::write_durably(&path, stored.cert_pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        }
        Ok(LocalIssuer {
            ca_cert_pem: stored.cert_pem,
            ca_key_pem: stored.key_pem,
            key_type,
        })
    }

    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Key generation and signing: CPU work, run off the runtime's workers.
    fn issue_now(
        ca_cert_pem: &str,
        ca_key_pem: &str,
        key_type: KeyType,
        names: &[String],
    ) -> Result<Issued, IssueError> {
        let err = |e: rcgen::Error| IssueError::new(format!("local CA: {e}"));
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(err)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(err)?;
        let key = super::new_key(key_type)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(LEAF_LIFETIME_DAYS);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok(Issued {
            key_pem: key.serialize_pem(),
            // The root goes along so that profile signatures carry the whole
            // chain a device must see (the local CA has no intermediate).
            chain_pem: cert.pem(),
        })
    }
}

/// Where the local CA certificate is written for clients to trust.
pub fn ca_file(state_dir: &Path) -> PathBuf {
    state_dir.join("local-ca.pem")
}

fn new_ca() -> anyhow::Result<StoredCa> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "mailconfd local CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(CA_LIFETIME_DAYS);
    let cert = params.self_signed(&key)?;
    Ok(StoredCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Issuer for LocalIssuer {
    fn issue<'a>(
        &'a self,
        _domain: &'a str,
        names: &'a [String],
        _previous: Option<&'a crate::store::CertRecord>,
    ) -> futures_util::future::BoxFuture<'a, Result<Issued, IssueError>> {
        let (cert, key, key_type) = (
            self.ca_cert_pem.clone(),
            self.ca_key_pem.clone(),
            self.key_type,
        );
        let names = names.to_vec();
        async move {
            tokio::task::spawn_blocking(move || Self::issue_now(&cert, &key, key_type, &names))
                .await
                .map_err(|e| IssueError::new(format!("local CA: {e}")))?
        }
        .boxed()
    }

    fn source(&self) -> &str {
        "local"
    }
}
