//! Domain sources against the real binary: a Postfix-style domain file
//! (added and removed domains, a vanished file, a restart served from the
//! cache), and real PostgreSQL, MariaDB and SQLite databases started here
//! in temp dirs (Postfix Admin's `domain` table with its `active` flag).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pebble::free_tcp_port;
use crate::support::{CONFIG, Postgres, eventually, is_root, require_program};

struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Serves `source` (a `[provider.domains_from]` body) for a hoster
    /// provider next to CONFIG's own, plain HTTP, state in `state`.
    fn start(dir: &Path, source: &str) -> Daemon {
        let port = free_tcp_port();
        let config = dir.join("mailconfd.toml");
        let text = CONFIG
            .replace(
                "[server]\n",
                &format!("[server]\nhttp_listen = [\"127.0.0.1:{port}\"]\n"),
            )
            .replace(
                "state_dir = \"/nonexistent-not-used-in-off-mode\"",
                &format!("state_dir = \"{}\"", dir.join("state").display()),
            )
            + &format!(
                r#"
[[provider]]
id = "hoster.example"
name = "Hoster"
  [provider.domains_from]
{source}
  [[provider.server]]
  type = "imap"
  host = "imap.hoster.example"
  [[provider.server]]
  type = "smtp"
  host = "smtp.hoster.example"
"#
            );
        std::fs::write(&config, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["serve", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon { child, port };
        eventually("the daemon", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        d
    }

    fn status(&self, domain: &str) -> u16 {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.{domain}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

#[test]
fn domain_file_is_followed_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("vdomains");
    std::fs::write(
        &list,
        "# Postfix virtual_mailbox_domains\na.example\n\n  B.Example  # a customer\n",
    )
    .unwrap();
    let source = format!("  file = \"{}\"", list.display());
    let d = Daemon::start(dir.path(), &source);
    assert_eq!(d.status("a.example"), 200);
    assert_eq!(d.status("b.example"), 200);
    assert_eq!(d.status("c.example"), 404);
    // The file's own domains are untouched.
    assert_eq!(d.status("example.com"), 200);

    let check_online = || {
        Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["check", "--online", "-c"])
            .arg(dir.path().join("mailconfd.toml"))
            .output()
            .unwrap()
    };
    let out = check_online();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("provider hoster.example: file "),
        "{stdout}"
    );
    assert!(stdout.contains(": 2 domain(s) in "), "{stdout}");

    std::fs::write(&list, "b.example\nc.example\n").unwrap();
    eventually("c.example served", || d.status("c.example") == 200);
    eventually("a.example dropped", || d.status("a.example") == 404);

    // The file vanishes: the last good list keeps serving.
    std::fs::remove_file(&list).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        d.status("c.example"),
        200,
        "a failing source must keep its last list"
    );
    drop(d);

    // A restart while the source is still gone: served from the cache.
    let d = Daemon::start(dir.path(), &source);
    assert_eq!(d.status("b.example"), 200);
    assert_eq!(d.status("c.example"), 200);
    assert_eq!(d.status("a.example"), 404);
}

const POSTFIXADMIN_TABLE: &str = "CREATE TABLE domain (domain VARCHAR(255) PRIMARY KEY, active SMALLINT NOT NULL);\
     INSERT INTO domain VALUES ('ALL', 1), ('pg-one.example', 1), ('pg-two.example', 1), ('pg-off.example', 0);";
const POSTFIXADMIN_QUERY: &str =
    "SELECT domain FROM domain WHERE active = 1 AND domain <> 'ALL' ORDER BY domain";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// PostgreSQL 15 from Debian's packages, in a temp dir, as the postgres user.
#[test]
fn postgresql_source_follows_the_domain_table() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pg) = Postgres::start(dir.path()) else {
        return;
    };
    let port = pg.port;
    pg.sql(POSTFIXADMIN_TABLE);
    let password = dir.path().join("db-password");
    pg.sql("CREATE ROLE mailconfd LOGIN PASSWORD 's3cr:t@'; GRANT SELECT ON domain TO mailconfd;");
    std::fs::write(&password, "s3cr:t@\n").unwrap();

    let d = Daemon::start(
        dir.path(),
        &format!(
            "  sql = \"postgresql://mailconfd@127.0.0.1:{port}/postgres\"\n  password_file = \"{}\"\n  query = \"{POSTFIXADMIN_QUERY}\"\n  refresh_secs = 5",
            password.display()
        ),
    );
    assert_eq!(d.status("pg-one.example"), 200);
    assert_eq!(d.status("pg-two.example"), 200);
    assert_eq!(
        d.status("pg-off.example"),
        404,
        "inactive domains are not served"
    );
    assert_eq!(d.status("all"), 404);

    pg.sql("UPDATE domain SET active = 1 WHERE domain = 'pg-off.example'; DELETE FROM domain WHERE domain = 'pg-one.example';");
    eventually("pg-off.example activated", || {
        d.status("pg-off.example") == 200
    });
    eventually("pg-one.example removed", || {
        d.status("pg-one.example") == 404
    });

    // The database goes away: the last good list keeps serving.
    pg.stop();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(d.status("pg-two.example"), 200);
    assert_eq!(d.status("pg-off.example"), 200);
}

/// MariaDB from Debian's packages, in a temp dir.
#[test]
fn mariadb_source_follows_the_domain_table() {
    if !require_program("mariadbd", "mariadb-server")
        || !require_program("mariadb-install-db", "mariadb-server")
    {
        return;
    }
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run as root");
        eprintln!("SKIPPED: the MariaDB test needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mariadb");
    let socket = dir.path().join("mariadb.sock");
    let port = free_tcp_port();
    run(Command::new("mariadb-install-db")
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display())));
    let mut server = Command::new("mariadbd")
        .args([
            "--user=root",
            "--bind-address=127.0.0.1",
            "--skip-grant-tables=0",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--port={port}"))
        .arg(format!(
            "--pid-file={}",
            dir.path().join("mariadb.pid").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sql = |q: &str| {
        Command::new("mariadb")
            .arg(format!("--socket={}", socket.display()))
            .args(["-u", "root", "-e", q])
            .output()
            .unwrap()
    };
    eventually("MariaDB", || sql("SELECT 1").status.success());
    let setup = format!(
        "CREATE DATABASE postfix; USE postfix; {}; CREATE USER 'mailconfd'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT SELECT ON postfix.domain TO 'mailconfd'@'127.0.0.1';",
        POSTFIXADMIN_TABLE.replace("pg-", "my-")
    );
    let out = sql(&setup);
    assert!(out.status.success(), "{out:?}");
    let password = dir.path().join("db-password");
    std::fs::write(&password, "pw").unwrap();
    let d = Daemon::start(
        dir.path(),
        &format!(
            "  sql = \"mariadb://mailconfd@127.0.0.1:{port}/postfix\"\n  password_file = \"{}\"\n  query = \"{POSTFIXADMIN_QUERY}\"\n  refresh_secs = 5",
            password.display()
        ),
    );
    assert_eq!(d.status("my-one.example"), 200);
    assert_eq!(d.status("my-off.example"), 404);
    assert!(
        sql("UPDATE postfix.domain SET active = 1 WHERE domain = 'my-off.example'")
            .status
            .success()
    );
    eventually("my-off.example activated", || {
        d.status("my-off.example") == 200
    });
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn sqlite_source_reads_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("domains.sqlite");
    // The daemon's own driver creates nothing: make the database with sqlx here.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&format!("sqlite:{}?mode=rwc", db.display()))
            .await
            .unwrap();
        sqlx::raw_sql(&POSTFIXADMIN_TABLE.replace("pg-", "lite-"))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    });
    let d = Daemon::start(
        dir.path(),
        &format!(
            "  sql = \"sqlite:{}\"\n  query = \"{POSTFIXADMIN_QUERY}\"",
            db.display()
        ),
    );
    assert_eq!(d.status("lite-one.example"), 200);
    assert_eq!(d.status("lite-off.example"), 404);
}
