//! The cluster's parts: one Pebble (its mock DNS spreading names over the
//! nodes), one PostgreSQL started into the test's temp dir, and nodes that
//! are the real binary (`mailconfd serve`) as child processes, so that one
//! can be killed with SIGKILL. Every node listens on its own loopback
//! address (127.0.0.2, .3, ...) but on the same HTTP and HTTPS ports, the
//! ones Pebble's validator connects to.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::acme::{World, ca_tools, names};
use crate::pebble::{Pebble, PebbleOptions, free_tcp_port};
use crate::support::{Postgres, require_program};

/// The nodes Pebble's mock DNS points names at (127.0.0.5 and up join later).
pub(crate) const DNS_NODES: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

/// What a test sets up before its nodes start.
pub(crate) struct Setup {
    /// `acme.challenge` of every node.
    pub challenge: &'static str,
    pub pebble: PebbleOptions,
    /// `[state] lease_secs`.
    pub lease_secs: u64,
    /// Every node gets the same `[state] encryption_key_file`.
    pub encrypt: bool,
    /// PostgreSQL asks the nodes for a password (scram-sha-256), which they
    /// read from `[state] password_file`.
    pub password: bool,
}

/// Pebble, PostgreSQL and the nodes of one test. Fields drop in order: the
/// nodes before the database, the database before the temp dir.
pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    pub pg: Postgres,
    /// `postgresql://mailconfd@127.0.0.1:PORT/mailconfd` (interface.md spelling)
    pub url: String,
    lease_secs: u64,
    /// `encryption_key_file` of every node, when `Setup::encrypt`.
    key_file: Option<PathBuf>,
    /// `password_file` of every node, when `Setup::password`.
    password_file: Option<PathBuf>,
    pub world: World,
}

/// Everything a cluster test needs installed (skips outside CI otherwise);
/// PostgreSQL's own check is in `Postgres::start`.
pub(crate) fn tools() -> bool {
    ca_tools() && require_program("runuser", "util-linux")
}

/// HTTP and HTTPS ports free on every address a node of this test may use.
fn shared_ports(ips: &[&str]) -> (u16, u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a, b) = (free_tcp_port(), free_tcp_port());
        let free = |p: u16| {
            ips.iter()
                .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
        };
        if a != b && free(a) && free(b) {
            return (a, b);
        }
        assert!(Instant::now() < deadline, "no port pair free on {ips:?}");
    }
}

impl Cluster {
    /// Starts Pebble and PostgreSQL (role and database `mailconfd`); no
    /// node yet. `None` when PostgreSQL cannot run here (skipped, or failed
    /// in CI inside `Postgres::start`).
    pub(crate) async fn start(setup: Setup) -> Option<Cluster> {
        let ips = [
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.5",
            "127.0.0.6",
        ];
        let (http, https) = shared_ports(&ips);
        let options = setup.pebble.clone();
        let pebble = tokio::task::spawn_blocking(move || Pebble::start_with(http, https, options))
            .await
            .unwrap();
        let world = World::with_pebble(pebble, setup.challenge, http, https);
        let pg = Postgres::start(world.dir.path())?;
        pg.sql("CREATE ROLE mailconfd LOGIN");
        pg.sql("CREATE DATABASE mailconfd OWNER mailconfd");
        let url = format!("postgresql://mailconfd@127.0.0.1:{}/mailconfd", pg.port);
        let key_file = setup.encrypt.then(|| {
            // What `openssl rand -hex 32` makes; fixed, the test needs no secret.
            let path = world.dir.path().join("state.key");
            std::fs::write(&path, format!("{}\n", "5a".repeat(32))).unwrap();
            path
        });
        let password_file = setup.password.then(|| {
            let password = "n0t-in-the-url";
            pg.require_password("mailconfd", password);
            let path = world.dir.path().join("db-password");
            std::fs::write(&path, format!("{password}\n")).unwrap();
            path
        });
        Some(Cluster {
            nodes: Vec::new(),
            pg,
            url,
            lease_secs: setup.lease_secs,
            key_file,
            password_file,
            world,
        })
    }

    /// Points each name of `domain` at another node: autoconfig at
    /// DNS_NODES[i], autodiscover at [i+1], mta-sts at [i+2] (mod 3). Whoever
    /// orders, at least two of its three validations reach another node.
    pub(crate) fn spread_dns(&self, i: usize, domain: &str) {
        for (k, name) in names(domain).iter().enumerate() {
            self.world
                .pebble
                .set_a(name, &[DNS_NODES[(i + k) % DNS_NODES.len()]]);
        }
    }

    /// The node address `name` resolves to after `spread_dns(i, ..)`.
    pub(crate) fn dns_node(i: usize, name_index: usize) -> &'static str {
        DNS_NODES[(i + name_index) % DNS_NODES.len()]
    }

    /// The `[state]` table of a PostgreSQL node.
    pub(crate) fn state_section(&self, node: &str) -> String {
        let mut text = format!(
            "\n[state]\nbackend = \"postgresql\"\nurl = \"{}\"\nnode = \"{node}\"\nlease_secs = {}\n",
            self.url, self.lease_secs
        );
        if let Some(key) = &self.key_file {
            text.push_str(&format!("encryption_key_file = \"{}\"\n", key.display()));
        }
        if let Some(file) = &self.password_file {
            text.push_str(&format!("password_file = \"{}\"\n", file.display()));
        }
        text
    }

    /// A node on `ip` named `name`, sharing the cluster's database; not
    /// started.
    pub(crate) fn node(&self, name: &str, ip: &str, domains: &[&str]) -> Node {
        let state = self.state_section(name);
        Node::new(&self.world, name, ip, domains, &state)
    }

    /// One query in the shared database; rows of `a|b` columns.
    pub(crate) fn query(&self, sql: &str) -> Result<Vec<String>, String> {
        Ok(self
            .pg
            .query("mailconfd", sql)?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// `mailconfd_certs.node` of `domain`, if stored.
    pub(crate) fn stored_by(&self, domain: &str) -> Option<String> {
        self.query(&format!(
            "SELECT node FROM mailconfd_certs WHERE domain = '{domain}'"
        ))
        .ok()?
        .into_iter()
        .next()
    }

    /// The owner of a running order's lease on `domain`, if any.
    pub(crate) fn lease_owner(&self, domain: &str) -> Option<String> {
        self.query(&format!(
            "SELECT owner FROM mailconfd_leases WHERE domain = '{domain}' OR domain LIKE '%.{domain}'"
        ))
        .ok()?
        .into_iter()
        .next()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- {} ({}) last lines ---", node.name, node.ip);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            let pg_log = self.world.dir.path().join("pg").join("log");
            if let Ok(text) = std::fs::read_to_string(pg_log) {
                eprintln!("--- postgres log ---\n{text}");
            }
        }
    }
}

/// `mailconfd serve` on one loopback address; killed on drop.
pub(crate) struct Node {
    pub name: String,
    pub ip: String,
    pub metrics_port: u16,
    pub dir: PathBuf,
    /// The `[state]` table appended to the config (empty = sled).
    state: String,
    /// Extra `[acme]` keys (`write_config` puts them in).
    pub acme_extra: String,
    child: Option<Child>,
}

impl Node {
    /// Writes `dir/NAME/mailconfd.toml`: the world's config on `ip`, with a
    /// metrics listener and `state` appended (empty = sled).
    pub(crate) fn new(world: &World, name: &str, ip: &str, domains: &[&str], state: &str) -> Node {
        let dir = world.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let metrics_port = free_tcp_port();
        let node = Node {
            name: name.to_owned(),
            ip: ip.to_owned(),
            metrics_port,
            dir,
            state: state.to_owned(),
            acme_extra: String::new(),
            child: None,
        };
        node.write_config(world, domains);
        node
    }

    /// (Re)writes the config, e.g. with another domain list before a SIGHUP.
    pub(crate) fn write_config(&self, world: &World, domains: &[&str]) {
        let mut text = world
            .config_text(&self.state_dir(), domains, 5, &self.acme_extra)
            .replace(
                "http_listen = [\"127.0.0.1:",
                &format!("http_listen = [\"{}:", self.ip),
            )
            .replace(
                "https_listen = [\"127.0.0.1:",
                &format!("https_listen = [\"{}:", self.ip),
            )
            .replace(
                "[server]\n",
                &format!(
                    "[server]\nmetrics_listen = \"{}:{}\"\n",
                    self.ip, self.metrics_port
                ),
            );
        assert!(text.contains(&format!("https_listen = [\"{}:", self.ip)));
        text.push_str(&self.state);
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.join("mailconfd.toml")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Spawns `mailconfd serve`; the log is appended to across restarts.
    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["serve", "-c"])
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub(crate) fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process has exited without being reaped yet (a zombie),
    /// e.g. refused to start: waits on it can stop at once.
    pub(crate) fn exited(&self) -> bool {
        self.child.as_ref().is_some_and(|c| {
            std::fs::read_to_string(format!("/proc/{}/stat", c.id())).map_or(true, |stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
        })
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// SIGKILL and reap: the node dies as on a power cut.
    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits (at most `within`) for the process to exit by itself.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; must exit 0 within 20 s.
    pub(crate) fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{} did not exit after SIGTERM", self.name));
        assert!(
            status.success(),
            "{} exited {status}: {}",
            self.name,
            self.log()
        );
    }

    /// User plus system CPU time the process has used so far, from
    /// /proc/PID/stat (clock ticks of 10 ms on Linux).
    pub(crate) fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `mailconfd ARGS...` to completion (the state commands).
pub(crate) fn run_binary(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A path as an OsStr argument.
pub(crate) fn arg(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}
