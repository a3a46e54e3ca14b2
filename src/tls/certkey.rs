//! PEM certificate chains and keys -> what rustls serves, plus the few facts
//! about a certificate that scheduling and `mailconfd certs` need.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("unreadable PEM certificate")]
    CertPem(#[source] rustls_pki_types::pem::Error),
    #[error("unreadable PEM private key")]
    KeyPem(#[source] rustls_pki_types::pem::Error),
    #[error("private key type not supported (use ECDSA P-256/P-384 or RSA)")]
    KeyType(#[source] rustls::Error),
    #[error("private key does not match the certificate")]
    Mismatch,
    #[error("unparsable X.509 certificate")]
    X509,
}

/// Facts read from the leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: String,
}

/// Parses a chain (leaf first) and its private key into a rustls key, checking
/// that they belong together.
///
/// # Errors
/// Which part is unreadable, or that key and certificate do not match.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(CertError::CertPem)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(CertError::KeyPem)?;
    let signing_key =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(CertError::KeyType)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        // Some key types cannot report their public key; accept those.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::Mismatch),
        // webpki could not parse the leaf: not a mismatch, an unusable certificate.
        Err(_) => Err(CertError::X509),
    }
}

/// Names, validity and issuer of the first certificate in `chain_pem`.
///
/// # Errors
/// The PEM or the certificate cannot be parsed.
pub fn info(chain_pem: &str) -> Result<CertInfo, CertError> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or(CertError::NoCertificate)?
        .map_err(CertError::CertPem)?;
    info_der(&leaf)
}

pub fn info_der(der: &[u8]) -> Result<CertInfo, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| CertError::X509)?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok(CertInfo {
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        issuer: cert.issuer().to_string(),
    })
}

/// Whether a certificate name (possibly `*.` wildcard) covers `host`.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(name_matches("*.example.com", "autoconfig.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(name_matches(
            "autoconfig.example.com",
            "autoconfig.example.com"
        ));
    }

    #[test]
    fn parses_a_generated_pair_and_refuses_a_mismatch() {
        let a = rcgen::generate_simple_self_signed(vec!["autoconfig.example.com".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["other.example".into()]).unwrap();
        let key = certified_key(&a.cert.pem(), &a.signing_key.serialize_pem()).unwrap();
        assert_eq!(key.cert.len(), 1);
        assert!(matches!(
            certified_key(&a.cert.pem(), &b.signing_key.serialize_pem()),
            Err(CertError::Mismatch)
        ));
        let i = info(&a.cert.pem()).unwrap();
        assert_eq!(i.names, vec!["autoconfig.example.com"]);
        assert!(i.not_after > i.not_before);
        assert!(matches!(
            certified_key("garbage", "garbage"),
            Err(CertError::NoCertificate)
        ));
    }
}
