//! The config loader, from TOML text through validation. An accepted config
//! keeps its promises to the renderers: every domain is a valid host name that
//! maps back to its provider, and every document renders well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailconfd::address::{EmailAddress, check_hostname};
use mailconfd_fuzz::assert_renders;

/// Rendering is the slow part; a few domains show whether it holds.
const MAX_RENDERED_DOMAINS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match mailconfd::config::parse(text) {
        Ok(config) => {
            for p in &config.providers {
                check_hostname(&p.id).unwrap_or_else(|e| panic!("provider id {:?}: {e}", p.id));
                assert!(!p.domains.is_empty());
                assert!(p.incoming().next().is_some() && p.outgoing().next().is_some());
            }
            for (i, (domain, provider)) in config.domains().enumerate() {
                check_hostname(domain).unwrap_or_else(|e| panic!("domain {domain:?}: {e}"));
                let found = config
                    .provider_for_domain(domain)
                    .expect("domain maps to a provider");
                assert!(
                    std::ptr::eq(found, provider),
                    "{domain} maps to another provider"
                );
                if i < MAX_RENDERED_DOMAINS {
                    let address = EmailAddress::parse(&format!("user@{domain}")).ok();
                    assert_renders(provider, domain, None);
                    assert_renders(provider, domain, address.as_ref());
                }
            }
        }
        Err(e) => {
            assert!(!e.lines().is_empty());
            let _ = e.to_string();
        }
    }
});
