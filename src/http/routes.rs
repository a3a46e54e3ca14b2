//! The route table: (method, Host, path, query, body) -> a reply.
//!
//! Synchronous and free of sockets, so the whole table is testable without a
//! server. Which provider answers is decided by the address's domain when the
//! request carries one, else by the Host name; an address in a domain we do not
//! serve gets 404, never another provider's data.

use std::borrow::Cow;

use http::{Method, StatusCode, header};

use super::reply::Reply;
use crate::address::{AddressError, EmailAddress};
use crate::config::Config;
use crate::http::Hooks;
use crate::metrics::Format;
use crate::model::{Provider, UserValues};
use crate::render::{Document, autodiscover, mobileconfig, mta_sts, pacc, page, thunderbird};

mod hosts;
mod outlook;
mod paths;
use hosts::strip_port;
pub use hosts::{HostKind, classify_host};
use outlook::{json, pox, pox_without_body};
pub use paths::format_of_path;
use paths::{Route, json_path_address, match_path, parse_path_address};

/// The request, reduced to what routing needs.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub method: &'a Method,
    /// The Host header (HTTP/1) or :authority (HTTP/2), as sent.
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// Arrived over TLS.
    pub secure: bool,
    /// The Accept-Language header, for the settings page.
    pub accept_language: Option<&'a str>,
}

/// What the route table needs besides the config: facts about this server.
pub struct Env<'a> {
    /// Plain HTTP only serves what must work over HTTP and redirects the rest
    /// (true whenever TLS is on; false for `tls.mode = "off"`).
    pub redirect_plain_http: bool,
    /// ACME HTTP-01 answers and profile signing.
    pub hooks: &'a dyn Hooks,
    /// Current UTC time of day (`HH:MM:SS.fffffff`), for POX error documents.
    pub time_of_day: &'a str,
    /// What the provider's directory knows about the request's address
    /// ([`request_address`]), looked up before routing.
    pub user: Option<&'a UserValues>,
}

/// The address a request asks about, the one a directory lookup is for: the
/// JSON path form's, else the `emailaddress`/`email` query parameter, else
/// the POX body's.
pub fn request_address(req: &Incoming<'_>) -> Option<EmailAddress> {
    // The JSON path form names its address in the path, and `json` takes
    // that one over any in the query: so does the lookup.
    if let Some(raw) = json_path_address(req.path) {
        return parse_path_address(raw).ok();
    }
    if let Ok(Some(a)) = query_address(req.query, &["emailaddress", "email"]) {
        return Some(a);
    }
    if *req.method == Method::POST && !req.body.trim_ascii().is_empty() {
        let request = autodiscover::parse_request(req.body).ok()?;
        return EmailAddress::parse(&request.email).ok();
    }
    None
}

/// The provider as the request's user sees it (their hosts, login, name).
fn for_user<'p>(provider: &'p Provider, env: &Env<'_>) -> Cow<'p, Provider> {
    match env.user {
        Some(values) => Cow::Owned(provider.for_user(values)),
        None => Cow::Borrowed(provider),
    }
}

/// Answers one request, the reply tagged with the format of the route the
/// path names (`other` when none).
pub fn route(req: &Incoming<'_>, config: &Config, env: &Env<'_>) -> Reply {
    let format = match_path(req.path).map_or(Format::other, Route::format);
    route_untagged(req, config, env).format(format)
}

fn route_untagged(req: &Incoming<'_>, config: &Config, env: &Env<'_>) -> Reply {
    let Some(host) = req.host else {
        return Reply::error(StatusCode::BAD_REQUEST, "missing Host header");
    };
    let Some((host_kind, host_domain, host_provider)) = classify_host(host, config) else {
        return unknown_host(req, env);
    };
    let Some(route) = match_path(req.path) else {
        return Reply::error(StatusCode::NOT_FOUND, "not found");
    };
    if !served_on(route, host_kind, config.serves_bare_domain(host_domain)) {
        return Reply::error(StatusCode::NOT_FOUND, "not found");
    }
    let mut reply = if !req.secure && env.redirect_plain_http {
        plain_http(route, req, config, env, host_domain, host_provider)
    } else {
        dispatch(route, req, config, env, host_domain, host_provider)
    };
    reply.domain.get_or_insert_with(|| host_domain.to_owned());
    reply
}

/// A name this config does not list: 404, except an HTTP-01 validation that
/// has an answer. With several nodes, the CA may validate a domain another
/// node ordered before this node's config (or domain source) lists it; the
/// answer exists only if a node of the cluster published it, so nothing is
/// revealed about names nobody ordered.
fn unknown_host(req: &Incoming<'_>, env: &Env<'_>) -> Reply {
    let host = req.host.unwrap_or_default().to_ascii_lowercase();
    let answer = match match_path(req.path) {
        Some(Route::AcmeChallenge(token)) if matches!(*req.method, Method::GET | Method::HEAD) => {
            env.hooks.http01(&host, token)
        }
        _ => None,
    };
    match answer {
        Some(key_auth) => Reply::ok(Document::text(key_auth.into_bytes())).no_store(),
        None => Reply::error(StatusCode::NOT_FOUND, "unknown host"),
    }
}

/// Which names answer which paths (interface.md, "Host names served").
/// `bare`: the domain itself is in its certificate (`bare_domain`), so HTTP-01
/// challenges for it arrive on the bare name.
fn served_on(route: Route<'_>, kind: HostKind, bare: bool) -> bool {
    use HostKind::*;
    match route {
        Route::Thunderbird => matches!(kind, Autoconfig | Apex),
        Route::Pox | Route::Json { .. } => matches!(kind, Autodiscover | Apex | Autoconfig),
        Route::Mobileconfig | Route::Page => matches!(kind, Autoconfig | Autodiscover),
        Route::MtaSts => kind == MtaSts,
        Route::Pacc => kind == UaAutoConfig,
        // Wherever a JMAP client may look: every name we serve.
        Route::Jmap => true,
        Route::AcmeChallenge(_) => kind != Apex || bare,
    }
}

/// Plain HTTP while TLS is on: ACME HTTP-01, the Thunderbird document (KMail
/// and others only try http), Outlook's redirect method, else a redirect.
fn plain_http(
    route: Route<'_>,
    req: &Incoming<'_>,
    config: &Config,
    env: &Env<'_>,
    domain: &str,
    provider: &Provider,
) -> Reply {
    let host = req.host.unwrap_or_default();
    match route {
        Route::AcmeChallenge(token) => {
            if !matches!(*req.method, Method::GET | Method::HEAD) {
                return Reply::method_not_allowed("GET, HEAD");
            }
            match env.hooks.http01(&host.to_ascii_lowercase(), token) {
                Some(key_auth) => Reply::ok(Document::text(key_auth.into_bytes())).no_store(),
                None => Reply::error(StatusCode::NOT_FOUND, "no such challenge"),
            }
        }
        Route::Thunderbird => dispatch(route, req, config, env, domain, provider),
        // Outlook's "HTTP redirect method" (GET) and Thunderbird's url3 (POST)
        // both expect a 302 to the https endpoint.
        Route::Pox => Reply::redirect(
            StatusCode::FOUND,
            &https_url(host, "/autodiscover/autodiscover.xml", None),
        ),
        _ => {
            let status = if matches!(*req.method, Method::GET | Method::HEAD) {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::PERMANENT_REDIRECT
            };
            Reply::redirect(status, &https_url(host, req.path, req.query))
        }
    }
}

/// The https:// form of a plain-HTTP request. The path and query are copied
/// as sent, except that bytes outside printable ASCII (which the HTTP parser
/// lets through in a request target) are percent-encoded: a Location header
/// must be ASCII (found by the router fuzz target).
fn https_url(host: &str, path: &str, query: Option<&str>) -> String {
    const NOT_PRINTABLE_ASCII: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ');
    let name = strip_port(host).unwrap_or(host);
    let path = percent_encoding::utf8_percent_encode(path, NOT_PRINTABLE_ASCII);
    match query {
        Some(q) => {
            let q = percent_encoding::utf8_percent_encode(q, NOT_PRINTABLE_ASCII);
            format!("https://{name}{path}?{q}")
        }
        None => format!("https://{name}{path}"),
    }
}

fn dispatch(
    route: Route<'_>,
    req: &Incoming<'_>,
    config: &Config,
    env: &Env<'_>,
    host_domain: &str,
    host_provider: &Provider,
) -> Reply {
    let get_only = |handler: &dyn Fn() -> Reply| {
        if matches!(*req.method, Method::GET | Method::HEAD) {
            handler()
        } else {
            Reply::method_not_allowed("GET, HEAD")
        }
    };
    match route {
        Route::Thunderbird => get_only(&|| {
            let address = match query_address(req.query, &["emailaddress", "email"]) {
                Ok(a) => a,
                Err(e) => return bad_address(e),
            };
            with_provider(config, env, address.as_ref(), host_provider, |provider| {
                // Only the asked domain: never the provider's other customers.
                let domain = address.as_ref().map_or(host_domain, |a| a.domain());
                let doc = thunderbird::render(provider, domain, address.as_ref());
                cacheable(Reply::ok(doc), address.is_some())
            })
        }),
        Route::Pox => match *req.method {
            Method::POST if !req.body.trim_ascii().is_empty() => pox(req.body, config, env),
            // A GET, or a POST with no body (Delta Chat; anyone who learnt the
            // URL from a guide for static files): the settings, as a static
            // autodiscover.xml would answer.
            Method::GET | Method::HEAD | Method::POST => {
                pox_without_body(req.query, config, env, host_domain, host_provider)
            }
            _ => Reply::method_not_allowed("GET, HEAD, POST"),
        },
        Route::Json { address_in_path } => {
            get_only(&|| json(req.query, address_in_path, config, host_domain))
        }
        Route::Mobileconfig => get_only(&|| {
            let address = match query_address(req.query, &["emailaddress", "email"]) {
                Ok(Some(a)) => a,
                Ok(None) => {
                    return Reply::error(StatusCode::BAD_REQUEST, "emailaddress is required");
                }
                Err(e) => return bad_address(e),
            };
            with_provider(config, env, Some(&address), host_provider, |provider| {
                let mut doc = mobileconfig::render(provider, &address);
                if let Some(signed) = env.hooks.sign_profile(address.domain(), &doc.body) {
                    doc.body = signed;
                }
                Reply::ok(doc).no_store()
            })
        }),
        Route::MtaSts => get_only(&|| match &host_provider.mta_sts {
            Some(policy) => {
                Reply::ok(mta_sts::render(policy)).header(header::CACHE_CONTROL, "no-cache")
            }
            None => Reply::error(StatusCode::NOT_FOUND, "not found"),
        }),
        Route::AcmeChallenge(token) => get_only(&|| match env
            .hooks
            .http01(&req.host.unwrap_or_default().to_ascii_lowercase(), token)
        {
            Some(key_auth) => Reply::ok(Document::text(key_auth.into_bytes())).no_store(),
            None => Reply::error(StatusCode::NOT_FOUND, "no such challenge"),
        }),
        Route::Page => get_only(&|| settings_page(req, config, env, host_provider)),
        Route::Pacc => get_only(&|| match pacc::render(host_provider) {
            // Public and the same for everyone; the draft wants it readable
            // from web clients, hence CORS for any origin.
            Some(doc) => {
                cacheable(Reply::ok(doc), false).header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
            }
            None => Reply::error(StatusCode::NOT_FOUND, "not found"),
        }),
        Route::Jmap => match host_provider.jmap_url() {
            // 307: the method is kept, and the operator may move the session.
            Some(url) => Reply::error(StatusCode::TEMPORARY_REDIRECT, "see Location")
                .header(header::LOCATION, url),
            None => Reply::error(StatusCode::NOT_FOUND, "no JMAP server configured"),
        },
    }
}

/// The page for people: the form, the settings for a served address, the form
/// again (400) for an invalid one, a polite 404 for a domain we do not serve.
fn settings_page(
    req: &Incoming<'_>,
    config: &Config,
    env: &Env<'_>,
    host_provider: &Provider,
) -> Reply {
    let lang = page::Lang::negotiate(req.accept_language);
    let typed = query_param(req.query, &["emailaddress", "email"]);
    let parsed = typed.as_deref().map(EmailAddress::parse);
    let (rendered, address) = match (&typed, &parsed) {
        (Some(typed), Some(Err(error))) => (
            page::render(host_provider, page::View::Invalid { typed, error }, lang),
            None,
        ),
        (_, Some(Ok(address))) => {
            let rendered = match config.provider_for_domain(address.domain()) {
                Some(provider) => page::render(
                    &for_user(provider, env),
                    page::View::Settings { address },
                    lang,
                ),
                None => page::render(host_provider, page::View::UnknownDomain { address }, lang),
            };
            (rendered, Some(address))
        }
        _ => (page::render(host_provider, page::View::Form, lang), None),
    };
    let status = match rendered.outcome {
        page::Outcome::Form | page::Outcome::Settings => StatusCode::OK,
        page::Outcome::Invalid => StatusCode::BAD_REQUEST,
        page::Outcome::UnknownDomain => StatusCode::NOT_FOUND,
    };
    let personal = rendered.outcome.is_personal();
    let mut reply = Reply::with_status(status, rendered.document)
        .header(header::CONTENT_SECURITY_POLICY, &rendered.csp)
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::VARY, "Accept-Language");
    reply = cacheable(reply, personal);
    if let Some(a) = address {
        reply = reply.for_address(a);
    }
    reply
}

/// Documents that do not depend on the address may be cached briefly; personal
/// ones must not sit in shared caches.
fn cacheable(reply: Reply, personal: bool) -> Reply {
    if personal {
        reply.no_store()
    } else {
        reply.header(header::CACHE_CONTROL, "public, max-age=300")
    }
}

/// Runs `answer` with the provider for `address`'s domain (404 when we do not
/// serve it), or the Host's provider when the request carries no address.
fn with_provider(
    config: &Config,
    env: &Env<'_>,
    address: Option<&EmailAddress>,
    host_provider: &Provider,
    answer: impl FnOnce(&Provider) -> Reply,
) -> Reply {
    let provider = match address {
        Some(a) => match config.provider_for_domain(a.domain()) {
            Some(p) => for_user(p, env),
            None => return Reply::error(StatusCode::NOT_FOUND, "unknown e-mail domain"),
        },
        None => Cow::Borrowed(host_provider),
    };
    let mut reply = answer(&provider);
    if let Some(a) = address {
        reply.domain = Some(a.domain().to_owned());
        reply.address = Some(a.to_string());
    }
    reply
}

/// The first of `keys` in the query (names compared without case), parsed.
fn query_address(query: Option<&str>, keys: &[&str]) -> Result<Option<EmailAddress>, AddressError> {
    query_param(query, keys)
        .map(|raw| EmailAddress::parse(&raw))
        .transpose()
}

fn bad_address(e: AddressError) -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        &format!("invalid e-mail address: {e}"),
    )
}

fn query_param<'q>(query: Option<&'q str>, keys: &[&str]) -> Option<Cow<'q, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| keys.iter().any(|key| k.eq_ignore_ascii_case(key)))
        .map(|(_, v)| v)
}
#[cfg(test)]
mod tests;
