//! Per-user values (`[provider.users_from]`) against the real binary: a map
//! file and a real PostgreSQL. Known users get their login, name and hosts
//! in every format; unknown addresses, hostile ones and a dead database get
//! byte-for-byte the provider's default answer, never a 5xx.

use std::path::Path;
use std::process::Command;

use crate::pebble::free_tcp_port;
use crate::support::{Postgres, ServeProcess};

const PROVIDER: &str = r#"
[[provider]]
id = "example.com"
name = "Example Mail"
domains = ["example.com"]
  [[provider.server]]
  type = "imap"
  host = "imap.example.com"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.com"
  username = "%EMAILLOCALPART%"
"#;

fn config(dir: &Path, port: u16, users_from: &str) -> std::path::PathBuf {
    let path = dir.join(if users_from.is_empty() {
        "plain.toml"
    } else {
        "mailconfd.toml"
    });
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp_listen = [\"127.0.0.1:{port}\"]\nstate_dir = \"{}\"\n[tls]\nmode = \"off\"\n{PROVIDER}{users_from}",
            dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

/// The provider's default answer for `address`, from the render command of a
/// config without a directory.
fn default_answer(dir: &Path, address: &str) -> String {
    let plain = config(dir, 1, "");
    let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["render", "-c"])
        .arg(&plain)
        .args(["--email", address, "thunderbird"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn map_file_users_get_their_own_values_and_others_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("users.toml");
    std::fs::write(
        &map,
        "[\"alice@example.com\"]\nlogin_name = \"u1001\"\ndisplay_name = \"Alice <Liddell>\"\nimap_host = \"imap7.example.com\"\n",
    )
    .unwrap();
    let port = free_tcp_port();
    let cfg = config(
        dir.path(),
        port,
        &format!("  [provider.users_from]\n  file = \"{}\"\n", map.display()),
    );
    let d = ServeProcess::start(&cfg, port);
    let (status, body) = d.thunderbird("alice@example.com");
    assert_eq!(status, 200);
    assert!(
        body.contains("<hostname>imap7.example.com</hostname>"),
        "{body}"
    );
    assert!(body.contains("<username>u1001</username>"), "{body}");
    assert!(
        body.contains("<hostname>smtp.example.com</hostname>"),
        "{body}"
    );
    let (_, pox) = d.pox("alice@example.com");
    assert!(
        pox.contains("<DisplayName>Alice &lt;Liddell&gt;</DisplayName>"),
        "{pox}"
    );
    assert!(pox.contains("<LoginName>u1001</LoginName>"), "{pox}");
    // Unknown: exactly the default answer.
    let (status, body) = d.thunderbird("bob@example.com");
    assert_eq!(status, 200);
    assert_eq!(body, default_answer(dir.path(), "bob@example.com"));

    // `check --online` looks a sample address up and shows what the
    // directory did; a broken one fails the check with its error.
    let online = |cfg: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["check", "--online", "-c"])
            .arg(cfg)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = online(&cfg);
    assert!(ok, "{out}");
    assert!(
        out.contains("users_from map file")
            && out.contains("postmaster@example.com: not in the directory"),
        "{out}"
    );
    std::fs::write(&map, "this is [not toml").unwrap();
    let (ok, out) = online(&cfg);
    assert!(!ok, "{out}");
    assert!(
        out.contains("users_from map file") && out.contains("FAILED"),
        "{out}"
    );
}

#[test]
fn postgresql_users_bound_as_parameters_and_a_dead_database_serves_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pg) = Postgres::start(dir.path()) else {
        return;
    };
    let pg_port = pg.port;
    pg.sql(
        "CREATE TABLE mailbox (username TEXT PRIMARY KEY, login_name TEXT, display_name TEXT, imap_host TEXT, smtp_host TEXT);\
         INSERT INTO mailbox VALUES ('alice@example.com', 'u1001', 'Alice', 'imap7.example.com', NULL),\
                                    ('carol@example.com', 'u1003', 'Carol', NULL, 'smtp3.example.com');",
    );
    let port = free_tcp_port();
    let cfg = config(
        dir.path(),
        port,
        &format!(
            "  [provider.users_from]\n  sql = \"postgresql://postgres@127.0.0.1:{pg_port}/postgres\"\n  query = \"SELECT login_name, display_name, imap_host, smtp_host FROM mailbox WHERE username = $1\"\n  timeout_ms = 300\n"
        ),
    );
    let d = ServeProcess::start(&cfg, port);
    let (_, body) = d.thunderbird("alice@example.com");
    assert!(
        body.contains("<hostname>imap7.example.com</hostname>"),
        "{body}"
    );
    assert!(body.contains("<username>u1001</username>"), "{body}");
    // Hostile local parts are values, not SQL.
    for hostile in [
        "x'or'1'='1@example.com",
        "%@example.com",
        "a'--@example.com",
    ] {
        let (status, body) = d.thunderbird(hostile);
        assert_eq!(status, 200, "{hostile}");
        assert!(!body.contains("u100"), "{hostile} matched a row: {body}");
    }
    let (_, unknown) = d.thunderbird("dave@example.com");
    assert_eq!(unknown, default_answer(dir.path(), "dave@example.com"));

    // The database dies: cached users keep their values, others get the
    // defaults at once (within the 300 ms deadline), never a 5xx.
    pg.stop();
    let (status, body) = d.thunderbird("alice@example.com");
    assert_eq!(status, 200);
    assert!(
        body.contains("u1001"),
        "a cached hit survives the outage: {body}"
    );
    let (status, body) = d.thunderbird("carol@example.com");
    assert_eq!(status, 200);
    assert_eq!(body, default_answer(dir.path(), "carol@example.com"));
}
