use super::*;

#[test]
fn alpn_challenge_certificate_carries_the_critical_acme_identifier() {
    let digest = [7u8; 32];
    let key = alpn_challenge_cert("autoconfig.example.com", &digest).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("acmeIdentifier extension");
    assert!(ext.critical);
    // OCTET STRING (0x04, 32 bytes) holding the digest.
    assert_eq!(&ext.value[..2], &[0x04, 32]);
    assert_eq!(&ext.value[2..], &digest);
    let info = crate::tls::certkey::info_der(key.cert[0].as_ref()).unwrap();
    assert_eq!(info.names, vec!["autoconfig.example.com"]);
}
