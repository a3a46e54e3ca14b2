//! `address_from_json_path`, the Autodiscover v2 `/v1.0/<address>` path parser,
//! then the decoding the router does. What it returns is the part after the
//! prefix, never empty, with no `/` or query; an address decoded from it is
//! valid, and the router answers a GET of that path for the same address.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use mailconfd::address::EmailAddress;
use mailconfd::http::NoHooks;
use mailconfd::http::routes::{Env, Incoming, route};
use mailconfd::render::autodiscover::address_from_json_path;
use mailconfd_fuzz::{assert_valid_address, router_config};
use percent_encoding::percent_decode_str;

const PREFIX: &str = "/autodiscover/autodiscover.json/v1.0/";

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check(input);
    // The same parser on a request target as hyper delivers it.
    if let Ok(uri) = http::Uri::try_from(input)
        && let Some(pq) = uri.path_and_query()
        && let Some(address) = check(pq.as_str())
    {
        agrees_with_router(&uri, &address);
    }
});

/// The parser's own promises; the decoded address when there is a valid one.
fn check(path: &str) -> Option<EmailAddress> {
    let rest = address_from_json_path(path)?;
    assert!(
        !rest.is_empty() && !rest.contains(['/', '?']),
        "{path:?} -> {rest:?}"
    );
    let before_query = path.split_once('?').map_or(path, |(p, _)| p);
    let head = before_query
        .strip_suffix(rest)
        .unwrap_or_else(|| panic!("{rest:?} is not the end of {path:?}"));
    assert!(head.eq_ignore_ascii_case(PREFIX), "{path:?}");
    let decoded = percent_decode_str(rest).decode_utf8_lossy();
    let address = EmailAddress::parse(&decoded).ok()?;
    assert_valid_address(&address);
    Some(address)
}

fn agrees_with_router(uri: &http::Uri, address: &EmailAddress) {
    let incoming = Incoming {
        method: &Method::GET,
        host: Some("autodiscover.example.org"),
        path: uri.path(),
        query: uri.query(),
        body: b"",
        secure: true,
        accept_language: None,
    };
    let env = Env {
        redirect_plain_http: true,
        hooks: &NoHooks,
        time_of_day: "12:34:56.0000000",
        user: None,
    };
    let reply = route(&incoming, router_config(), &env);
    let served = router_config()
        .provider_for_domain(address.domain())
        .is_some();
    assert!(!reply.status.is_server_error());
    assert_eq!(
        reply.address.as_deref(),
        Some(address.to_string().as_str()),
        "router read another address from {uri}"
    );
    if served {
        assert_eq!(reply.content_type, mailconfd::render::JSON, "{uri}");
    } else {
        assert_eq!(reply.status, http::StatusCode::NOT_FOUND, "{uri}");
    }
}
