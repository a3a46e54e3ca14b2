//! Test support: an in-process daemon on 127.0.0.1 port 0 and a raw HTTP/1.1
//! client that can send what well-behaved clients never would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mailconfd::app::{self, Bound, RunOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const CONFIG: &str = r#"
[server]
state_dir = "/nonexistent-not-used-in-off-mode"
trusted_proxies = ["127.0.0.0/8"]

[tls]
mode = "off"

[[provider]]
id = "example.com"
name = "Example <Mail> & \"Friends\""
short_name = "Example"
domains = ["example.com", "example.net", "bücher.example"]
  [[provider.server]]
  type = "imap"
  host = "imap.example.com"
  port = 993
  security = "tls"
  [[provider.server]]
  type = "pop3"
  host = "pop.example.com"
  port = 995
  security = "tls"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.com"
  port = 587
  security = "starttls"
  username = "%EMAILLOCALPART%"
  [[provider.server]]
  type = "caldav"
  url = "https://dav.example.com/cal/"
  [provider.mta_sts]
  mode = "enforce"
  mx = ["mx1.example.com", "*.mx.example.com"]
  max_age = 86400

[[provider]]
id = "other.example"
name = "Other"
domains = ["other.example"]
  [[provider.server]]
  type = "imap"
  host = "mail.other.example"
  [[provider.server]]
  type = "smtp"
  host = "mail.other.example"
  [[provider.server]]
  type = "activesync"
  url = "https://eas.other.example/Microsoft-Server-ActiveSync"
"#;

pub struct Daemon {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub reload: mpsc::Sender<()>,
    pub config_path: PathBuf,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub async fn start(config_text: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("mailconfd.toml");
        std::fs::write(&config_path, config_text).unwrap();
        let config = mailconfd::config::load(&config_path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = Bound {
            http: vec![listener],
            https: vec![],
        };
        Daemon::start_with(dir, config_path, config, bound)
    }

    /// Like `start`, but binds what the config says (`http_listen`, and
    /// `https_listen` unless TLS is off), e.g. 127.0.0.1:80 and :443 for the
    /// real Thunderbird. `addr` is the first HTTP listener. Panics if a port
    /// is taken; hold `PrivilegedPorts::lock` around it.
    pub async fn start_bound(config_text: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("mailconfd.toml");
        std::fs::write(&config_path, config_text).unwrap();
        let config = mailconfd::config::load(&config_path).unwrap();
        let bound = Bound::from_config(&config)
            .await
            .unwrap_or_else(|e| panic!("binding the configured listeners: {e:#}"));
        Daemon::start_with(dir, config_path, config, bound)
    }

    fn start_with(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        config: mailconfd::config::Config,
        bound: Bound,
    ) -> Daemon {
        let addr = bound.http[0].local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let (reload, reload_rx) = mpsc::channel(1);
        let task = tokio::spawn(app::run(RunOptions {
            config_path: config_path.clone(),
            config,
            bound,
            shutdown: shutdown.clone(),
            reload: reload_rx,
        }));
        Daemon {
            addr,
            shutdown,
            reload,
            config_path,
            task,
            _dir: dir,
        }
    }

    pub async fn get(&self, host: &str, path: &str) -> Response {
        self.send(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
    }

    pub async fn send(&self, raw: &[u8]) -> Response {
        send_raw(self.addr, raw).await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    Response::parse(&buf)
}

/// A connection from another loopback address, for per-IP limits.
pub async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(addr).await
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn parse(buf: &[u8]) -> Response {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
        let head = std::str::from_utf8(&buf[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect::<Vec<_>>();
        let mut body = buf[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
        {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

pub fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/corpus/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Tests that bind 127.0.0.1:80/443 (the real Thunderbird only talks to those
/// ports) take this lock so that they never run at the same time.
pub static PRIVILEGED_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Both locks on ports 80/443: `PRIVILEGED_PORTS` (tests in this binary) and
/// an advisory file lock in the temp dir (test runs from other checkouts on
/// the same machine). Dropping the guard releases both.
pub struct PrivilegedPorts {
    _in_process: tokio::sync::MutexGuard<'static, ()>,
    _file: std::fs::File,
}

impl PrivilegedPorts {
    /// Waits (at most `within`) for both locks.
    pub async fn lock(within: Duration) -> PrivilegedPorts {
        let deadline = tokio::time::Instant::now() + within;
        let in_process = tokio::time::timeout_at(deadline, PRIVILEGED_PORTS.lock())
            .await
            .expect("PRIVILEGED_PORTS not released in time");
        let path = std::env::temp_dir().join("mailconfd-tests-ports-80-443.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{} held by another process for too long",
                        path.display()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    panic!("locking {}: {e}", path.display())
                }
            }
        }
        PrivilegedPorts {
            _in_process: in_process,
            _file: file,
        }
    }
}

/// Whether an external program is installed; in CI (`CI` set) a missing one
/// is a failure, elsewhere the test is skipped with the reason printed.
pub fn require_program(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{program} is missing: apt-get install {package}");
    }
    eprintln!("SKIPPED: {program} is not installed (apt-get install {package})");
    false
}

/// A real PostgreSQL (Debian's `postgresql`) in a temp dir on a loopback
/// port, run as the postgres user (initdb refuses root); stopped in `Drop`.
/// `None` (skipped with the reason, failed in CI) when it cannot run here.
pub struct Postgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    pub port: u16,
    running: bool,
}

impl Postgres {
    pub fn start(dir: &std::path::Path) -> Option<Postgres> {
        use std::process::Command;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("CI").is_none(),
                "postgresql is missing in CI"
            );
            eprintln!("SKIPPED: PostgreSQL server not installed (apt-get install postgresql)");
            return None;
        };
        if !is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI must run as root");
            eprintln!("SKIPPED: PostgreSQL tests run initdb as the postgres user (needs root)");
            return None;
        }
        let pg = dir.join("pg");
        std::fs::create_dir(&pg).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        run(Command::new("chown").arg("postgres:postgres").arg(&pg));
        run(Command::new("chmod").arg("0755").arg(dir));
        let port = crate::pebble::free_tcp_port();
        let data = pg.join("data");
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data));
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "30", "-l"])
            .arg(pg.join("log"))
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(format!("-h 127.0.0.1 -p {port} -k {}", pg.display())));
        Some(Postgres {
            bin,
            data,
            port,
            running: true,
        })
    }

    /// Runs SQL as the superuser; panics on an error.
    pub fn sql(&self, sql: &str) {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {out:?}");
    }

    /// Runs one query in database `db` as the superuser; rows as psql's
    /// unaligned output (`|` between columns, one row a line). Err when psql
    /// fails (e.g. the server is down).
    pub fn query(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", sql])
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{sql}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// From now on `user` must log in over TCP with `password`
    /// (scram-sha-256); the superuser keeps trust, for `sql` and `query`.
    pub fn require_password(&self, user: &str, password: &str) {
        self.sql(&format!("ALTER ROLE {user} PASSWORD '{password}'"));
        let hba = self.data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        let mut text = "host all postgres 127.0.0.1/32 trust\n".to_owned();
        for line in old.lines() {
            if line.starts_with("host") {
                text.push_str(&line.replace("trust", "scram-sha-256"));
            } else {
                text.push_str(line);
            }
            text.push('\n');
        }
        std::fs::write(&hba, text).unwrap();
        self.sql("SELECT pg_reload_conf()");
    }

    /// Starts the server again after `stop`, on the same port and data.
    pub fn start_again(&mut self) {
        assert!(!self.running, "stop first");
        let pg = self.data.parent().unwrap().to_owned();
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "30", "-l"])
            .arg(pg.join("log"))
            .arg("-D")
            .arg(&self.data)
            .arg("-o")
            .arg(format!("-h 127.0.0.1 -p {} -k {}", self.port, pg.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {out:?}");
        self.running = true;
    }

    /// Stops the server at once (as a crash or a network cut would look).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.data)
            .output();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `ok` until it holds; panics naming `what` after 20 s.
pub fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "{what} within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the tests run as root (real servers that need it skip otherwise).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// The real binary (`mailconfd serve -c CONFIG`) as a child process on an
/// HTTP port of 127.0.0.1, killed in `Drop`; for tests that need the
/// process itself (signals, a fresh process per config) rather than the
/// in-process `Daemon`.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    /// Starts it and waits until `port` accepts connections.
    pub fn start(config: &std::path::Path, port: u16) -> ServeProcess {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["serve", "-c"])
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let process = ServeProcess { child, port };
        eventually("the daemon", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        process
    }

    /// (status, body) of a raw HTTP/1.1 request; status 0 when no answer
    /// came within 10 s.
    pub fn send(&self, request: &str) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }

    /// Thunderbird's autoconfig document for `address` (host autoconfig.example.com).
    pub fn thunderbird(&self, address: &str) -> (u16, String) {
        let q = percent_encoding::utf8_percent_encode(address, percent_encoding::NON_ALPHANUMERIC);
        self.send(&format!(
            "GET /mail/config-v1.1.xml?emailaddress={q} HTTP/1.1\r\nHost: autoconfig.example.com\r\nConnection: close\r\n\r\n"
        ))
    }

    /// Outlook's POX autodiscover answer for `address` (host autodiscover.example.com).
    pub fn pox(&self, address: &str) -> (u16, String) {
        let body = format!(
            "<Autodiscover><Request><EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"
        );
        self.send(&format!(
            "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.com\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }
}
