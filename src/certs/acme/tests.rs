use super::errors::rate_limited_wait;
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

fn problem(kind: &str, status: u16) -> instant_acme::Problem {
    serde_json::from_value(serde_json::json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": "test",
        "status": status,
    }))
    .unwrap()
}

/// Issue 11 finding 1: `replaces` only for a certificate from the same
/// directory, and any refusal of it (alreadyReplaced, 409) means ordering
/// again without it. (Debian's Pebble 2.4 offers no renewalInfo, so
/// instant-acme never sends `replaces` to it: this is checked here, not
/// against the CA.)
#[test]
fn replaces_only_for_the_same_directory_and_retried_without_when_refused() {
    // ARI identifies a certificate by its issuer's key id (AKI) and serial.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["autoconfig.example.com".to_owned()]).unwrap();
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).unwrap();
    let record = CertRecord {
        names: vec!["autoconfig.example.com".into()],
        key_pem: key.serialize_pem(),
        chain_pem: cert.pem(),
        not_before: 0,
        not_after: 1,
        issuer: String::new(),
        source: "https://ca.example/dir".into(),
    };
    assert!(replaces_for(Some(&record), "https://ca.example/dir", true).is_some());
    assert!(replaces_for(Some(&record), "https://other.example/dir", true).is_none());
    assert!(replaces_for(Some(&record), "https://ca.example/dir", false).is_none());
    assert!(replaces_for(None, "https://ca.example/dir", true).is_none());

    assert!(refused_replacement(&problem("alreadyReplaced", 409)));
    assert!(refused_replacement(&problem("malformed", 400)));
    assert!(refused_replacement(&problem("conflict", 409)));
    assert!(!refused_replacement(&problem("badNonce", 400)));
    assert!(!refused_replacement(&problem("accountDoesNotExist", 400)));
}
