//! CMS SignedData (RFC 5652) around a served document, signed with the TLS certificate and key
//! we already hold: the format of a signed Apple `.mobileconfig` (spec/apple-mobileconfig.md §6).
//!
//! Owns the DER structure and the choice of algorithms only. It must not load keys, read files
//! or look at the clock: the caller passes the `CertifiedKey` it serves TLS with and the signing
//! time, so the same input gives the same bytes (RSA PKCS#1 v1.5), or the same bytes but for
//! the signature value (ECDSA, whose signatures are randomised).
//!
//! Apple acceptance: RSA PKCS#1 v1.5 with SHA-256 is the safe choice. ECDSA P-256 with SHA-256
//! gives a CMS that OpenSSL verifies (see the tests), but Apple-side acceptance is unverified:
//! no device was tested, no Apple document covers it, and the public reports of profiles
//! signed with Let's Encrypt certificates (mailcow-dockerized#3681, fyr77/dns-mobileconfig#23,
//! jawj/IKEv2-setup#116) use `openssl smime -sign` without saying which key type they had. If a
//! device shows "Not Verified" for an ECDSA-signed profile whose chain is complete, sign with
//! an RSA-2048 certificate instead (spec §6.1).

use std::time::SystemTime;

use aws_lc_rs::digest;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{GeneralizedTime, ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Any, DateTime, Decode, Encode};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, SignatureScheme};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::Time;

/// id-data, RFC 5652 §4: the eContentType of a plain byte payload.
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-signedData, RFC 5652 §5.1.
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-contentType, RFC 5652 §11.1.
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest, RFC 5652 §11.2.
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-signingTime, RFC 5652 §11.3.
const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
/// id-sha256, RFC 5754 §2.2.
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// ecdsa-with-SHA256, RFC 5754 §3.3.
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// sha256WithRSAEncryption, RFC 5754 §3.2.
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// The TLS signature schemes whose output is exactly a CMS signature value over SHA-256:
/// rustls's aws-lc-rs signers return a DER `ECDSA-Sig-Value` for ECDSA_NISTP256_SHA256 and a
/// PKCS#1 v1.5 block for RSA_PKCS1_SHA256, each over SHA-256 of the message. RSA-PSS is left
/// out on purpose: it would need RSASSA-PSS parameters in the AlgorithmIdentifier.
const SCHEMES: [SignatureScheme; 2] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// Why a profile could not be signed. Every case is a problem with the certificate or key
/// handed in (or a bug), not with the content: callers serve the profile unsigned and log it.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("certified key has no certificate")]
    NoCertificate,
    #[error("certificate {index} of the chain is not a DER X.509 certificate")]
    Certificate {
        index: usize,
        #[source]
        source: der::Error,
    },
    /// Re-encoding would change the signed bytes of the certificate and break its signature.
    #[error("certificate {index} of the chain is not canonical DER")]
    CertificateNotCanonical { index: usize },
    #[error("signing key does not match the leaf certificate")]
    KeyMismatch(#[source] rustls::Error),
    #[error(
        "signing key ({algorithm:?}) supports neither ECDSA P-256 nor RSA PKCS#1 v1.5 with SHA-256"
    )]
    UnsupportedKey {
        algorithm: rustls::SignatureAlgorithm,
    },
    #[error("signing time cannot be encoded")]
    SigningTime(#[source] der::Error),
    #[error("signing key failed to sign")]
    Sign(#[source] rustls::Error),
    #[error("cannot encode the CMS structure")]
    Encode(#[source] der::Error),
}

/// Wraps `content` (the XML plist) in a DER CMS SignedData (RFC 5652), content attached
/// (id-data eContent), SHA-256 digest, signed attributes contentType, messageDigest,
/// signingTime; certificates = the chain in `key.cert` (leaf + intermediates, as served in
/// TLS); signer identified by issuerAndSerialNumber of the leaf.
///
/// The signature comes from `key.key`, the same rustls signing key used for TLS: ECDSA P-256
/// (ecdsa-with-SHA256) or RSA (sha256WithRSAEncryption, PKCS#1 v1.5).
///
/// # Errors
/// [`SignError`]: an empty or malformed chain, a key that does not match the leaf or cannot
/// sign with one of the two schemes (e.g. ECDSA P-384), a signing time before 1970.
pub fn sign_profile(
    content: &[u8],
    key: &CertifiedKey,
    signing_time: SystemTime,
) -> Result<Vec<u8>, SignError> {
    let chain = parse_chain(key)?;
    let leaf = chain.first().ok_or(SignError::NoCertificate)?;

    // A key that does not belong to the leaf still yields a well-formed CMS, which the device
    // then shows as "Not Verified" with no reason; catch it here where it can be logged.
    // `Unknown` means the key cannot report its public key (e.g. an HSM): nothing to compare.
    match key.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(SignError::KeyMismatch(e)),
    }

    let signer = key
        .key
        .choose_scheme(&SCHEMES)
        .ok_or(SignError::UnsupportedKey {
            algorithm: key.key.algorithm(),
        })?;
    let signature_algorithm = match signer.scheme() {
        // RFC 5758 §3.2: parameters MUST be absent for ecdsa-with-SHA256.
        SignatureScheme::ECDSA_NISTP256_SHA256 => AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
        // RFC 5754 §3.2: parameters MUST be NULL for sha256WithRSAEncryption.
        SignatureScheme::RSA_PKCS1_SHA256 => AlgorithmIdentifierOwned {
            oid: SHA256_WITH_RSA,
            parameters: Some(Any::null()),
        },
        _ => {
            return Err(SignError::UnsupportedKey {
                algorithm: key.key.algorithm(),
            });
        }
    };
    // RFC 5754 §2: absent parameters are preferred for SHA-2 (OpenSSL writes them absent too).
    let sha256 = AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    };

    let message_digest = digest::digest(&digest::SHA256, content);
    let signed_attrs = SetOfVec::try_from(vec![
        attribute(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA))?,
        attribute(
            ID_MESSAGE_DIGEST,
            Any::encode_from(
                &OctetString::new(message_digest.as_ref()).map_err(SignError::Encode)?,
            ),
        )?,
        attribute(ID_SIGNING_TIME, Any::encode_from(&cms_time(signing_time)?))?,
    ])
    .map_err(SignError::Encode)?;

    // RFC 5652 §5.4: the signature covers the DER of the attributes as an explicit SET OF
    // (tag 0x31), not the [0] IMPLICIT form they take inside SignerInfo. `SetOfVec` encodes
    // with the SET tag and keeps its elements in DER order.
    let to_sign = signed_attrs.to_der().map_err(SignError::Encode)?;
    let signature = signer.sign(&to_sign).map_err(SignError::Sign)?;

    let signer_info = SignerInfo {
        // RFC 5652 §5.3: version 1 with issuerAndSerialNumber.
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: leaf.tbs_certificate.issuer.clone(),
            serial_number: leaf.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256.clone(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm,
        signature: OctetString::new(signature).map_err(SignError::Encode)?,
        unsigned_attrs: None,
    };

    let certificates = CertificateSet::try_from(
        chain
            .into_iter()
            .map(CertificateChoices::Certificate)
            .collect::<Vec<_>>(),
    )
    .map_err(SignError::Encode)?;

    let signed_data = SignedData {
        // RFC 5652 §5.1: version 1 with id-data content, X.509 certificates only, v1 signers.
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(SignError::Encode)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: Some(
                Any::encode_from(&OctetString::new(content).map_err(SignError::Encode)?)
                    .map_err(SignError::Encode)?,
            ),
        },
        certificates: Some(certificates),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info]).map_err(SignError::Encode)?,
    };

    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(SignError::Encode)?,
    }
    .to_der()
    .map_err(SignError::Encode)
}

/// Decodes the served chain, leaf first. The CMS re-encodes every certificate, so each must
/// come back byte for byte or its own signature would no longer verify.
fn parse_chain(key: &CertifiedKey) -> Result<Vec<Certificate>, SignError> {
    key.cert
        .iter()
        .enumerate()
        .map(|(index, der)| {
            let cert = Certificate::from_der(der.as_ref())
                .map_err(|source| SignError::Certificate { index, source })?;
            let again = cert.to_der().map_err(SignError::Encode)?;
            if again.as_slice() != der.as_ref() {
                return Err(SignError::CertificateNotCanonical { index });
            }
            Ok(cert)
        })
        .collect()
}

fn attribute(oid: ObjectIdentifier, value: der::Result<Any>) -> Result<Attribute, SignError> {
    let value = value.map_err(SignError::Encode)?;
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(SignError::Encode)?,
    })
}

/// RFC 5652 §11.3: signingTime is UTCTime for 1950-2049 and GeneralizedTime otherwise;
/// x509-cert's `Time::try_from(SystemTime)` always picks GeneralizedTime, hence this.
fn cms_time(t: SystemTime) -> Result<Time, SignError> {
    let dt = DateTime::from_system_time(t).map_err(SignError::SigningTime)?;
    if dt.year() < 2050 {
        Ok(Time::UtcTime(
            UtcTime::from_date_time(dt).map_err(SignError::SigningTime)?,
        ))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

/// Signs `profile` with the certificate `resolver` serves for `domain`, for
/// the edge's `/mobileconfig` answers. Without a certificate yet, `None`
/// (served unsigned), logged once per domain: anyone can request profiles,
/// and a line per request would let them flood the journal. A failure to
/// sign is logged and also served unsigned.
///
/// The signature (an RSA one in particular) is CPU work: on a multi-threaded
/// runtime it runs under `block_in_place`, which hands this worker's other
/// tasks to another thread first, and at most half the CPUs sign at once
/// (`SigningSlots`), so a burst of profile requests queues behind itself
/// instead of taking every core from the requests behind it.
pub fn sign_for_domain(
    resolver: &super::CertResolver,
    domain: &str,
    profile: &[u8],
) -> Option<Vec<u8>> {
    let Some(key) = resolver.domain_key(domain) else {
        if resolver.first_unsigned(domain) {
            tracing::info!(
                domain = %domain,
                "serving unsigned profiles: no certificate for the domain yet (logged once)"
            );
        }
        return None;
    };
    let sign = || {
        let _slot = resolver.signing.acquire();
        sign_profile(profile, &key, SystemTime::now())
    };
    let on_multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let signed = if on_multi_thread {
        tokio::task::block_in_place(sign)
    } else {
        sign()
    };
    match signed {
        Ok(signed) => Some(signed),
        Err(e) => {
            tracing::warn!(domain = %domain, error = %e, "signing the profile failed; serving it unsigned");
            None
        }
    }
}

/// A counting semaphore for blocking threads: how many profile signatures
/// may run at once (half the CPUs, at least one).
#[derive(Debug)]
pub struct SigningSlots {
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    max: usize,
}

impl Default for SigningSlots {
    fn default() -> SigningSlots {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        SigningSlots {
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            max: (cpus / 2).max(1),
        }
    }
}

impl SigningSlots {
    /// Blocks (the thread, which `block_in_place` has freed of other tasks)
    /// until a slot is free.
    fn acquire(&self) -> SlotGuard<'_> {
        let mut used = self
            .used
            .lock()
            .expect("never poisoned: no panics while held");
        while *used >= self.max {
            used = self
                .freed
                .wait(used)
                .expect("never poisoned: no panics while held");
        }
        *used += 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'s>(&'s SigningSlots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self
            .0
            .used
            .lock()
            .expect("never poisoned: no panics while held") -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests;
