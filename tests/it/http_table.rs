//! The route table over real sockets: (method, host, path, headers, body) ->
//! (status, content type, body checks). Plain HTTP, `tls.mode = "off"`.

use crate::support::{CONFIG, Daemon, Response, corpus};

const TB: &str = "/mail/config-v1.1.xml";
const POX: &str = "/autodiscover/autodiscover.xml";
const XML: &str = "text/xml; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    status: u16,
    content_type: Option<&'static str>,
    body_has: &'static [&'static str],
    body_lacks: &'static [&'static str],
}

fn get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

fn req(method: &str, host: &str, path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn pox_body(address: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>{address}</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>
</Autodiscover>"#
    )
    .into_bytes()
}

/// The real mobilesync request from the corpus, for an address in our domain.
fn mobilesync_for(address: &str) -> Vec<u8> {
    String::from_utf8(corpus("autodiscover-requests/wdes-mobilesync-request.xml"))
        .unwrap()
        .replace("test@example.org", address)
        .into_bytes()
}

fn case(
    name: &'static str,
    raw: Vec<u8>,
    status: u16,
    content_type: Option<&'static str>,
    body_has: &'static [&'static str],
) -> Case {
    Case {
        name,
        raw,
        status,
        content_type,
        body_has,
        body_lacks: &[],
    }
}

fn cases() -> Vec<Case> {
    let ac = "autoconfig.example.com";
    let ad = "autodiscover.example.com";
    let mut chunked_big = b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..10 {
        chunked_big.extend_from_slice(b"400\r\n");
        chunked_big.extend_from_slice(&[b'a'; 0x400]);
        chunked_big.extend_from_slice(b"\r\n");
    }
    chunked_big.extend_from_slice(b"0\r\n\r\n");
    let mut invalid_utf8 = pox_body("alice@example.com");
    invalid_utf8.splice(60..60, [0xff, 0xfe, 0xc3]);
    let entity_bomb = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Autodiscover><Request><EMailAddress>&lol3;@example.com</EMailAddress></Request></Autodiscover>"#;
    let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Autodiscover><Request><EMailAddress>&xxe;</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#;
    let long_local = format!("{TB}?emailaddress={}%40example.com", "a".repeat(65));
    let long_local: &'static str = Box::leak(long_local.into_boxed_str());

    vec![
        // Thunderbird autoconfig
        case(
            "tb without address keeps placeholders",
            get(ac, TB),
            200,
            Some(XML),
            &["<clientConfig", "%EMAILADDRESS%", "imap.example.com"],
        ),
        case(
            "tb with address substitutes",
            get(ac, &format!("{TB}?emailaddress=alice%40example.com")),
            200,
            Some(XML),
            &["alice@example.com"],
        ),
        case(
            "tb with email= key",
            get(ac, &format!("{TB}?email=bob%40example.com")),
            200,
            Some(XML),
            &["bob@example.com"],
        ),
        case(
            "tb well-known on apex",
            get(
                "example.com",
                "/.well-known/autoconfig/mail/config-v1.1.xml",
            ),
            200,
            Some(XML),
            &["imap.example.com"],
        ),
        case(
            "tb well-known on autoconfig host",
            get(ac, "/.well-known/autoconfig/mail/config-v1.1.xml"),
            200,
            Some(XML),
            &["imap.example.com"],
        ),
        case(
            "tb second domain of provider",
            get("autoconfig.example.net", TB),
            200,
            Some(XML),
            &["imap.example.com"],
        ),
        case(
            "tb mixed-case host",
            get("AutoConfig.Example.COM", TB),
            200,
            Some(XML),
            &["imap.example.com"],
        ),
        case(
            "tb dotted host",
            get("autoconfig.example.com.", TB),
            200,
            Some(XML),
            &["imap.example.com"],
        ),
        case(
            "tb host with port",
            get("autoconfig.example.com:8080", TB),
            200,
            Some(XML),
            &["imap.example.com"],
        ),
        case(
            "tb IDN host in punycode",
            get("autoconfig.xn--bcher-kva.example", TB),
            200,
            Some(XML),
            &["imap.example.com"],
        ),
        case(
            "tb IDN address in unicode",
            get(
                ac,
                &format!("{TB}?emailaddress=j%C3%B6rg%40b%C3%BCcher.example"),
            ),
            200,
            Some(XML),
            &["xn--bcher-kva.example"],
        ),
        case(
            "tb + tag address",
            get(ac, &format!("{TB}?emailaddress=alice%2Btag%40example.com")),
            200,
            Some(XML),
            &["alice+tag@example.com"],
        ),
        case(
            "tb address picks its own provider",
            get(ac, &format!("{TB}?emailaddress=carol%40other.example")),
            200,
            Some(XML),
            &["mail.other.example"],
        ),
        case(
            "tb unconfigured address domain",
            get(ac, &format!("{TB}?emailaddress=eve%40evil.example")),
            404,
            Some(TEXT),
            &["unknown e-mail domain"],
        ),
        case(
            "tb invalid address",
            get(ac, &format!("{TB}?emailaddress=not-an-address")),
            400,
            Some(TEXT),
            &["invalid e-mail address"],
        ),
        case(
            "tb CR/LF in query",
            get(
                ac,
                &format!("{TB}?emailaddress=a%0D%0ASet-Cookie:%20x%40example.com"),
            ),
            400,
            Some(TEXT),
            &["invalid e-mail address"],
        ),
        case(
            "tb markup in address",
            get(ac, &format!("{TB}?emailaddress=%3Cscript%3E%40example.com")),
            400,
            Some(TEXT),
            &["invalid e-mail address"],
        ),
        case(
            "tb overlong address",
            get(ac, long_local),
            400,
            Some(TEXT),
            &["invalid e-mail address"],
        ),
        case(
            "tb POST not allowed",
            req("POST", ac, TB, "", b""),
            405,
            Some(TEXT),
            &["method not allowed"],
        ),
        case(
            "unknown host",
            get("autoconfig.evil.example", TB),
            404,
            Some(TEXT),
            &["unknown host"],
        ),
        case(
            "IPv4 host",
            get("127.0.0.1", TB),
            404,
            Some(TEXT),
            &["unknown host"],
        ),
        case(
            "IPv6 host",
            get("[::1]:80", TB),
            404,
            Some(TEXT),
            &["unknown host"],
        ),
        case(
            "missing host",
            b"GET /mail/config-v1.1.xml HTTP/1.0\r\n\r\n".to_vec(),
            400,
            Some(TEXT),
            &["missing Host"],
        ),
        case(
            "sibling label is not ours",
            get("www.example.com", TB),
            404,
            Some(TEXT),
            &["unknown host"],
        ),
        case(
            "unknown path",
            get(ac, "/wp-login.php"),
            404,
            Some(TEXT),
            &["not found"],
        ),
        case(
            "dot-dot path",
            get(ac, "/mail/../mail/config-v1.1.xml"),
            404,
            Some(TEXT),
            &["not found"],
        ),
        // Outlook POX
        case(
            "pox thunderbird request",
            req(
                "POST",
                ad,
                POX,
                "Content-Type: text/xml; charset=utf-8\r\n",
                &corpus("autodiscover-requests/thunderbird-exchangeautodiscover-request.xml"),
            ),
            200,
            Some(XML),
            &["<Protocol>", "<Type>IMAP</Type>"],
        ),
        case(
            "pox capitalized path",
            req(
                "POST",
                ad,
                "/Autodiscover/Autodiscover.xml",
                "",
                &pox_body("alice@example.com"),
            ),
            200,
            Some(XML),
            &["alice@example.com", "<Type>SMTP</Type>"],
        ),
        case(
            "pox upper-case path",
            req(
                "POST",
                ad,
                "/AUTODISCOVER/AUTODISCOVER.XML",
                "",
                &pox_body("alice@example.com"),
            ),
            200,
            Some(XML),
            &["<Type>IMAP</Type>"],
        ),
        case(
            "pox with basic auth header",
            req(
                "POST",
                ad,
                POX,
                "Authorization: Basic YWxpY2U6c2VjcmV0\r\n",
                &pox_body("alice@example.com"),
            ),
            200,
            Some(XML),
            &["<Type>IMAP</Type>"],
        ),
        case(
            "pox on apex",
            req(
                "POST",
                "example.com",
                POX,
                "",
                &pox_body("alice@example.com"),
            ),
            200,
            Some(XML),
            &["<Type>IMAP</Type>"],
        ),
        case(
            "pox GET answers the Host domain's settings",
            get(ad, POX),
            200,
            Some(XML),
            &[
                "<Type>IMAP</Type>",
                "<Type>SMTP</Type>",
                "outlook/responseschema/2006a",
            ],
        ),
        case(
            "pox GET with an address in the query",
            get(ad, &format!("{POX}?emailaddress=alice%40example.com")),
            200,
            Some(XML),
            &[
                "<DisplayName>alice@example.com</DisplayName>",
                "<Type>IMAP</Type>",
            ],
        ),
        case(
            "pox GET with a foreign address",
            get(ad, &format!("{POX}?emailaddress=eve%40evil.example")),
            404,
            Some(TEXT),
            &["unknown e-mail domain"],
        ),
        case(
            "pox GET with a broken address",
            get(ad, &format!("{POX}?emailaddress=nobody")),
            400,
            Some(TEXT),
            &["invalid e-mail address"],
        ),
        case(
            "pox POST with an empty body answers like GET",
            req("POST", ad, POX, "", b""),
            200,
            Some(XML),
            &["<Type>IMAP</Type>", "<Type>SMTP</Type>"],
        ),
        case(
            "pox PUT not allowed",
            req("PUT", ad, POX, "", b"x"),
            405,
            Some(TEXT),
            &["method not allowed"],
        ),
        case(
            "pox XXE refused",
            req("POST", ad, POX, "", xxe),
            400,
            Some(TEXT),
            &["malformed autodiscover request"],
        ),
        case(
            "pox entity bomb refused",
            req("POST", ad, POX, "", entity_bomb),
            400,
            Some(TEXT),
            &["malformed autodiscover request"],
        ),
        case(
            "pox 9 KiB body",
            req("POST", ad, POX, "", &vec![b' '; 9 * 1024]),
            413,
            Some(TEXT),
            &["8 KiB"],
        ),
        case(
            "pox chunked body over 8 KiB",
            chunked_big,
            413,
            Some(TEXT),
            &["8 KiB"],
        ),
        case(
            "pox invalid UTF-8",
            req("POST", ad, POX, "", &invalid_utf8),
            400,
            Some(TEXT),
            &["malformed autodiscover request"],
        ),
        case(
            "pox not XML",
            req("POST", ad, POX, "", b"hello"),
            400,
            Some(TEXT),
            &["malformed autodiscover request"],
        ),
        case(
            "pox unconfigured domain",
            req("POST", ad, POX, "", &pox_body("eve@evil.example")),
            404,
            Some(TEXT),
            &["unknown e-mail domain"],
        ),
        case(
            "pox markup in address",
            req("POST", ad, POX, "", &pox_body("&lt;b&gt;@example.com")),
            400,
            Some(TEXT),
            &["invalid e-mail address"],
        ),
        case(
            "pox mobilesync with activesync",
            req(
                "POST",
                "autodiscover.other.example",
                POX,
                "",
                &mobilesync_for("carol@other.example"),
            ),
            200,
            Some(XML),
            &[
                "<Type>MobileSync</Type>",
                "https://eas.other.example/Microsoft-Server-ActiveSync",
            ],
        ),
        case(
            "pox mobilesync without activesync",
            req("POST", ad, POX, "", &mobilesync_for("test@example.com")),
            200,
            Some(XML),
            &["<ErrorCode>"],
        ),
        // Autodiscover v2 JSON
        case(
            "json query form",
            get(
                ad,
                "/autodiscover/autodiscover.json?Email=alice%40example.com&Protocol=AutodiscoverV1",
            ),
            200,
            Some("application/json"),
            &["\"Url\":\"https://autodiscover.example.com/autodiscover/autodiscover.xml\""],
        ),
        case(
            "json v1.0 path form",
            get(
                ad,
                "/autodiscover/autodiscover.json/v1.0/alice@example.com?Protocol=AutodiscoverV1",
            ),
            200,
            Some("application/json"),
            &["AutodiscoverV1"],
        ),
        case(
            "json protocol without case",
            get(
                ad,
                "/Autodiscover/Autodiscover.json?Email=alice%40example.com&Protocol=autodiscoverv1",
            ),
            200,
            Some("application/json"),
            &["autodiscover.xml"],
        ),
        case(
            "json unsupported protocol",
            get(
                ad,
                "/autodiscover/autodiscover.json?Email=alice%40example.com&Protocol=Rest",
            ),
            400,
            Some("application/json"),
            &["InvalidProtocol"],
        ),
        case(
            "json activesync where configured",
            get(
                "autodiscover.other.example",
                "/autodiscover/autodiscover.json?Email=carol%40other.example&Protocol=ActiveSync",
            ),
            200,
            Some("application/json"),
            &["https://eas.other.example/Microsoft-Server-ActiveSync"],
        ),
        case(
            "json missing email",
            get(
                ad,
                "/autodiscover/autodiscover.json?Protocol=AutodiscoverV1",
            ),
            400,
            Some(TEXT),
            &["Email is required"],
        ),
        // Apple profile
        case(
            "mobileconfig",
            get(ac, "/mobileconfig?emailaddress=alice%40example.com"),
            200,
            Some("application/x-apple-aspen-config"),
            &["imap.example.com"],
        ),
        case(
            "mobileconfig needs address",
            get(ac, "/mobileconfig"),
            400,
            Some(TEXT),
            &["emailaddress is required"],
        ),
        case(
            "mobileconfig unknown domain",
            get(ac, "/mobileconfig?emailaddress=eve%40evil.example"),
            404,
            Some(TEXT),
            &["unknown e-mail domain"],
        ),
        case(
            "mobileconfig DELETE",
            req("DELETE", ac, "/mobileconfig", "", b""),
            405,
            Some(TEXT),
            &["method not allowed"],
        ),
        // MTA-STS
        case(
            "mta-sts policy",
            get("mta-sts.example.com", "/.well-known/mta-sts.txt"),
            200,
            Some("text/plain"),
            &["version: STSv1", "mode: enforce", "mx: *.mx.example.com"],
        ),
        case(
            "mta-sts host without policy",
            get("mta-sts.other.example", "/.well-known/mta-sts.txt"),
            404,
            Some(TEXT),
            &["unknown host"],
        ),
        case(
            "mta-sts path on autoconfig host",
            get(ac, "/.well-known/mta-sts.txt"),
            404,
            Some(TEXT),
            &["not found"],
        ),
        case(
            "acme challenge without tls",
            get(ac, "/.well-known/acme-challenge/abc"),
            404,
            Some(TEXT),
            &["no such challenge"],
        ),
    ]
}

#[tokio::test]
async fn route_table() {
    let daemon = Daemon::start(CONFIG).await;
    let all = cases();
    assert!(all.len() >= 40, "the table must keep at least 40 cases");
    let mut failures = Vec::new();
    for c in &all {
        let r = daemon.send(&c.raw).await;
        let mut problems = Vec::new();
        if r.status != c.status {
            problems.push(format!("status {} != {}", r.status, c.status));
        }
        if let Some(ct) = c.content_type
            && !r.header("content-type").is_some_and(|v| v.starts_with(ct))
        {
            problems.push(format!(
                "content-type {:?} !~ {ct}",
                r.header("content-type")
            ));
        }
        for want in c.body_has {
            if !r.text().contains(want) {
                problems.push(format!("body lacks {want:?}"));
            }
        }
        for unwanted in c.body_lacks {
            if r.text().contains(unwanted) {
                problems.push(format!("body has {unwanted:?}"));
            }
        }
        if r.header("x-content-type-options") != Some("nosniff") {
            problems.push("no nosniff".into());
        }
        if r.header("server").is_some() {
            problems.push("version banner".into());
        }
        if r.status >= 500 {
            problems.push("5xx for client input".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    body: {:.300}",
                c.name,
                problems.join("; "),
                r.text()
            ));
        }
    }
    daemon.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn head_works_wherever_get_does() {
    let daemon = Daemon::start(CONFIG).await;
    for (host, path) in [
        ("autoconfig.example.com", TB),
        ("mta-sts.example.com", "/.well-known/mta-sts.txt"),
        (
            "autoconfig.example.com",
            "/mobileconfig?emailaddress=alice%40example.com",
        ),
    ] {
        let get = daemon.get(host, path).await;
        let head = daemon
            .send(
                format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(head.status, get.status, "{path}");
        assert!(head.body.is_empty(), "{path}: HEAD has a body");
        assert_eq!(head.header("content-type"), get.header("content-type"));
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str())
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn caching_depends_on_whether_the_document_is_personal() {
    let daemon = Daemon::start(CONFIG).await;
    let generic = daemon.get("autoconfig.example.com", TB).await;
    assert_eq!(generic.header("cache-control"), Some("public, max-age=300"));
    let personal = daemon
        .get(
            "autoconfig.example.com",
            &format!("{TB}?emailaddress=alice%40example.com"),
        )
        .await;
    assert_eq!(personal.header("cache-control"), Some("no-store"));
    let profile = daemon
        .get(
            "autoconfig.example.com",
            "/mobileconfig?emailaddress=alice%40example.com",
        )
        .await;
    let disposition = profile.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"")
            && disposition.ends_with(".mobileconfig\""),
        "{disposition}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_ones() {
    let daemon = Daemon::start(CONFIG).await;
    let r: Response = daemon
        .send(&req("PATCH", "autodiscover.example.com", POX, "", b""))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    let r = daemon
        .send(&req("POST", "autoconfig.example.com", TB, "", b""))
        .await;
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    daemon.stop().await;
}
