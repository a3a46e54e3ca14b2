//! Every ISPDB file in the shared corpus survives
//! `import` -> `config::parse` -> `thunderbird::render` with the same mail
//! servers, in the same order. Servers mailconfd does not model (other types,
//! no known authentication method) must be left out with a comment instead.

use std::path::PathBuf;

use mailconfd::model::Auth;
use mailconfd::render::thunderbird;
use mailconfd::{config, import};
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/corpus/ispdb"
    ))
}

/// One mail server as a client reads it.
#[derive(Debug, Clone, Default, PartialEq)]
struct MailServer {
    element: String,
    kind: String,
    hostname: String,
    port: String,
    /// First value Thunderbird understands.
    socket_type: String,
    /// Known methods, canonical names, duplicates (`plain` = `password-cleartext`) removed.
    auth: Vec<String>,
    username: Option<String>,
}

#[derive(Debug, Default)]
struct Doc {
    domains: Vec<String>,
    servers: Vec<MailServer>,
}

/// A deliberately small reader, independent of `import`'s: it follows the
/// first `emailProvider` and reads its servers' leaf elements.
fn read(xml: &[u8]) -> Doc {
    let text = std::str::from_utf8(xml).unwrap();
    let mut r = Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut doc = Doc::default();
    let mut providers = 0;
    let mut server = MailServer::default();
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) => {
                let name = e.name().as_ref().to_owned();
                if name == "emailProvider" {
                    providers += 1;
                }
                if (name == "incomingServer" || name == "outgoingServer") && path.len() == 2 {
                    let kind = e
                        .try_get_attribute("type")
                        .unwrap()
                        .map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .unwrap()
                                .into_owned()
                        })
                        .unwrap_or_default();
                    server = MailServer {
                        element: name.clone(),
                        kind,
                        ..MailServer::default()
                    };
                }
                path.push(name);
                buf.clear();
            }
            Event::Text(t) => buf.push_str(&t.xml10_content()),
            Event::GeneralRef(g) => match g.resolve_char_ref().unwrap() {
                Some(c) => buf.push(c),
                None => buf.push_str(resolve_predefined_entity(&g).unwrap()),
            },
            Event::End(_) => {
                let name = path.pop().unwrap();
                let value = std::mem::take(&mut buf).trim().to_owned();
                if providers != 1 {
                    continue;
                }
                match (path.len(), name.as_str()) {
                    (2, "domain") => doc.domains.push(value),
                    (2, "incomingServer" | "outgoingServer") => doc.servers.push(server.clone()),
                    (3, "hostname") => server.hostname = value,
                    (3, "port") => server.port = value,
                    (3, "socketType")
                        if server.socket_type.is_empty()
                            && ["SSL", "STARTTLS", "plain"].contains(&value.as_str()) =>
                    {
                        server.socket_type = value;
                    }
                    (3, "authentication") => {
                        if let Some(a) = Auth::from_name(&value) {
                            let name = a.thunderbird_name().to_owned();
                            if !server.auth.contains(&name) {
                                server.auth.push(name);
                            }
                        }
                    }
                    (3, "username") => server.username = Some(value),
                    _ => {}
                }
            }
            Event::Empty(e) => {
                assert_ne!(e.name().as_ref(), "incomingServer");
            }
            Event::Eof => break,
            _ => {}
        }
    }
    doc
}

fn is_modelled(s: &MailServer) -> bool {
    let kind_ok = match s.element.as_str() {
        "incomingServer" => s.kind == "imap" || s.kind == "pop3",
        _ => s.kind == "smtp",
    };
    kind_ok && !s.auth.is_empty()
}

#[test]
fn every_ispdb_file_round_trips_through_import_config_and_render() {
    let dir = corpus_dir();
    assert!(dir.is_dir(), "corpus not found at {}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "only {} corpus files", files.len());

    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        let original = std::fs::read(path).unwrap();
        let block = import::import(&original).unwrap_or_else(|e| panic!("{name}: import: {e}"));
        let config = config::parse(&block)
            .unwrap_or_else(|e| panic!("{name}: block is not a valid config: {e:?}\n{block}"));
        assert_eq!(config.providers.len(), 1, "{name}");
        let provider = &config.providers[0];
        // Each answer names one domain (the asked one); the config keeps them all.
        let rendered = thunderbird::render(provider, &provider.domains[0], None);

        let before = read(&original);
        let after = read(&rendered.body);

        // Domains: every valid one, in order; an invalid one only with a comment.
        let valid: Vec<String> = before
            .domains
            .iter()
            .filter_map(|d| mailconfd::address::normalize_domain(d).ok())
            .collect();
        assert_eq!(provider.domains, valid, "{name}: domains");
        assert_eq!(after.domains, valid[..1], "{name}: the answer's domain");
        let dropped = before.domains.len() - valid.len();
        assert_eq!(
            block.matches("# skipped <domain").count(),
            dropped,
            "{name}: one comment per skipped domain\n{block}"
        );

        // Servers: the modelled ones, field by field, in document order.
        let mut expected: Vec<MailServer> = before
            .servers
            .iter()
            .filter(|s| is_modelled(s))
            .cloned()
            .collect();
        for s in &mut expected {
            // The config's default for a server without <username>.
            s.username
                .get_or_insert_with(|| "%EMAILADDRESS%".to_owned());
        }
        assert!(!expected.is_empty(), "{name}: nothing to compare");
        assert_eq!(after.servers, expected, "{name}: servers\n{block}");

        let skipped = before.servers.len() - expected.len();
        assert_eq!(
            block.matches("  # skipped <").count(),
            skipped,
            "{name}: one comment per skipped server\n{block}"
        );
    }
}

#[test]
fn corpus_quirks_are_reported_as_comments() {
    let read_file = |f: &str| std::fs::read(corpus_dir().join(f)).unwrap();

    // A non-hostname emailProvider id falls back to the first domain.
    let block = import::import(&read_file("messagingengine.com.xml")).unwrap();
    assert!(block.contains("id = \"messagingengine.com\""), "{block}");
    assert!(
        block.contains("# emailProvider id \"MessagingEngine\""),
        "{block}"
    );

    // Exchange-style types are skipped, each with its reason.
    let block = import::import(&read_file("office365.com.xml")).unwrap();
    for kind in ["ews", "owa", "graph", "exchange"] {
        assert!(
            block.contains(&format!("# skipped <incomingServer type=\"{kind}\">")),
            "{kind}\n{block}"
        );
    }

    // `&amp;` in a display name arrives as `&`.
    let block = import::import(&read_file("1und1.de.xml")).unwrap();
    assert!(block.contains("name = \"1&1\""), "{block}");

    // Non-ASCII names survive unchanged.
    let block = import::import(&read_file("kokuyou.ne.jp.xml")).unwrap();
    assert!(block.contains("長和町黒耀の里ゆいねっと"), "{block}");
}
