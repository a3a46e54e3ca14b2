use super::*;

const MINIMAL: &str = r#"
[[provider]]
id = "example.com"
name = "Example Mail"
domains = ["example.com"]
  [[provider.server]]
  type = "imap"
  host = "mail.example.com"
  [[provider.server]]
  type = "smtp"
  host = "mail.example.com"
"#;

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        Err(other) => vec![other.to_string()],
        Ok(_) => vec![],
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.tls.mode, TlsMode::Acme);
    assert_eq!(c.server.https_listen, vec!["[::]:443".parse().unwrap()]);
    let p = c.provider_for_domain("example.com").unwrap();
    assert_eq!(p.short_name, "Example Mail");
    assert_eq!(p.servers[0].host_port().unwrap().1, 993);
    assert_eq!(p.servers[1].host_port().unwrap().1, 465);
    assert_eq!(p.servers[0].username, "%EMAILADDRESS%");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn bad_port_names_key_path() {
    let text = MINIMAL.replace("type = \"smtp\"", "type = \"smtp\"\n  port = 70000");
    assert_eq!(
        problems(&text),
        vec!["provider[0].server[1].port: must be 1-65535"]
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let text = r#"
bogus = 1
[tls]
mode = "sometimes"
[[provider]]
id = "not a host"
name = "X"
domains = ["ok.example", "bad_domain.example", "OK.example"]
  [[provider.server]]
  type = "imap"
  host = "%EMAILDOMAIN%.%FOO%"
  auth = ["password-cleartext", "magic"]
[[provider]]
id = "two.example"
name = "Two"
domains = ["ok.example"]
  [[provider.server]]
  type = "pop3"
  host = "pop.two.example"
  [[provider.server]]
  type = "smtp"
  host = "smtp.two.example"
  security = "starttls"
"#;
    let got = problems(text);
    for want in [
        "bogus: unknown key",
        "tls.mode: \"sometimes\" is not one of acme, files, local, off",
        "provider[0].id: must be hostname-like",
        "provider[0].domains[1]: \"bad_domain.example\"",
        "provider[0].domains[2]: \"ok.example\" is listed twice",
        "provider[0].server[0].host: unknown placeholder %FOO%",
        "provider[0].server[0].auth: \"magic\" is not one of",
        "provider[0].server[0].auth: \"magic\"",
    ] {
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in {got:#?}"
        );
    }
}

#[test]
fn domains_must_be_unique_across_providers() {
    let text = format!(
        "{MINIMAL}{}",
        MINIMAL.replace("id = \"example.com\"", "id = \"other.example\"")
    );
    assert_eq!(
        problems(&text),
        vec!["provider[1].domains[0]: \"example.com\" is already served by provider[0]"]
    );
}

#[test]
fn idn_domains_are_stored_as_a_labels() {
    let text = MINIMAL.replace(
        "domains = [\"example.com\"]",
        "domains = [\"Bücher.example\"]",
    );
    let c = parse(&text).unwrap();
    assert!(c.provider_for_domain("xn--bcher-kva.example").is_some());
}

#[test]
fn type_errors_name_the_key() {
    let text = MINIMAL.replace(
        "host = \"mail.example.com\"\n  [[provider.server]]",
        "host = \"mail.example.com\"\n  port = \"abc\"\n  [[provider.server]]",
    );
    let got = problems(&text);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("provider[0].server[0].port"), "{got:?}");
}

#[test]
fn syntax_errors_name_the_line() {
    let got = problems("[server\nx = 1");
    assert!(got[0].contains("line 1"), "{got:?}");
}

#[test]
fn quirks_are_warnings_not_errors() {
    let text = MINIMAL.replace(
        "type = \"imap\"",
        "type = \"imap\"\n  security = \"plain\"\n  auth = \"OAuth2\"",
    );
    let c = parse(&text).unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("Thunderbird for Android reject")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.contains("OAuth2 without a password")),
        "{w:?}"
    );
}

#[test]
fn dav_servers_need_a_url_not_a_host() {
    let text = format!(
        "{MINIMAL}  [[provider.server]]\n  type = \"caldav\"\n  host = \"dav.example.com\"\n"
    );
    let got = problems(&text);
    assert!(
        got.contains(
            &"provider[0].server[2].host: caldav servers are given by url, not host".to_owned()
        ),
        "{got:?}"
    );
    assert!(
        got.contains(&"provider[0].server[2].url: is required for caldav servers".to_owned()),
        "{got:?}"
    );
}

#[test]
fn trusted_proxy_ranges() {
    let c = parse(&format!(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n{MINIMAL}"
    ))
    .unwrap();
    assert!(c.server.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!c.server.trusted_proxies[0].contains("11.1.2.3".parse().unwrap()));
    assert!(c.server.trusted_proxies[1].contains("::1".parse().unwrap()));
}

#[test]
fn bare_domain_is_opt_in_per_provider_or_per_domain() {
    let names = |c: &Config, d: &str| c.names_for_domain(d);
    let two = MINIMAL.replace(
        "domains = [\"example.com\"]",
        "domains = [\"example.com\", \"example.net\"]",
    );
    let off = parse(&two).unwrap();
    assert!(!off.serves_bare_domain("example.com"));
    assert_eq!(
        names(&off, "example.com"),
        ["autoconfig.example.com", "autodiscover.example.com"]
    );

    let all = parse(&two.replace(
        "name = \"Example Mail\"",
        "name = \"Example Mail\"\nbare_domain = true",
    ))
    .unwrap();
    assert!(all.serves_bare_domain("example.com") && all.serves_bare_domain("example.net"));
    assert_eq!(
        names(&all, "example.net"),
        [
            "autoconfig.example.net",
            "autodiscover.example.net",
            "example.net"
        ]
    );

    let one = parse(&two.replace(
        "name = \"Example Mail\"",
        "name = \"Example Mail\"\nbare_domain = [\"Example.NET\"]",
    ))
    .unwrap();
    assert!(one.serves_bare_domain("example.net"));
    assert!(!one.serves_bare_domain("example.com"));
    assert_eq!(names(&one, "example.com").len(), 2);

    let off_explicitly = parse(&two.replace(
        "name = \"Example Mail\"",
        "name = \"Example Mail\"\nbare_domain = false",
    ))
    .unwrap();
    assert!(!off_explicitly.serves_bare_domain("example.com"));

    assert_eq!(
        problems(&two.replace(
            "name = \"Example Mail\"",
            "name = \"Example Mail\"\nbare_domain = [\"other.example\"]",
        )),
        ["provider[0].bare_domain[0]: \"other.example\" is not one of this provider's domains"]
    );
}

#[test]
fn state_defaults_to_sled_and_checks_the_postgres_settings() {
    assert_eq!(parse(MINIMAL).unwrap().state, state::StateBackend::Sled);
    let pg = format!(
        "{MINIMAL}\n[state]\nbackend = \"postgresql\"\nurl = \"postgresql://mailconfd@db.internal/mailconfd\"\nnode = \"node-a\"\n"
    );
    match parse(&pg).unwrap().state {
        state::StateBackend::Postgres(s) => {
            assert_eq!(s.node, "node-a");
            assert_eq!(s.lease_secs, state::DEFAULT_LEASE_SECS);
        }
        other => panic!("{other:?}"),
    }
    let bad = format!(
        "{MINIMAL}\n[state]\nbackend = \"postgres\"\nurl = \"mysql://x@db/m\"\nnode = \"a b\"\nlease_secs = 1\nsurprise = 1\n"
    );
    let found = problems(&bad).join("\n");
    for key in [
        "state.url",
        "state.node",
        "state.lease_secs",
        "state.surprise",
    ] {
        assert!(found.contains(key), "{key} missing in {found}");
    }
    assert!(
        problems(&format!("{MINIMAL}\n[state]\nbackend = \"postgres\"\n"))
            .join("\n")
            .contains("state.url: is required")
    );
    assert!(
        problems(&format!("{MINIMAL}\n[state]\nbackend = \"etcd\"\n"))
            .join("\n")
            .contains("state.backend")
    );
    assert!(
        problems(&format!("{MINIMAL}\n[state]\nnode = \"a\"\n"))
            .join("\n")
            .contains("only applies with backend")
    );
    // A password in the URL is refused for the world-readable file.
    let with_password = format!(
        "{MINIMAL}\n[state]\nbackend = \"postgres\"\nurl = \"postgresql://u:secret@db/m\"\n"
    );
    let c = parse(&with_password).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.to_string().contains("state.url")),
        "{:?}",
        c.warnings
    );
}
