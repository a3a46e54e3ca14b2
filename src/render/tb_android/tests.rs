//! The cases of thunderbird-android's own
//! `feature/autodiscovery/autoconfig/src/test/kotlin/app/k9mail/autodiscovery/autoconfig/RealAutoconfigParserTest.kt`
//! (commit a59bd679859d) and `GetAutoDiscoveryTest.kt`, on its `minimalConfig`.

use super::*;

const MINIMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="domain.example">
    <domain>domain.example</domain>
    <incomingServer type="imap">
      <hostname>imap.domain.example</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.domain.example</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"#;

fn user() -> EmailAddress {
    EmailAddress::parse("user@domain.example").unwrap()
}

fn run(doc: &str) -> Result<Accepted, Rejected> {
    evaluate(doc.as_bytes(), &user())
}

fn rejected_with(doc: &str, needle: &str) {
    match run(doc) {
        Ok(a) => panic!("accepted, expected {needle:?}: {a:?}\n{doc}"),
        Err(Rejected(reason)) => assert!(reason.contains(needle), "{reason:?} lacks {needle:?}"),
    }
}

#[test]
fn minimal_data() {
    let a = run(MINIMAL).unwrap();
    assert_eq!(
        a.imap,
        ServerSettings {
            hostname: "imap.domain.example".into(),
            port: 993,
            socket_type: "SSL".into(),
            authentication: vec!["password-cleartext".into()],
            username: "user@domain.example".into(),
        }
    );
    assert_eq!(a.smtp.hostname, "smtp.domain.example");
    assert_eq!(a.smtp.socket_type, "STARTTLS");
}

#[test]
fn first_server_of_each_kind_is_used_and_pop3_skipped() {
    let doc = MINIMAL.replace(
        "    <incomingServer type=\"imap\">",
        "    <incomingServer type=\"pop3\"><hostname>pop.domain.example</hostname><port>995</port><socketType>plain</socketType><authentication>password-cleartext</authentication><username>x</username></incomingServer>\n    <incomingServer type=\"imap\">",
    ) + "";
    let doc = doc.replace(
        "  </emailProvider>",
        "    <incomingServer type=\"imap\"><hostname>second.domain.example</hostname><port>143</port><socketType>STARTTLS</socketType><authentication>password-cleartext</authentication><username>x</username></incomingServer>\n  </emailProvider>",
    );
    let a = run(&doc).unwrap();
    assert_eq!(a.imap.hostname, "imap.domain.example");
}

#[test]
fn variables_are_replaced() {
    let doc = MINIMAL
        .replace("imap.domain.example", "imap.%EMAILDOMAIN%")
        .replace(
            "<username>%EMAILADDRESS%</username>\n    </incomingServer>",
            "<username>%EMAILLOCALPART%</username>\n    </incomingServer>",
        );
    let a = run(&doc).unwrap();
    assert_eq!(a.imap.hostname, "imap.domain.example");
    assert_eq!(a.imap.username, "user");
}

#[test]
fn comments_and_unknown_elements_are_ignored() {
    let doc = MINIMAL
        .replace("<domain>", "<!-- c --><displayName>x</displayName><domain>")
        .replace(
            "<port>993</port>",
            "<port>993</port><pop3><leaveMessagesOnServer>true</leaveMessagesOnServer></pop3>",
        );
    run(&doc).unwrap();
}

#[test]
fn empty_authentication_element_is_ignored() {
    let doc = MINIMAL.replacen(
        "<authentication>password-cleartext</authentication>",
        "<authentication></authentication><authentication>password-cleartext</authentication>",
        1,
    );
    assert_eq!(
        run(&doc).unwrap().imap.authentication,
        ["password-cleartext"]
    );
}

#[test]
fn provider_id_must_be_a_host_name() {
    rejected_with(
        &MINIMAL.replace(" id=\"domain.example\"", ""),
        "Missing 'emailProvider.id'",
    );
    rejected_with(
        &MINIMAL.replace("id=\"domain.example\"", "id=\"-23\""),
        "Invalid 'emailProvider.id'",
    );
    // A placeholder id: the app fills in domain, hostname and username only.
    rejected_with(
        &MINIMAL.replace("id=\"domain.example\"", "id=\"%EMAILDOMAIN%\""),
        "Invalid 'emailProvider.id'",
    );
}

#[test]
fn a_valid_domain_is_required() {
    rejected_with(
        &MINIMAL.replace("<domain>domain.example</domain>", ""),
        "Valid 'domain' element required",
    );
    rejected_with(
        &MINIMAL.replace(
            "<domain>domain.example</domain>",
            "<domain>-invalid</domain>",
        ),
        "Valid 'domain' element required",
    );
    // Filled in before the check.
    run(&MINIMAL.replace(
        "<domain>domain.example</domain>",
        "<domain>%EMAILDOMAIN%</domain>",
    ))
    .unwrap();
}

#[test]
fn imap_and_smtp_are_both_required() {
    let no_imap = MINIMAL.replace("type=\"imap\"", "type=\"pop3\"");
    rejected_with(&no_imap, "No supported 'incomingServer'");
    let no_smtp = MINIMAL.replace("type=\"smtp\"", "type=\"unsupported\"");
    rejected_with(&no_smtp, "No supported 'outgoingServer'");
    // Servers nested inside an unsupported one do not count.
    let nested = MINIMAL
        .replace(
            "<incomingServer type=\"imap\">",
            "<incomingServer type=\"unsupported\"><incomingServer type=\"imap\">",
        )
        .replace("</incomingServer>", "</incomingServer></incomingServer>");
    rejected_with(&nested, "No supported 'incomingServer'");
}

#[test]
fn every_field_of_a_server_is_required_and_checked() {
    for (field, needle) in [
        (
            "<hostname>imap.domain.example</hostname>",
            "Missing 'hostname'",
        ),
        ("<port>993</port>", "Missing 'port'"),
        ("<socketType>SSL</socketType>", "Missing 'socketType'"),
        (
            "<authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>",
            "Missing 'username'",
        ),
    ] {
        let replacement = if field.contains("username") {
            "<authentication>password-cleartext</authentication>\n    </incomingServer>"
        } else {
            ""
        };
        rejected_with(&MINIMAL.replacen(field, replacement, 1), needle);
    }
    rejected_with(
        &MINIMAL.replacen("<authentication>password-cleartext</authentication>", "", 1),
        "No usable 'authentication'",
    );
    rejected_with(
        &MINIMAL.replacen(
            "<authentication>password-cleartext</authentication>",
            "<authentication>NTLM</authentication>",
            1,
        ),
        "No usable 'authentication'",
    );
    rejected_with(
        &MINIMAL.replace("imap.domain.example", "in valid"),
        "Invalid 'hostname'",
    );
    rejected_with(
        &MINIMAL.replace("<port>993</port>", "<port>x</port>"),
        "Invalid 'port'",
    );
    rejected_with(
        &MINIMAL.replace("<port>993</port>", "<port>65536</port>"),
        "Invalid 'port'",
    );
    rejected_with(
        &MINIMAL.replace(
            "<socketType>SSL</socketType>",
            "<socketType>TLS</socketType>",
        ),
        "Unknown 'socketType' value: 'TLS'",
    );
    rejected_with(
        &MINIMAL.replace(
            "<socketType>SSL</socketType>",
            "<socketType>plain</socketType>",
        ),
        "Unknown 'socketType' value: 'plain'",
    );
    rejected_with(
        &MINIMAL.replace(
            "<hostname>imap.domain.example</hostname>",
            "<hostname>imap.domain.example<element/></hostname>",
        ),
        "Expected text",
    );
}

#[test]
fn a_plain_alternative_throws_the_whole_document_away() {
    // Only the first IMAP server is used, but every one is parsed.
    let doc = MINIMAL.replace(
        "  </emailProvider>",
        "    <incomingServer type=\"imap\"><hostname>imap.domain.example</hostname><port>143</port><socketType>plain</socketType><authentication>password-cleartext</authentication><username>x</username></incomingServer>\n  </emailProvider>",
    );
    rejected_with(&doc, "Unknown 'socketType' value: 'plain'");
}

#[test]
fn oauth2_only_for_an_unknown_host_leaves_no_usable_settings() {
    let oauth_only = MINIMAL.replacen(
        "<authentication>password-cleartext</authentication>",
        "<authentication>OAuth2</authentication>",
        1,
    );
    rejected_with(&oauth_only, "first IMAP server once OAuth2 is dropped");
    // With a password fallback, OAuth2 is dropped and the password kept.
    let with_fallback = MINIMAL.replacen(
        "<authentication>password-cleartext</authentication>",
        "<authentication>OAuth2</authentication><authentication>password-cleartext</authentication>",
        1,
    );
    assert_eq!(
        run(&with_fallback).unwrap().imap.authentication,
        ["password-cleartext"]
    );
    // A host it has an OAuth client for keeps OAuth2.
    let gmail = oauth_only.replace("imap.domain.example", "imap.gmail.com");
    assert_eq!(run(&gmail).unwrap().imap.authentication, ["OAuth2"]);
}

#[test]
fn broken_xml_is_rejected() {
    rejected_with("invalid", "clientConfig");
    rejected_with(&MINIMAL.replace("</clientConfig>", ""), "Error parsing");
    rejected_with(
        &MINIMAL.replace("clientConfig", "madeUpTag"),
        "Missing 'clientConfig'",
    );
    rejected_with(
        &MINIMAL.replace("emailProvider", "madeUpTag"),
        "Missing 'emailProvider'",
    );
    rejected_with(&"<a>".repeat(100), "Error parsing");
}

#[test]
fn host_name_syntax() {
    for ok in [
        "a",
        "a.example",
        "a-b.example.",
        "1.2.3.4",
        "::1",
        "MAIL.Example.COM",
    ] {
        assert!(is_legal_host_name_or_ip(ok), "{ok}");
    }
    for bad in [
        "",
        "-a.example",
        "a-.example",
        "a..example",
        "a_b.example",
        "%EMAILDOMAIN%",
        "a b",
    ] {
        assert!(!is_legal_host_name_or_ip(bad), "{bad}");
    }
}
