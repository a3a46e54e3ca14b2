use super::*;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const PLIST: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
<plist version=\"1.0\">\n<dict>\n\t<key>PayloadType</key>\n\t<string>Configuration</string>\n</dict>\n</plist>\n";

/// 2023-11-14T22:13:20Z: a fixed time, so a failure reproduces.
fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A throw-away root -> intermediate -> leaf, the leaf a TLS server certificate like the
/// ACME one (serverAuth only), with the leaf key as rustls loads it for TLS.
struct Pki {
    root_pem: String,
    key: CertifiedKey,
}

fn ca_params(cn: &str, constraint: BasicConstraints) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(constraint);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn pki(leaf_alg: &'static rcgen::SignatureAlgorithm) -> Pki {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let root_params = ca_params("mailconfd test root", BasicConstraints::Unconstrained);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, &root_key);

    let inter_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let inter_params = ca_params(
        "mailconfd test intermediate",
        BasicConstraints::Constrained(0),
    );
    let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
    let inter_issuer = Issuer::new(inter_params, &inter_key);

    let leaf_key = KeyPair::generate_for(leaf_alg).unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["autoconfig.example.org".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "autoconfig.example.org");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &inter_issuer).unwrap();

    let signing_key = any_supported_type(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        leaf_key.serialize_der(),
    )))
    .unwrap();
    Pki {
        root_pem: root.pem(),
        key: CertifiedKey::new(vec![leaf.der().clone(), inter.der().clone()], signing_key),
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed to run these tests (apt-get install openssl)")
}

/// Signs `PLIST` with `pki`, then checks the result the way a client would: OpenSSL
/// verifies the chain to the root and extracts exactly the content; the structure carries
/// the three signed attributes and the leaf and intermediate but not the root; a changed
/// content byte fails verification.
fn sign_and_verify_with_openssl(pki: &Pki, signature_alg_name: &str) {
    let signed = sign_profile(PLIST, &pki.key, signing_time()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), &pki.root_pem).unwrap();
    std::fs::write(dir.path().join("signed"), &signed).unwrap();

    let verify = [
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        "signed",
        "-CAfile",
        "root.pem",
        "-purpose",
        "any",
        "-out",
        "extracted",
    ];
    let out = openssl(dir.path(), &verify);
    assert!(
        out.status.success(),
        "openssl cms -verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("extracted")).unwrap(), PLIST);

    let out = openssl(
        dir.path(),
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "signed",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    for attr in ["contentType", "messageDigest", "signingTime"] {
        assert_eq!(
            dump.matches(&format!("object: {attr} ")).count(),
            1,
            "{attr} in:\n{dump}"
        );
    }
    assert!(dump.contains("UTCTIME:Nov 14 22:13:20 2023 GMT"), "{dump}");
    assert!(
        dump.contains("algorithm: sha256 (2.16.840.1.101.3.4.2.1)"),
        "{dump}"
    );
    assert!(
        dump.contains(signature_alg_name),
        "{signature_alg_name} in:\n{dump}"
    );
    assert_eq!(dump.matches("d.certificate:").count(), 2, "{dump}");
    assert!(
        dump.contains("subject: CN=autoconfig.example.org"),
        "{dump}"
    );
    assert!(
        dump.contains("subject: CN=mailconfd test intermediate"),
        "{dump}"
    );
    assert!(!dump.contains("subject: CN=mailconfd test root"), "{dump}");

    let at = signed
        .windows(PLIST.len())
        .position(|w| w == PLIST)
        .expect("the content is attached verbatim");
    let mut tampered = signed.clone();
    tampered[at + PLIST.len() / 2] ^= 0x01;
    std::fs::write(dir.path().join("signed"), &tampered).unwrap();
    let out = openssl(dir.path(), &verify);
    assert!(
        !out.status.success(),
        "a changed content byte must not verify"
    );
}

#[test]
fn ecdsa_p256_profile_verifies_with_openssl() {
    sign_and_verify_with_openssl(&pki(&rcgen::PKCS_ECDSA_P256_SHA256), "ecdsa-with-SHA256");
}

#[test]
fn rsa_2048_profile_verifies_with_openssl() {
    sign_and_verify_with_openssl(&pki(&rcgen::PKCS_RSA_SHA256), "sha256WithRSAEncryption");
}

#[test]
fn signed_attributes_are_der_sorted_and_content_is_attached() {
    let pki = pki(&rcgen::PKCS_ECDSA_P256_SHA256);
    let signed = sign_profile(PLIST, &pki.key, signing_time()).unwrap();
    let ci = ContentInfo::from_der(&signed).unwrap();
    assert_eq!(ci.content_type, ID_SIGNED_DATA);
    let sd: SignedData = ci.content.decode_as().unwrap();
    assert_eq!(sd.version, CmsVersion::V1);
    let econtent = sd.encap_content_info.econtent.unwrap();
    assert_eq!(
        econtent.decode_as::<OctetString>().unwrap().as_bytes(),
        PLIST
    );
    let si = sd.signer_infos.0.get(0).unwrap();
    // Decoding a SET OF in DER order succeeds only if the encoder sorted it; the order
    // is fixed by the encodings' lengths: contentType, signingTime, messageDigest.
    let oids: Vec<_> = si
        .signed_attrs
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.oid)
        .collect();
    assert_eq!(oids, [ID_CONTENT_TYPE, ID_SIGNING_TIME, ID_MESSAGE_DIGEST]);
    let SignerIdentifier::IssuerAndSerialNumber(sid) = &si.sid else {
        panic!("signer must be identified by issuerAndSerialNumber");
    };
    let leaf = Certificate::from_der(pki.key.cert[0].as_ref()).unwrap();
    assert_eq!(sid.issuer, leaf.tbs_certificate.issuer);
    assert_eq!(sid.serial_number, leaf.tbs_certificate.serial_number);
}

#[test]
fn key_of_another_certificate_is_refused() {
    let a = pki(&rcgen::PKCS_ECDSA_P256_SHA256);
    let b = pki(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mixed = CertifiedKey::new(a.key.cert.clone(), b.key.key.clone());
    let err = sign_profile(PLIST, &mixed, signing_time()).unwrap_err();
    assert!(matches!(err, SignError::KeyMismatch(_)), "{err:?}");
}

#[test]
fn p384_key_is_refused() {
    let pki = pki(&rcgen::PKCS_ECDSA_P384_SHA384);
    let err = sign_profile(PLIST, &pki.key, signing_time()).unwrap_err();
    assert!(matches!(err, SignError::UnsupportedKey { .. }), "{err:?}");
}

#[test]
fn empty_or_broken_chain_is_refused() {
    let pki = pki(&rcgen::PKCS_ECDSA_P256_SHA256);
    let empty = CertifiedKey::new(Vec::new(), pki.key.key.clone());
    let err = sign_profile(PLIST, &empty, signing_time()).unwrap_err();
    assert!(matches!(err, SignError::NoCertificate), "{err:?}");

    let garbage = CertifiedKey::new(
        vec![
            pki.key.cert[0].clone(),
            CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]),
        ],
        pki.key.key.clone(),
    );
    let err = sign_profile(PLIST, &garbage, signing_time()).unwrap_err();
    assert!(
        matches!(err, SignError::Certificate { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn signing_time_is_utc_time_until_2049() {
    let y2049 = UNIX_EPOCH + Duration::from_secs(2_524_607_999); // 2049-12-31T23:59:59Z
    assert!(matches!(cms_time(y2049).unwrap(), Time::UtcTime(_)));
    assert!(matches!(
        cms_time(y2049 + Duration::from_secs(1)).unwrap(),
        Time::GeneralTime(_)
    ));
    assert!(matches!(
        cms_time(UNIX_EPOCH - Duration::from_secs(1)),
        Err(SignError::SigningTime(_))
    ));
}
