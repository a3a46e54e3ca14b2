use super::*;

const MINIMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.org">
    <domain>example.org</domain>
    <displayName>Example</displayName>
    <incomingServer type="imap">
      <hostname>imap.example.org</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.org</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"#;

fn err(xml: &str) -> String {
    import(xml.as_bytes()).unwrap_err().to_string()
}

fn parses(block: &str) -> crate::config::Config {
    crate::config::parse(block).unwrap_or_else(|e| panic!("{e:?}\n{block}"))
}

#[test]
fn minimal_document_imports_and_parses() {
    let block = import(MINIMAL.as_bytes()).unwrap();
    let config = parses(&block);
    let p = &config.providers[0];
    assert_eq!(p.id, "example.org");
    assert_eq!(p.name, "Example");
    assert_eq!(p.short_name, "Example");
    assert_eq!(p.servers.len(), 2);
    assert!(block.contains("auth = \"password-cleartext\"\n"));
}

#[test]
fn crlf_tabs_comments_no_declaration_and_entities() {
    let xml = MINIMAL
            .replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", "")
            .replace('\n', "\r\n")
            .replace("    <", "\t\t<")
            .replace(
                "<displayName>Example</displayName>",
                "<!-- a comment -->\r\n<displayName>\r\n\tA &amp; B &#x3C;&#60;&gt; &quot;&apos; <![CDATA[<c>]]>\r\n</displayName><unknown a=\"b\"><x/></unknown>",
            );
    let block = import(xml.as_bytes()).unwrap();
    let config = parses(&block);
    assert_eq!(config.providers[0].name, r#"A & B <<> "' <c>"#);
}

#[test]
fn several_auth_methods_become_a_list_and_aliases_fold() {
    let xml = MINIMAL.replace(
            "<authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>",
            "<authentication>OAuth2</authentication><authentication>plain</authentication><authentication>password-cleartext</authentication><authentication>kerberos-v9</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>",
        );
    let block = import(xml.as_bytes()).unwrap();
    assert!(
        block.contains("auth = [\"OAuth2\", \"password-cleartext\"]"),
        "{block}"
    );
    assert!(
        block.contains("# skipped <authentication> \"kerberos-v9\""),
        "{block}"
    );
    let config = parses(&block);
    assert_eq!(
        config.providers[0].servers[0].auth,
        [Auth::OAuth2, Auth::PasswordCleartext]
    );
}

#[test]
fn server_without_known_auth_is_skipped_with_a_comment() {
    let xml = MINIMAL.replace(
            "</outgoingServer>",
            "</outgoingServer><outgoingServer type=\"smtp\"><hostname>b.example.org</hostname><port>25</port><socketType>plain</socketType><authentication>carrier-pigeon</authentication></outgoingServer>",
        );
    let block = import(xml.as_bytes()).unwrap();
    assert!(block.contains("  # skipped <outgoingServer type=\"smtp\"> (line 19): no <authentication> mailconfd knows (\"carrier-pigeon\")"), "{block}");
    assert_eq!(parses(&block).providers[0].servers.len(), 2);
    // If that was the only SMTP server, the import fails: the config needs one.
    let only = MINIMAL.replace(
            "<authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </outgoingServer>",
            "<username>%EMAILADDRESS%</username>\n    </outgoingServer>",
        );
    assert_eq!(
        err(&only),
        "line 3: no smtp server mailconfd can serve (Thunderbird requires one)"
    );
}

#[test]
fn errors_name_the_line_and_the_reason() {
    let cases = [
            (MINIMAL.replace("<port>993</port>", "<port>99x</port>"), "line 8: <port> \"99x\" is not a number"),
            (MINIMAL.replace("<port>465</port>", "<port>70000</port>"), "line 15: <port> \"70000\" is not in 1-65535"),
            (MINIMAL.replace("<port>465</port>", "<port>0</port>"), "line 15: <port> \"0\" is not in 1-65535"),
            (MINIMAL.replace("imap.example.org", "imap_x.example.org"), "line 7: <hostname> \"imap_x.example.org\": only letters, digits and inner hyphens are allowed in a label"),
            (MINIMAL.replace("imap.example.org", "%USER%.example.org"), "line 7: <hostname> \"%USER%.example.org\": unknown placeholder \"%USER%\""),
            (MINIMAL.replace("<hostname>imap.example.org</hostname>", ""), "line 6: <incomingServer type=\"imap\"> (line 6) has no <hostname>"),
            (MINIMAL.replace("<socketType>SSL</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>", "<socketType>ssl</socketType><authentication>plain</authentication></incomingServer>"), "line 6: <incomingServer type=\"imap\"> (line 6) has no <socketType> SSL, STARTTLS or plain"),
            (MINIMAL.replace("<username>%EMAILADDRESS%</username>\n    </incomingServer>", "<username>%REALNAME%</username></incomingServer>"), "line 11: <username> has unknown placeholder \"%REALNAME%\" (known: %EMAILADDRESS%, %EMAILLOCALPART%, %EMAILDOMAIN%)"),
            (MINIMAL.replace("</displayName>", "</displayname>"), "line 5: not well-formed XML"),
            (MINIMAL.replace("Example<", "&nbsp;<"), "line 5: unknown entity &nbsp;"),
            (MINIMAL.replace("clientConfig", "html"), "line 2: root element is <html>, not <clientConfig>"),
            (MINIMAL.replace("<domain>example.org</domain>", "<domain>localhost</domain>"), "line 3: <emailProvider> has no <domain> that is a valid mail domain"),
            (MINIMAL.replace("</clientConfig>\n", ""), "document ends inside an element"),
            ("".to_owned(), "line 1: no <clientConfig> element"),
            ("<clientConfig/>".to_owned(), "line 1: no <emailProvider> in <clientConfig>"),
        ];
    for (xml, expected) in cases {
        let got = err(&xml);
        assert!(
            got.starts_with(expected) || got.contains(expected),
            "got {got:?}, want {expected:?}"
        );
    }
}

#[test]
fn refuses_dtds_oversize_and_non_utf8() {
    let dtd = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE clientConfig [\n<!ENTITY lol \"lol\">\n]>\n{}",
        &MINIMAL[MINIMAL.find("<clientConfig").unwrap()..]
    )
    .replace("Example<", "&lol;<");
    assert_eq!(
        err(&dtd),
        "line 2: DTDs with an internal subset or entity declarations are refused"
    );
    // A plain DOCTYPE without a subset declares nothing and is harmless.
    let plain = MINIMAL.replace("<clientConfig", "<!DOCTYPE clientConfig>\n<clientConfig");
    assert!(import(plain.as_bytes()).is_ok());

    let big = format!("{MINIMAL}{}", " ".repeat(MAX_INPUT_BYTES));
    assert_eq!(
        import(big.as_bytes()),
        Err(ImportError::TooLarge { len: big.len() })
    );

    let mut latin1 = MINIMAL.replace("Example<", "Caf\u{e9}<").into_bytes();
    let at = latin1.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    latin1.splice(at..at + 2, [0xe9]);
    assert_eq!(
        err_bytes(&latin1),
        "line 5: not UTF-8 (only UTF-8 documents are read)"
    );
}

fn err_bytes(xml: &[u8]) -> String {
    import(xml).unwrap_err().to_string()
}

#[test]
fn hostile_values_are_escaped_into_valid_toml() {
    let xml = MINIMAL
            .replace(
                "<displayName>Example</displayName>",
                "<displayName>\"\"\" ] [x] = 1 \\ '''&#10;[[provider]]&#7;</displayName><displayShortName>Bücher &amp; Söhne</displayShortName>",
            )
            .replace(
                "<domain>example.org</domain>",
                "<domain>Bücher.example</domain><domain>bad domain&#10;[x]</domain><domain>BÜCHER.example</domain><domain purpose=\"mx\">mx.example.net</domain>",
            )
            .replace("id=\"example.org\"", "id=\"&quot;&#10;id = 'x'\"")
            .replace("type=\"imap\"", "type=\"IMAP\"")
            .replace("</emailProvider>", "<incomingServer type=\"ex&#10;[evil]\"/></emailProvider><emailProvider id=\"second.example\"/>")
            .replace("<username>%EMAILADDRESS%</username>\n    </incomingServer>", "<username>%EMAILLOCALPART%+\"x\"\\y</username>\n    </incomingServer>");
    let block = import(xml.as_bytes()).unwrap();
    let config = parses(&block);
    let p = &config.providers[0];
    assert_eq!(p.id, "xn--bcher-kva.example");
    assert_eq!(p.domains, ["xn--bcher-kva.example"]);
    assert_eq!(p.name, "\"\"\" ] [x] = 1 \\ ''' [[provider]]");
    assert_eq!(p.short_name, "Bücher & Söhne");
    assert_eq!(p.servers[0].username, "%EMAILLOCALPART%+\"x\"\\y");
    for l in block.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(!l.chars().any(char::is_control), "{l:?}");
    }
    assert!(
        block.contains("# skipped <domain> \"BÜCHER.example\""),
        "{block}"
    );
    assert!(
        block.contains("# skipped <domain purpose=\"mx\">"),
        "{block}"
    );
    assert!(
        block.contains("# ignored the <emailProvider> on line"),
        "{block}"
    );
    assert!(
        block.contains("# skipped <incomingServer type=\"ex [evil]\">"),
        "{block}"
    );
}

#[test]
fn never_panics_on_mangled_input() {
    // Deterministic mutations (xorshift) of a real document: truncations,
    // byte flips and markup characters dropped in anywhere.
    let base = MINIMAL.as_bytes();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let noise: &[&[u8]] = &[
        b"<",
        b">",
        b"&",
        b"&#0;",
        b"&#xFFFFFFFF;",
        b"]]>",
        b"<!DOCTYPE",
        b"\"",
        b"</",
        b"/>",
        b"<?",
        b"\xff",
        b"\xc3",
        b"%",
    ];
    for _ in 0..3000 {
        let mut doc = base.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % (doc.len() + 1);
            match next() % 3 {
                0 => doc.truncate(at),
                1 => {
                    let n = noise[(next() as usize) % noise.len()];
                    doc.splice(at..at, n.iter().copied());
                }
                _ => {
                    if at < doc.len() {
                        doc[at] = (next() & 0xff) as u8;
                    }
                }
            }
        }
        if let Ok(block) = import(&doc) {
            // Whatever is accepted must be a valid config.
            parses(&block);
        }
    }
}

#[test]
fn duplicate_domains_are_skipped_once_each_also_in_a_long_list() {
    // Thousands of domains, each listed twice in another spelling: the second
    // of each pair is skipped with a note and the order of first sightings kept.
    let mut list = String::new();
    for i in 0..5_000 {
        list.push_str(&format!(
            "<domain>d{i}.example</domain><domain>D{i}.Example.</domain>"
        ));
    }
    let xml = MINIMAL.replace("<domain>example.org</domain>", &list);
    let block = import(xml.as_bytes()).unwrap();
    let config = parses(&block);
    let domains = &config.providers[0].domains;
    assert_eq!(domains.len(), 5_000);
    assert_eq!(domains[0], "d0.example");
    assert_eq!(domains[4_999], "d4999.example");
    assert_eq!(block.matches("listed twice").count(), 5_000);
}
