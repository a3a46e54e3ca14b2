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

#[test]
fn rate_limited_waits_as_long_as_the_ca_says_within_bounds() {
    // Let's Encrypt's wording (rate-limits documentation, 2025).
    let detail = |at: &str| {
        format!(
            "too many certificates (5) already issued for this exact set of identifiers in the \
             last 168h0m0s, retry after {at}: see https://letsencrypt.org/docs/rate-limits/"
        )
    };
    let now = 1_746_630_000; // 2025-05-07 15:00:00 UTC
    assert_eq!(
        rate_limited_wait(Some(&detail("2025-05-07 15:11:29 UTC")), now),
        689
    );
    // Bounded: not less than a minute, not more than a week.
    assert_eq!(
        rate_limited_wait(Some(&detail("2025-05-07 14:00:00 UTC")), now),
        60
    );
    assert_eq!(
        rate_limited_wait(Some(&detail("2026-05-07 15:00:00 UTC")), now),
        7 * 86_400
    );
    // No date, or garbage where the date should be: an hour.
    assert_eq!(rate_limited_wait(Some("slow down"), now), 3_600);
    assert_eq!(
        rate_limited_wait(Some(&detail("2025-13-07 15:00:00 UTC")), now),
        3_600
    );
    assert_eq!(rate_limited_wait(Some("retry after 2025-05-0"), now), 3_600);
    assert_eq!(rate_limited_wait(None, now), 3_600);
}
