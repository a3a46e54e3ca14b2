//! Outlook's formats: POX autodiscover (POST with an XML body, and the GET
//! forms some clients send) and the v2 JSON answer.

use http::StatusCode;

use super::{
    Env, bad_address, cacheable, for_user, parse_path_address, query_address, query_param,
    with_provider,
};
use crate::address::EmailAddress;
use crate::config::Config;
use crate::http::reply::Reply;
use crate::model::Provider;
use crate::render::autodiscover;

pub(super) fn pox(body: &[u8], config: &Config, env: &Env<'_>) -> Reply {
    let request = match autodiscover::parse_request(body) {
        Ok(r) => r,
        Err(e) => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                &format!("malformed autodiscover request: {e}"),
            );
        }
    };
    let address = match EmailAddress::parse(&request.email) {
        Ok(a) => a,
        Err(e) => return bad_address(e),
    };
    let Some(provider) = config.provider_for_domain(address.domain()) else {
        return Reply::error(StatusCode::NOT_FOUND, "unknown e-mail domain").for_address(&address);
    };
    Reply::ok(autodiscover::render_with_time(
        &for_user(provider, env),
        &address,
        &request.schema,
        env.time_of_day,
    ))
    .no_store()
    .for_address(&address)
}

/// The Outlook 2006a settings for the address in the query, else for the
/// Host's mail domain with only `%EMAILDOMAIN%` filled in.
pub(super) fn pox_without_body(
    query: Option<&str>,
    config: &Config,
    env: &Env<'_>,
    host_domain: &str,
    host_provider: &Provider,
) -> Reply {
    let address = match query_address(query, &["emailaddress", "email"]) {
        Ok(a) => a,
        Err(e) => return bad_address(e),
    };
    with_provider(config, env, address.as_ref(), host_provider, |provider| {
        let doc = match &address {
            Some(a) => {
                autodiscover::render(provider, a, &autodiscover::ResponseSchema::Outlook2006a)
            }
            None => autodiscover::render_for_domain(provider, host_domain),
        };
        cacheable(Reply::ok(doc), address.is_some())
    })
}

pub(super) fn json(
    query: Option<&str>,
    address_in_path: Option<&str>,
    config: &Config,
    host_domain: &str,
) -> Reply {
    let _ = host_domain;
    let parsed = match address_in_path {
        Some(raw) => Some(parse_path_address(raw)),
        None => query_param(query, &["email"]).map(|raw| EmailAddress::parse(&raw)),
    };
    let address = match parsed {
        None => return Reply::error(StatusCode::BAD_REQUEST, "Email is required"),
        Some(Err(e)) => return bad_address(e),
        Some(Ok(a)) => a,
    };
    let Some(provider) = config.provider_for_domain(address.domain()) else {
        return Reply::error(StatusCode::NOT_FOUND, "unknown e-mail domain").for_address(&address);
    };
    let protocol = query_param(query, &["protocol"]).unwrap_or_default();
    let answer = autodiscover::render_json(provider, &address, &protocol);
    Reply::with_status(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST),
        answer.document,
    )
    .no_store()
    .for_address(&address)
}
