use super::*;

#[test]
fn strip_port_handles_names_and_refuses_ip6_literals() {
    assert_eq!(strip_port("a.example:8080"), Some("a.example"));
    assert_eq!(strip_port("a.example"), Some("a.example"));
    assert_eq!(strip_port("[::1]:80"), None);
    assert_eq!(strip_port("a.example:x"), None);
}

#[test]
fn paths_match_without_case_where_clients_differ() {
    assert_eq!(
        match_path("/Autodiscover/Autodiscover.xml"),
        Some(Route::Pox)
    );
    assert_eq!(
        match_path("/AUTODISCOVER/AUTODISCOVER.XML"),
        Some(Route::Pox)
    );
    assert_eq!(
        match_path("/autodiscover/autodiscover.json/v1.0/a@b.example"),
        Some(Route::Json {
            address_in_path: Some("a@b.example")
        })
    );
    assert_eq!(match_path("/mail/config-v1.1.xml/"), None);
    // automx2's spelling, so its published links keep working.
    assert_eq!(match_path("/mobileconfig/"), Some(Route::Mobileconfig));
    assert_eq!(match_path("/mobileconfig"), Some(Route::Mobileconfig));
    assert_eq!(match_path("/etc/passwd"), None);
}

/// A hoster: one provider, 10,000 customer domains. Every answer (each format,
/// the page, with and without an address) names the asked domain and no other
/// customer, and its size does not grow with the provider.
#[test]
fn answers_name_only_the_asked_domain_of_a_big_provider() {
    let domains: Vec<String> = (0..10_000)
        .map(|i| format!("\"customer{i}.example\""))
        .collect();
    let config = crate::config::parse(&format!(
        r#"
        [server]
        http_listen = ["127.0.0.1:0"]
        [tls]
        mode = "off"
        [[provider]]
        id = "hoster.example"
        name = "Hoster"
        domains = [{}]
        [provider.mta_sts]
        mode = "enforce"
        mx = ["mx.hoster.example"]
        [[provider.server]]
        type = "imap"
        host = "imap.hoster.example"
        [[provider.server]]
        type = "smtp"
        host = "smtp.hoster.example"
        [[provider.server]]
        type = "activesync"
        url = "https://eas.hoster.example/Microsoft-Server-ActiveSync"
        "#,
        domains.join(",")
    ))
    .unwrap();
    let env = Env {
        redirect_plain_http: false,
        hooks: &crate::http::NoHooks,
        time_of_day: "12:00:00.0000000",
        user: None,
    };
    let asked = "customer4711.example";
    let pox = format!(
        r#"<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>bob@{asked}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#
    );
    let q = format!("emailaddress=bob@{asked}");
    // (method, host prefix, path, query, body)
    type Request<'a> = (Method, &'a str, &'a str, Option<&'a str>, &'a [u8]);
    let requests: [Request<'_>; 12] = [
        (
            Method::GET,
            "autoconfig",
            "/mail/config-v1.1.xml",
            None,
            b"",
        ),
        (
            Method::GET,
            "autoconfig",
            "/mail/config-v1.1.xml",
            Some(&q),
            b"",
        ),
        (
            Method::GET,
            "",
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            None,
            b"",
        ),
        (
            Method::POST,
            "autodiscover",
            "/autodiscover/autodiscover.xml",
            None,
            pox.as_bytes(),
        ),
        (
            Method::GET,
            "autodiscover",
            "/autodiscover/autodiscover.xml",
            None,
            b"",
        ),
        (
            Method::GET,
            "autodiscover",
            "/autodiscover/autodiscover.json",
            Some("Email=bob@customer4711.example&Protocol=AutodiscoverV1"),
            b"",
        ),
        (
            Method::GET,
            "autodiscover",
            "/autodiscover/autodiscover.json/v1.0/bob@customer4711.example",
            Some("Protocol=ActiveSync"),
            b"",
        ),
        (Method::GET, "autoconfig", "/mobileconfig", Some(&q), b""),
        (Method::GET, "autoconfig", "/", None, b""),
        (Method::GET, "autoconfig", "/", Some(&q), b""),
        (
            Method::GET,
            "autoconfig",
            "/",
            Some("emailaddress=bob@elsewhere.example"),
            b"",
        ),
        (
            Method::GET,
            "mta-sts",
            "/.well-known/mta-sts.txt",
            None,
            b"",
        ),
    ];
    for (method, prefix, path, query, body) in requests {
        let host = if prefix.is_empty() {
            asked.to_owned()
        } else {
            format!("{prefix}.{asked}")
        };
        let req = Incoming {
            method: &method,
            host: Some(&host),
            path,
            query,
            body,
            secure: true,
            accept_language: None,
        };
        let reply = route(&req, &config, &env);
        let ctx = format!("{method} {host}{path}?{query:?}: {}", reply.status);
        assert!(reply.status.as_u16() < 500, "{ctx}");
        let text = String::from_utf8_lossy(&reply.body);
        for (at, _) in text.match_indices("customer") {
            let number: String = text[at + 8..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            assert_eq!(number, "4711", "{ctx}: names another customer\n{text}");
        }
        // The page carries its own CSS; the documents are a few hundred bytes.
        let cap = if path == "/" { 16 * 1024 } else { 4096 };
        assert!(reply.body.len() < cap, "{ctx}: {} bytes", reply.body.len());
    }
}

const STANDARDS: &str = r#"
    [server]
    http_listen = ["127.0.0.1:0"]
    [tls]
    mode = "off"
    [[provider]]
    id = "jmap.example"
    name = "JMAP"
    domains = ["jmap.example"]
    pacc = true
    [[provider.server]]
    type = "imap"
    host = "mail.jmap.example"
    [[provider.server]]
    type = "smtp"
    host = "mail.jmap.example"
    [[provider.server]]
    type = "jmap"
    url = "https://mail.jmap.example/jmap/session"
    [[provider]]
    id = "plain.example"
    name = "Plain"
    domains = ["plain.example"]
    [[provider.server]]
    type = "imap"
    host = "mail.plain.example"
    [[provider.server]]
    type = "smtp"
    host = "mail.plain.example"
"#;

fn get(config: &Config, host: &str, path: &str) -> Reply {
    let env = Env {
        redirect_plain_http: false,
        hooks: &crate::http::NoHooks,
        time_of_day: "12:00:00.0000000",
        user: None,
    };
    let req = Incoming {
        method: &Method::GET,
        host: Some(host),
        path,
        query: None,
        body: b"",
        secure: true,
        accept_language: None,
    };
    route(&req, config, &env)
}

fn header<'r>(reply: &'r Reply, name: &header::HeaderName) -> Option<&'r str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.to_str().ok())
}

#[test]
fn pacc_is_served_on_ua_auto_config_only_where_enabled() {
    let config = crate::config::parse(STANDARDS).unwrap();
    let path = "/.well-known/user-agent-configuration.json";
    let reply = get(&config, "UA-Auto-Config.jmap.example.", path);
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type, crate::render::JSON);
    let expected = pacc::render(config.provider_for_domain("jmap.example").unwrap()).unwrap();
    assert_eq!(
        &reply.body[..],
        &expected.body[..],
        "the bytes the digest covers"
    );
    assert_eq!(
        header(&reply, &header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("*")
    );
    // Not on the other names, not for a provider without `pacc = true`.
    assert_eq!(get(&config, "autoconfig.jmap.example", path).status, 404);
    assert_eq!(
        get(&config, "ua-auto-config.plain.example", path).status,
        404
    );
    assert_eq!(
        get(
            &config,
            "ua-auto-config.jmap.example",
            "/mail/config-v1.1.xml"
        )
        .status,
        404
    );
}

#[test]
fn well_known_jmap_redirects_to_the_session_url() {
    let config = crate::config::parse(STANDARDS).unwrap();
    for host in [
        "autoconfig.jmap.example",
        "autodiscover.jmap.example",
        "ua-auto-config.jmap.example",
    ] {
        let reply = get(&config, host, "/.well-known/jmap");
        assert_eq!(reply.status, StatusCode::TEMPORARY_REDIRECT, "{host}");
        assert_eq!(
            header(&reply, &header::LOCATION),
            Some("https://mail.jmap.example/jmap/session")
        );
    }
    assert_eq!(
        get(&config, "autoconfig.plain.example", "/.well-known/jmap").status,
        404
    );
}

/// Found by the router fuzz target: a request target with raw non-ASCII
/// bytes (httparse accepts 0x80-0xFF) must not reach the Location header raw.
#[test]
fn fuzz_router_redirect_location_is_ascii() {
    let config = crate::config::parse(
        "[tls]\nmode = \"local\"\n[[provider]]\nid = \"example.org\"\nname = \"E\"\ndomains = [\"example.org\"]\n  [[provider.server]]\n  type = \"imap\"\n  host = \"imap.example.org\"\n  [[provider.server]]\n  type = \"smtp\"\n  host = \"smtp.example.org\"\n",
    )
    .unwrap();
    let env = Env {
        redirect_plain_http: true,
        hooks: &crate::http::NoHooks,
        time_of_day: "12:00:00.0000000",
        user: None,
    };
    let req = Incoming {
        method: &Method::PUT,
        host: Some("autoconfig.example.org"),
        path: "/",
        query: Some("email=al%C3\u{7be}Fce@example.net"),
        body: b"",
        secure: false,
        accept_language: None,
    };
    let reply = route(&req, &config, &env);
    let location = header(&reply, &header::LOCATION).expect("a redirect");
    assert!(location.is_ascii(), "{location}");
    assert_eq!(
        location,
        "https://autoconfig.example.org/?email=al%C3%DE%BEFce@example.net"
    );
}

#[test]
fn every_route_tags_its_reply_with_the_format_it_answers() {
    use crate::metrics::Format;
    let config = crate::config::parse(STANDARDS).unwrap();
    for (host, path, format) in [
        (
            "autoconfig.jmap.example",
            "/mail/config-v1.1.xml",
            Format::thunderbird,
        ),
        (
            "jmap.example",
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            Format::thunderbird,
        ),
        (
            "autodiscover.jmap.example",
            "/Autodiscover/Autodiscover.xml",
            Format::autodiscover_pox,
        ),
        (
            "autodiscover.jmap.example",
            "/autodiscover/autodiscover.json",
            Format::autodiscover_json,
        ),
        (
            "autodiscover.jmap.example",
            "/autodiscover/autodiscover.json/v1.0/a@jmap.example",
            Format::autodiscover_json,
        ),
        (
            "autoconfig.jmap.example",
            "/mobileconfig/",
            Format::mobileconfig,
        ),
        ("autoconfig.jmap.example", "/", Format::page),
        (
            "ua-auto-config.jmap.example",
            "/.well-known/user-agent-configuration.json",
            Format::pacc,
        ),
        ("autoconfig.jmap.example", "/.well-known/jmap", Format::jmap),
        (
            "autoconfig.jmap.example",
            "/.well-known/acme-challenge/token",
            Format::acme_challenge,
        ),
        ("autoconfig.jmap.example", "/nothing", Format::other),
        // Refused before the route runs: still counted under what it asked for.
        ("nope.example", "/mail/config-v1.1.xml", Format::thunderbird),
    ] {
        let reply = get(&config, host, path);
        assert_eq!(reply.format, format, "{host}{path} ({})", reply.status);
        assert_eq!(format_of_path(path), format, "{path}");
    }
}

/// The JSON path form's address is one path segment, parsed in one place:
/// the router, the directory lookup (`request_address`) and the handler
/// agree on it, and a raw `/` (which the request log would split) makes the
/// path not this route; a `/` in an address arrives as `%2F`.
#[test]
fn json_path_address_is_one_segment_everyone_agrees_on() {
    let config = crate::config::parse(STANDARDS).unwrap();
    let incoming = |path| Incoming {
        method: &Method::GET,
        host: Some("autodiscover.jmap.example"),
        path,
        query: Some("Protocol=AutodiscoverV1"),
        body: b"",
        secure: true,
        accept_language: None,
    };
    let env = Env {
        redirect_plain_http: false,
        hooks: &crate::http::NoHooks,
        time_of_day: "12:00:00.0000000",
        user: None,
    };
    for path in [
        "/autodiscover/autodiscover.json/v1.0/a/b@jmap.example",
        "/autodiscover/autodiscover.json/v1.0/b@jmap.example/",
        "/autodiscover/autodiscover.json/v1.0/",
    ] {
        assert_eq!(match_path(path), None, "{path}");
        assert!(request_address(&incoming(path)).is_none(), "{path}");
        assert_eq!(route(&incoming(path), &config, &env).status, 404, "{path}");
    }
    for path in [
        "/autodiscover/autodiscover.json/v1.0/b@jmap.example",
        "/AutoDiscover/AutoDiscover.json/v1.0/b%40jmap.example",
        "/autodiscover/autodiscover.json/v1.0/a%2Fb@jmap.example",
    ] {
        let looked_up = request_address(&incoming(path)).map(|a| a.to_string());
        let reply = route(&incoming(path), &config, &env);
        assert_eq!(reply.status, 200, "{path}");
        assert!(looked_up.is_some(), "{path}");
        assert_eq!(reply.address, looked_up, "{path}");
    }
    // The query does not override the path's address, in either place.
    let mut req = incoming("/autodiscover/autodiscover.json/v1.0/b@jmap.example");
    req.query = Some("Email=c@plain.example&Protocol=AutodiscoverV1");
    assert_eq!(
        request_address(&req).map(|a| a.to_string()),
        Some("b@jmap.example".to_owned())
    );
    assert_eq!(
        route(&req, &config, &env).address.as_deref(),
        Some("b@jmap.example")
    );
}

/// HTTP-01 for a name this config does not list (yet): answered when, and
/// only when, an answer exists (another node of a cluster published it);
/// anything else on an unknown name stays 404.
#[test]
fn unknown_host_gets_only_an_existing_challenge_answer() {
    struct OneChallenge;
    impl crate::http::Hooks for OneChallenge {
        fn http01(&self, host: &str, token: &str) -> Option<String> {
            (host == "autoconfig.new.example:80" && token == "tok").then(|| "tok.thumb".to_owned())
        }
    }
    let config = crate::config::parse(STANDARDS).unwrap();
    let env = Env {
        redirect_plain_http: true,
        hooks: &OneChallenge,
        time_of_day: "12:00:00.0000000",
        user: None,
    };
    let ask = |method: &Method, host: &str, path: &str| {
        let req = Incoming {
            method,
            host: Some(host),
            path,
            query: None,
            body: b"",
            secure: false,
            accept_language: None,
        };
        route(&req, &config, &env)
    };
    let found = ask(
        &Method::GET,
        "Autoconfig.New.Example:80",
        "/.well-known/acme-challenge/tok",
    );
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(&found.body[..], b"tok.thumb");
    assert_eq!(found.format, Format::acme_challenge);
    for (method, host, path) in [
        (
            Method::GET,
            "autoconfig.new.example:80",
            "/.well-known/acme-challenge/other",
        ),
        (
            Method::GET,
            "autoconfig.other.example:80",
            "/.well-known/acme-challenge/tok",
        ),
        (
            Method::POST,
            "autoconfig.new.example:80",
            "/.well-known/acme-challenge/tok",
        ),
        (
            Method::GET,
            "autoconfig.new.example:80",
            "/mail/config-v1.1.xml",
        ),
    ] {
        let reply = ask(&method, host, path);
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {host}{path}");
    }
}
