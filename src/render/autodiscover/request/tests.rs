use super::*;

const OUTLOOK: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
<EMailAddress>alice@example.org</EMailAddress>
<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;

fn with_email(inner: &str) -> String {
    format!("<Autodiscover><Request><EMailAddress>{inner}</EMailAddress></Request></Autodiscover>")
}

#[test]
fn parses_the_documented_request() {
    let r = parse_request(OUTLOOK.as_bytes()).unwrap();
    assert_eq!(r.email, "alice@example.org");
    assert_eq!(r.schema, ResponseSchema::Outlook2006a);
}

#[test]
fn ignores_case_prefixes_unknown_children_and_comments() {
    let body = r#"<a:AUTODISCOVER xmlns:a="urn:x"><!-- hi --><a:request>
        <x:Unknown xmlns:x="urn:y"><EMailAddress>evil@example.org</EMailAddress></x:Unknown>
        <a:emailaddress>  Bob@Example.ORG </a:emailaddress>
        <a:AcceptableResponseSchema>HTTP://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006</a:AcceptableResponseSchema>
    </a:request></a:AUTODISCOVER>"#;
    let r = parse_request(body.as_bytes()).unwrap();
    assert_eq!(r.email, "Bob@Example.ORG");
    assert_eq!(r.schema, ResponseSchema::MobileSync2006);
}

#[test]
fn missing_schema_follows_request_namespace() {
    let outlook = with_email("a@example.org");
    assert_eq!(
        parse_request(outlook.as_bytes()).unwrap().schema,
        ResponseSchema::Outlook2006a
    );
    let mobile = r#"<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"><Request><EMailAddress>a@example.org</EMailAddress></Request></Autodiscover>"#;
    assert_eq!(
        parse_request(mobile.as_bytes()).unwrap().schema,
        ResponseSchema::MobileSync2006
    );
}

#[test]
fn unknown_schema_is_kept() {
    let body = r#"<Autodiscover><Request><EMailAddress>a@example.org</EMailAddress><AcceptableResponseSchema> urn:other </AcceptableResponseSchema></Request></Autodiscover>"#;
    assert_eq!(
        parse_request(body.as_bytes()).unwrap().schema,
        ResponseSchema::Other("urn:other".into())
    );
}

#[test]
fn predefined_entities_cdata_and_char_refs_are_unescaped() {
    let r = parse_request(with_email("a&amp;b&#x40;<![CDATA[example]]>.org").as_bytes());
    assert_eq!(r.unwrap().email, "a&b@example.org");
}

#[test]
fn refuses_doctype_and_entities() {
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>"#;
    assert!(matches!(
        parse_request(xxe.as_bytes()),
        Err(RequestError::Doctype)
    ));
    let undeclared = with_email("&x;@example.org");
    assert!(matches!(
        parse_request(undeclared.as_bytes()),
        Err(RequestError::UnknownEntity)
    ));
    let outside = "<Autodiscover>&lol9;<Request><EMailAddress>a@example.org</EMailAddress></Request></Autodiscover>";
    assert!(matches!(
        parse_request(outside.as_bytes()),
        Err(RequestError::UnknownEntity)
    ));
}

#[test]
fn refuses_oversized_deep_truncated_and_non_utf8() {
    let big = with_email(&"a".repeat(MAX_REQUEST_BYTES));
    assert!(matches!(
        parse_request(big.as_bytes()),
        Err(RequestError::TooLarge)
    ));
    let deep = format!("<Autodiscover>{}", "<x>".repeat(100));
    assert!(matches!(
        parse_request(deep.as_bytes()),
        Err(RequestError::TooDeep)
    ));
    assert!(matches!(
        parse_request(b"<Autodiscover><Request>"),
        Err(RequestError::Truncated)
    ));
    assert!(matches!(
        parse_request(b"<Autodiscover>\xff</Autodiscover>"),
        Err(RequestError::NotUtf8)
    ));
    assert!(matches!(
        parse_request(b"<Autodiscover><a></b></Autodiscover>"),
        Err(RequestError::Malformed(_))
    ));
}

#[test]
fn missing_duplicate_and_legacy_dn() {
    for body in [
        "<Autodiscover><Request/></Autodiscover>",
        "<Autodiscover><Request><EMailAddress/></Request></Autodiscover>",
        "<Autodiscover><EMailAddress>a@example.org</EMailAddress></Autodiscover>",
    ] {
        assert!(
            matches!(
                parse_request(body.as_bytes()),
                Err(RequestError::MissingEmail)
            ),
            "{body}"
        );
    }
    let twice = "<Autodiscover><Request><EMailAddress>a@example.org</EMailAddress><EMailAddress>b@example.org</EMailAddress></Request></Autodiscover>";
    assert!(matches!(
        parse_request(twice.as_bytes()),
        Err(RequestError::DuplicateEmail)
    ));
    let dn = "<Autodiscover><Request><LegacyDN>/o=Org/cn=alice</LegacyDN></Request></Autodiscover>";
    assert!(matches!(
        parse_request(dn.as_bytes()),
        Err(RequestError::LegacyDnOnly)
    ));
    assert!(matches!(
        parse_request(b"<Other/>"),
        Err(RequestError::NotAutodiscover)
    ));
    assert!(matches!(
        parse_request(b""),
        Err(RequestError::NotAutodiscover)
    ));
}

#[test]
fn escaped_markup_comes_out_unescaped_and_the_address_check_refuses_it() {
    for payload in [
        "a&lt;script&gt;@example.org",
        "a&amp;b&lt;@example.org",
        "&quot;a&quot;@example.org",
    ] {
        let r = parse_request(with_email(payload).as_bytes()).unwrap();
        assert!(r.email.contains(['<', '"']), "{}", r.email);
        assert!(r.address().is_err(), "accepted {}", r.email);
    }
    // `&` alone is legal atext: accepted, and escaped again by the renderer.
    let r = parse_request(with_email("a&amp;b@example.org").as_bytes()).unwrap();
    assert_eq!(r.address().unwrap().local_part(), "a&b");
}

#[test]
fn never_panics_on_prefixes_of_a_real_request() {
    for end in 0..OUTLOOK.len() {
        if OUTLOOK.is_char_boundary(end) {
            let _ = parse_request(&OUTLOOK.as_bytes()[..end]);
        }
    }
}

#[test]
fn schema_matches_without_regard_to_scheme_case_and_whitespace() {
    for uri in [
        "https://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
        " HTTPS://Schemas.Microsoft.com/Exchange/Autodiscover/Outlook/ResponseSchema/2006a\n",
        "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
    ] {
        assert_eq!(
            ResponseSchema::from_uri(uri),
            ResponseSchema::Outlook2006a,
            "{uri:?}"
        );
    }
    assert_eq!(
        ResponseSchema::from_uri(
            "https://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
        ),
        ResponseSchema::MobileSync2006
    );
    // Another scheme, or none, is another schema.
    for uri in [
        "ftp://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
        "schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
        "https://",
        "ht",
    ] {
        assert!(
            matches!(ResponseSchema::from_uri(uri), ResponseSchema::Other(_)),
            "{uri:?}"
        );
    }
}
