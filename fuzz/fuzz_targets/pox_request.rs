//! The POX request parser: never panics; what it returns is trimmed, and an
//! address it yields that validates renders into a well-formed answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailconfd::render::autodiscover::{
    MAX_REQUEST_BYTES, RequestError, ResponseSchema, parse_request, render_with_time,
};
use mailconfd_fuzz::{assert_document, assert_valid_address, router_config};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(request) => {
            assert!(data.len() <= MAX_REQUEST_BYTES);
            assert!(!request.email.is_empty());
            assert_eq!(request.email, request.email.trim());
            if let ResponseSchema::Other(uri) = &request.schema {
                assert_eq!(uri, uri.trim());
            }
            if let Ok(address) = request.address() {
                assert_valid_address(&address);
                let config = router_config();
                let provider = config
                    .provider_for_domain(address.domain())
                    .unwrap_or(&config.providers[0]);
                let doc = render_with_time(provider, &address, &request.schema, "12:34:56.0000000");
                assert_document(&doc);
            }
        }
        Err(RequestError::TooLarge) => assert!(data.len() > MAX_REQUEST_BYTES),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
