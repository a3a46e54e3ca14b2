use plist::{Dictionary, Value};

use super::*;
use crate::config;

const FULL: &str = r#"
[[provider]]
id = "example.com"
name = "Example Mail"
short_name = "Example"
domains = ["example.com", "xn--bcher-kva.example"]
  [[provider.server]]
  type = "imap"
  host = "imap.%EMAILDOMAIN%"
  port = 993
  security = "tls"
  auth = ["OAuth2", "password-encrypted", "password-cleartext"]
  username = "%EMAILADDRESS%"
  [[provider.server]]
  type = "pop3"
  host = "pop.example.com"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.com"
  port = 587
  security = "starttls"
  auth = "password-cleartext"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "caldav"
  url = "https://dav.example.com:8443/dav/cal/%EMAILADDRESS%/"
  username = "%EMAILADDRESS%"
  [[provider.server]]
  type = "carddav"
  url = "https://dav.example.com/"
"#;

fn provider(text: &str) -> Provider {
    config::parse(text).unwrap().providers.remove(0)
}

fn addr(a: &str) -> EmailAddress {
    EmailAddress::parse(a).unwrap()
}

fn parse(doc: &Document) -> Dictionary {
    plist::from_bytes::<Value>(&doc.body)
        .unwrap()
        .into_dictionary()
        .unwrap()
}

fn s<'a>(d: &'a Dictionary, k: &str) -> &'a str {
    d.get(k)
        .and_then(Value::as_string)
        .unwrap_or_else(|| panic!("{k} missing or not a string"))
}

fn i(d: &Dictionary, k: &str) -> u64 {
    d.get(k).and_then(Value::as_unsigned_integer).unwrap()
}

fn b(d: &Dictionary, k: &str) -> bool {
    d.get(k).and_then(Value::as_boolean).unwrap()
}

fn payloads(d: &Dictionary) -> Vec<Dictionary> {
    d.get("PayloadContent")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|v| v.as_dictionary().unwrap().clone())
        .collect()
}

fn keys(d: &Dictionary) -> Vec<&str> {
    d.keys().map(String::as_str).collect()
}

#[test]
fn every_field_parses_back() {
    let p = provider(FULL);
    let doc = render(&p, &addr("Alice@Example.com"));
    assert_eq!(doc.content_type, "application/x-apple-aspen-config");
    assert_eq!(
        doc.filename.as_deref(),
        Some("example.com-mail.mobileconfig")
    );
    let text = String::from_utf8(doc.body.clone()).unwrap();
    assert!(text.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \
         \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">"
    ));

    let top = parse(&doc);
    assert_eq!(
        keys(&top),
        [
            "PayloadType",
            "PayloadVersion",
            "PayloadIdentifier",
            "PayloadUUID",
            "PayloadDisplayName",
            "PayloadDescription",
            "PayloadOrganization",
            "PayloadContent"
        ]
    );
    assert_eq!(s(&top, "PayloadType"), "Configuration");
    assert_eq!(i(&top, "PayloadVersion"), 1);
    assert_eq!(s(&top, "PayloadIdentifier"), "com.example.mail.alice");
    assert_eq!(
        s(&top, "PayloadDisplayName"),
        "Example Mail (Alice@example.com)"
    );
    assert!(s(&top, "PayloadDescription").contains("Alice@example.com"));
    assert_eq!(s(&top, "PayloadOrganization"), "Example Mail");
    let uuid = s(&top, "PayloadUUID");
    assert_eq!(uuid, uuid.to_ascii_uppercase());
    assert_eq!(Uuid::parse_str(uuid).unwrap().get_version_num(), 5);

    let content = payloads(&top);
    assert_eq!(content.len(), 3);
    let mail = &content[0];
    assert_eq!(
        keys(mail),
        [
            "PayloadType",
            "PayloadVersion",
            "PayloadIdentifier",
            "PayloadUUID",
            "PayloadDisplayName",
            "EmailAccountType",
            "EmailAccountDescription",
            "EmailAddress",
            "IncomingMailServerHostName",
            "IncomingMailServerPortNumber",
            "IncomingMailServerUseSSL",
            "IncomingMailServerAuthentication",
            "IncomingMailServerUsername",
            "OutgoingMailServerHostName",
            "OutgoingMailServerPortNumber",
            "OutgoingMailServerUseSSL",
            "OutgoingMailServerAuthentication",
            "OutgoingMailServerUsername",
            "OutgoingPasswordSameAsIncomingPassword",
        ]
    );
    assert_eq!(s(mail, "PayloadType"), "com.apple.mail.managed");
    assert_eq!(i(mail, "PayloadVersion"), 1);
    assert_eq!(s(mail, "PayloadIdentifier"), "com.example.mail.alice.mail");
    assert_eq!(s(mail, "PayloadDisplayName"), "Mail");
    assert_eq!(s(mail, "EmailAccountType"), "EmailTypeIMAP");
    assert_eq!(s(mail, "EmailAccountDescription"), "Alice@example.com");
    assert_eq!(s(mail, "EmailAddress"), "Alice@example.com");
    assert_eq!(s(mail, "IncomingMailServerHostName"), "imap.example.com");
    assert_eq!(i(mail, "IncomingMailServerPortNumber"), 993);
    assert!(b(mail, "IncomingMailServerUseSSL"));
    // OAuth2 has no Apple key; password-encrypted is the first that maps.
    assert_eq!(
        s(mail, "IncomingMailServerAuthentication"),
        "EmailAuthCRAMMD5"
    );
    assert_eq!(s(mail, "IncomingMailServerUsername"), "Alice@example.com");
    assert_eq!(s(mail, "OutgoingMailServerHostName"), "smtp.example.com");
    assert_eq!(i(mail, "OutgoingMailServerPortNumber"), 587);
    assert!(
        !b(mail, "OutgoingMailServerUseSSL"),
        "STARTTLS is not UseSSL"
    );
    assert_eq!(
        s(mail, "OutgoingMailServerAuthentication"),
        "EmailAuthPassword"
    );
    assert_eq!(s(mail, "OutgoingMailServerUsername"), "Alice");
    assert!(b(mail, "OutgoingPasswordSameAsIncomingPassword"));

    let cal = &content[1];
    assert_eq!(s(cal, "PayloadType"), "com.apple.caldav.account");
    assert_eq!(s(cal, "PayloadIdentifier"), "com.example.mail.alice.caldav");
    assert_eq!(s(cal, "CalDAVAccountDescription"), "Alice@example.com");
    assert_eq!(s(cal, "CalDAVHostName"), "dav.example.com");
    assert_eq!(i(cal, "CalDAVPort"), 8443);
    assert!(b(cal, "CalDAVUseSSL"));
    assert_eq!(
        s(cal, "CalDAVPrincipalURL"),
        "https://dav.example.com:8443/dav/cal/Alice@example.com/"
    );
    assert_eq!(s(cal, "CalDAVUsername"), "Alice@example.com");

    let card = &content[2];
    assert_eq!(s(card, "PayloadType"), "com.apple.carddav.account");
    assert_eq!(s(card, "CardDAVHostName"), "dav.example.com");
    assert_eq!(i(card, "CardDAVPort"), 443);
    assert!(b(card, "CardDAVUseSSL"));
    assert!(
        card.get("CardDAVPrincipalURL").is_none(),
        "a bare host leaves discovery to RFC 6764"
    );
    assert_eq!(s(card, "CardDAVUsername"), "Alice@example.com");

    let mut uuids: Vec<&str> = content.iter().map(|d| s(d, "PayloadUUID")).collect();
    uuids.push(uuid);
    uuids.sort_unstable();
    uuids.dedup();
    assert_eq!(uuids.len(), 4, "every payload has its own UUID");
    for key in [
        "<key>IncomingPassword</key>",
        "<key>OutgoingPassword</key>",
        "<key>CalDAVPassword</key>",
        "<key>CardDAVPassword</key>",
    ] {
        assert!(!text.contains(key), "{key} must never be sent");
    }
}

#[test]
fn pop3_first_and_no_dav() {
    let text = r#"
[[provider]]
id = "pop.example"
name = "Pop"
domains = ["pop.example"]
  [[provider.server]]
  type = "pop3"
  host = "pop.pop.example"
  security = "starttls"
  port = 110
  auth = ["client-IP-address"]
  [[provider.server]]
  type = "imap"
  host = "imap.pop.example"
  [[provider.server]]
  type = "smtp"
  host = "smtp.pop.example"
  auth = ["GSSAPI"]
"#;
    let top = parse(&render(&provider(text), &addr("bob@pop.example")));
    let content = payloads(&top);
    assert_eq!(content.len(), 1);
    let mail = &content[0];
    assert_eq!(s(mail, "EmailAccountType"), "EmailTypePOP");
    assert_eq!(s(mail, "IncomingMailServerHostName"), "pop.pop.example");
    assert_eq!(i(mail, "IncomingMailServerPortNumber"), 110);
    assert!(!b(mail, "IncomingMailServerUseSSL"));
    assert_eq!(s(mail, "IncomingMailServerAuthentication"), "EmailAuthNone");
    // Nothing maps: the password prompt is the only choice that can work.
    assert_eq!(
        s(mail, "OutgoingMailServerAuthentication"),
        "EmailAuthPassword"
    );
    assert_eq!(i(mail, "OutgoingMailServerPortNumber"), 465);
    assert!(b(mail, "OutgoingMailServerUseSSL"));
}

#[test]
fn same_input_same_bytes() {
    let p = provider(FULL);
    let a = addr("alice@example.com");
    assert_eq!(render(&p, &a), render(&p, &a));
    // Case of the address does not change identity: a re-download replaces.
    let upper = parse(&render(&p, &addr("ALICE@EXAMPLE.COM")));
    let lower = parse(&render(&p, &a));
    assert_eq!(s(&upper, "PayloadUUID"), s(&lower, "PayloadUUID"));
    assert_eq!(
        s(&upper, "PayloadIdentifier"),
        s(&lower, "PayloadIdentifier")
    );
}

#[test]
fn uuids_are_fixed_v5_values() {
    // Pinned: changing the namespace or the name layout would make every
    // re-download add a duplicate account on devices that have the profile.
    let p = provider(FULL);
    let top = parse(&render(&p, &addr("alice@example.com")));
    let expected = Uuid::new_v5(&UUID_NAMESPACE, b"profile\nexample.com\nalice@example.com");
    assert_eq!(
        s(&top, "PayloadUUID"),
        expected.hyphenated().to_string().to_uppercase()
    );
}

#[test]
fn different_address_different_uuids() {
    let p = provider(FULL);
    let one = parse(&render(&p, &addr("alice@example.com")));
    let two = parse(&render(&p, &addr("bob@example.com")));
    assert_ne!(s(&one, "PayloadUUID"), s(&two, "PayloadUUID"));
    assert_ne!(s(&one, "PayloadIdentifier"), s(&two, "PayloadIdentifier"));
    for (x, y) in payloads(&one).iter().zip(payloads(&two).iter()) {
        assert_ne!(s(x, "PayloadUUID"), s(y, "PayloadUUID"));
    }
    // Same address, another provider id: another account.
    let other = provider(&FULL.replace("id = \"example.com\"", "id = \"other.example\""));
    let three = parse(&render(&other, &addr("alice@example.com")));
    assert_ne!(s(&one, "PayloadUUID"), s(&three, "PayloadUUID"));
}

#[test]
fn hostile_names_escape_and_round_trip() {
    let text = FULL
        .replace(
            "name = \"Example Mail\"",
            r#"name = "<&>\"' Ünïcødé ]]> </string>""#,
        )
        .replace(
            "username = \"%EMAILLOCALPART%\"",
            "username = \"%EMAILADDRESS%\"",
        );
    let p = provider(&text);
    assert_eq!(p.name, "<&>\"' Ünïcødé ]]> </string>");
    for input in [
        "o'hara&co+tag@example.com",
        "jörg+news@Bücher.example",
        "a{b}|~^`=?#$*/!@example.com",
    ] {
        let a = addr(input);
        let doc = render(&p, &a);
        let raw = String::from_utf8(doc.body.clone()).unwrap();
        assert!(!raw.contains("<&>"), "unescaped markup in {raw}");
        let top = parse(&doc);
        assert_eq!(s(&top, "PayloadOrganization"), p.name);
        assert_eq!(s(&top, "PayloadDisplayName"), format!("{} ({a})", p.name));
        let id = s(&top, "PayloadIdentifier");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{id}"
        );
        let mail = &payloads(&top)[0];
        assert_eq!(s(mail, "EmailAddress"), a.to_string());
        assert_eq!(s(mail, "IncomingMailServerUsername"), a.to_string());
        assert_eq!(s(mail, "OutgoingMailServerUsername"), a.to_string());
        let cal = &payloads(&top)[1];
        let encoded = crate::model::expand_url("%EMAILADDRESS%", Some(&a));
        assert!(s(cal, "CalDAVPrincipalURL").ends_with(&format!("/{encoded}/")));
        assert!(doc.filename.unwrap().ends_with("-mail.mobileconfig"));
    }
    let idn = parse(&render(&p, &addr("jörg+news@Bücher.example")));
    assert!(
        s(&idn, "PayloadIdentifier").starts_with("example.xn--bcher-kva.mail.j-rg-news-x"),
        "{}",
        s(&idn, "PayloadIdentifier")
    );
}

#[test]
fn sanitised_identifiers_do_not_collide() {
    let p = provider(FULL);
    let plus = parse(&render(&p, &addr("a+b@example.com")));
    let dash = parse(&render(&p, &addr("a-b@example.com")));
    assert_eq!(s(&dash, "PayloadIdentifier"), "com.example.mail.a-b");
    assert_ne!(s(&plus, "PayloadIdentifier"), s(&dash, "PayloadIdentifier"));
}

#[test]
fn split_url_parts() {
    let u = split_url("https://h.example:8443/p/q?x=1#f").unwrap();
    assert_eq!(
        u,
        UrlParts {
            https: true,
            host: "h.example",
            port: 8443,
            path: "/p/q"
        }
    );
    let u = split_url("http://h.example").unwrap();
    assert_eq!((u.https, u.port, u.path), (false, 80, ""));
    assert!(split_url("ftp://h.example/").is_none());
    assert!(split_url("https://u@h.example/").is_none());
    assert!(split_url("https://h.example:99999/").is_none());
}

#[test]
fn first_encrypted_server_of_each_kind_wins_over_an_earlier_plain_one() {
    let text = r#"
[[provider]]
id = "mixed.example"
name = "Mixed"
domains = ["mixed.example"]
  [[provider.server]]
  type = "imap"
  host = "plain.mixed.example"
  port = 143
  security = "plain"
  [[provider.server]]
  type = "imap"
  host = "secure.mixed.example"
  port = 143
  security = "starttls"
  [[provider.server]]
  type = "smtp"
  host = "relay.mixed.example"
  port = 25
  security = "plain"
  [[provider.server]]
  type = "smtp"
  host = "submit.mixed.example"
  port = 465
  security = "tls"
"#;
    let p = provider(text);
    let top = parse(&render(&p, &addr("bob@mixed.example")));
    let mail = &payloads(&top)[0];
    assert_eq!(
        s(mail, "IncomingMailServerHostName"),
        "secure.mixed.example"
    );
    assert_eq!(i(mail, "IncomingMailServerPortNumber"), 143);
    assert_eq!(
        s(mail, "OutgoingMailServerHostName"),
        "submit.mixed.example"
    );
    assert_eq!(i(mail, "OutgoingMailServerPortNumber"), 465);
    assert!(b(mail, "OutgoingMailServerUseSSL"));
    let (incoming, outgoing) = chosen_servers(&p).unwrap();
    assert_eq!(incoming.host_port().unwrap().0, "secure.mixed.example");
    assert_eq!(outgoing.host_port().unwrap().0, "submit.mixed.example");
}

#[test]
fn only_plain_servers_still_give_a_profile() {
    let text = r#"
[[provider]]
id = "old.example"
name = "Old"
domains = ["old.example"]
  [[provider.server]]
  type = "imap"
  host = "imap.old.example"
  port = 143
  security = "plain"
  [[provider.server]]
  type = "smtp"
  host = "smtp.old.example"
  port = 25
  security = "plain"
"#;
    let top = parse(&render(&provider(text), &addr("bob@old.example")));
    let mail = &payloads(&top)[0];
    assert_eq!(s(mail, "IncomingMailServerHostName"), "imap.old.example");
    assert_eq!(s(mail, "OutgoingMailServerHostName"), "smtp.old.example");
}
