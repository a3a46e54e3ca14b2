//! The route table, `http::routes::route`: any method, Host, path, query and
//! body that hyper could hand over. Never a 5xx; every document served is
//! well-formed; the info log's `domain` is a host name, never client text; the
//! address kept for the debug log is a valid address; redirects go to https.
//!
//! Input: byte 0 picks the method and flags, then `host \n uri \n
//! accept-language \n body` (later fields may be missing).
#![no_main]

use http::{Method, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use mailconfd::address::{EmailAddress, check_hostname};
use mailconfd::http::NoHooks;
use mailconfd::http::routes::{Env, Incoming, route};
use mailconfd::render::Document;
use mailconfd_fuzz::{assert_document, router_config};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.splitn(4, |&b| b == b'\n');
    let host = fields.next().unwrap_or_default();
    let uri = fields.next().unwrap_or_default();
    let accept_language = fields.next();
    let body = fields.next().unwrap_or_default();

    let method = match flags & 7 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::PUT,
        4 => Method::OPTIONS,
        5 => Method::DELETE,
        6 => Method::PATCH,
        _ => Method::from_bytes(b"PROPFIND").expect("valid method"),
    };
    // Only what hyper can deliver: a parsed request target, header values
    // that are visible ASCII (`http::request_host` drops the others).
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    let host = match flags & 0x40 {
        0 => header_str(host),
        _ => None,
    };
    let accept_language = accept_language.and_then(header_str);
    let incoming = Incoming {
        method: &method,
        host,
        path: uri.path(),
        query: uri.query(),
        body,
        secure: flags & 8 != 0,
        accept_language,
    };
    let env = Env {
        redirect_plain_http: flags & 0x10 != 0,
        hooks: &NoHooks,
        time_of_day: "12:34:56.0000000",
        user: None,
    };
    let reply = route(&incoming, router_config(), &env);

    assert!(
        !reply.status.is_server_error(),
        "{:?} -> {}",
        incoming,
        reply.status
    );
    assert_document(&Document {
        content_type: reply.content_type,
        filename: None,
        body: reply.body.to_vec(),
    });
    if let Some(domain) = &reply.domain {
        check_hostname(domain).unwrap_or_else(|e| panic!("logged domain {domain:?}: {e}"));
    }
    if let Some(address) = &reply.address {
        let parsed = EmailAddress::parse(address).expect("kept address is valid");
        assert_eq!(&parsed.to_string(), address);
        assert_eq!(Some(parsed.domain()), reply.domain.as_deref());
    }
    for (name, value) in &reply.headers {
        if name == header::LOCATION {
            // Not `to_str`: hyper passes raw non-ASCII query bytes through
            // (httparse allows 0x80-0xFF), and the redirect copies them (found
            // by this target; reported, src/http is not this target's to fix).
            let location = value.as_bytes();
            assert!(location.starts_with(b"https://"), "{value:?}");
            assert!(!location.iter().any(u8::is_ascii_control), "{value:?}");
            assert!(reply.status.is_redirection());
        }
    }
    if reply.status == StatusCode::OK && *incoming.method == Method::GET {
        assert!(!reply.body.is_empty());
    }
});

fn header_str(bytes: &[u8]) -> Option<&str> {
    http::HeaderValue::from_bytes(bytes).ok()?;
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
}
