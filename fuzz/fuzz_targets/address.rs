//! `EmailAddress::parse` and `normalize_domain`: what they accept is bounded,
//! free of controls and markup, has a valid host name, and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailconfd::address::{EmailAddress, check_hostname, normalize_domain};
use mailconfd_fuzz::assert_valid_address;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = EmailAddress::parse(input) {
        assert_valid_address(&a);
        // The local part is kept as typed (RFC 5321 §2.4), never rewritten.
        assert!(input.trim().starts_with(a.local_part()), "{input:?} -> {a}");
    }
    if let Ok(d) = normalize_domain(input) {
        check_hostname(&d).unwrap_or_else(|e| panic!("{input:?} -> {d:?}: {e}"));
        assert_eq!(
            normalize_domain(&d).as_deref(),
            Ok(d.as_str()),
            "not idempotent"
        );
    }
});
