//! The real binary and the service manager's side of its life: sd_notify
//! messages on a notify socket of our own, and `mailconfd reload` (the unit's
//! ExecReload) waiting for the daemon's outcome. tests/realhost/systemd.sh
//! runs the same under a real systemd; this catches regressions in seconds.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pebble::free_tcp_port;
use crate::support::CONFIG;

struct Served {
    child: Child,
    port: u16,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
    notify: UnixDatagram,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = dir.path().join("mailconfd.toml");
    std::fs::write(
        &config,
        CONFIG.replace(
            "[server]\n",
            &format!("[server]\nhttp_listen = [\"127.0.0.1:{port}\"]\n"),
        ),
    )
    .unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let socket = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["serve", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("RUNTIME_DIRECTORY", &runtime)
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Served {
        child,
        port,
        config,
        _dir: dir,
        notify,
    }
}

impl Served {
    /// The next notify message, as its lines.
    fn next_message(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self
            .notify
            .recv(&mut buf)
            .expect("a notify message within 10 s");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Messages until one holds `wanted` (bounded by the socket's timeout).
    fn wait_for(&self, wanted: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let m = self.next_message();
            if m.iter().any(|l| l == wanted) {
                return m;
            }
        }
        panic!("no {wanted} within 10 s");
    }

    fn reload_command(&self) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_mailconfd"))
            .args(["reload", "-c"])
            .arg(&self.config)
            .arg("--pid")
            .arg(self.child.id().to_string())
            .env("RUNTIME_DIRECTORY", self._dir.path().join("run"))
            .output()
            .unwrap()
    }

    fn status_of(&self, host: &str) -> u16 {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head[9..12]).parse().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn notifies_ready_reloading_and_stopping() {
    let mut d = serve();
    let ready = d.wait_for("READY=1");
    let status = ready
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .expect("READY=1 carries a STATUS= line");
    assert!(
        status.starts_with("serving ")
            && status.ends_with("domains over plain HTTP (tls.mode = off)"),
        "{status}"
    );
    // Ready means the port answers at once.
    assert_eq!(d.status_of("autoconfig.example.com"), 200);

    let out = d.reload_command();
    assert!(out.status.success(), "{out:?}");
    let reloading = d.wait_for("RELOADING=1");
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC (systemd 253+ needs it): {reloading:?}"
    );
    d.wait_for("READY=1");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    d.wait_for("STOPPING=1");
    let status = d.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn reload_command_reports_what_the_daemon_did() {
    let d = serve();
    d.wait_for("READY=1");
    assert_eq!(d.status_of("autoconfig.new.example"), 404);

    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replace(
            r#"domains = ["other.example"]"#,
            r#"domains = ["other.example", "new.example"]"#,
        ),
    )
    .unwrap();
    let out = d.reload_command();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded"));
    // The command returns only once the daemon has applied the file.
    assert_eq!(d.status_of("autoconfig.new.example"), 200);

    std::fs::write(&d.config, text.replace("port = 993", "port = 99999")).unwrap();
    let out = d.reload_command();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("port: must be 1-65535"), "{stderr}");
    assert!(stderr.contains("reload refused"), "{stderr}");
    assert_eq!(
        d.status_of("autoconfig.new.example"),
        200,
        "the running config must stay"
    );
}

#[test]
fn daemon_refusal_after_a_bare_sighup_is_recorded() {
    let d = serve();
    d.wait_for("READY=1");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, text.replace("port = 993", "port = 0")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    d.wait_for("RELOADING=1");
    d.wait_for("READY=1");
    let record = std::fs::read_to_string(d._dir.path().join("run/reload.json")).unwrap();
    let outcome: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(outcome["generation"], 1);
    assert_eq!(outcome["applied"], false);
    assert!(
        outcome["problems"][0]
            .as_str()
            .unwrap()
            .contains("port: must be 1-65535"),
        "{record}"
    );
    assert_eq!(d.status_of("autoconfig.example.com"), 200);
}

#[test]
fn health_ready_requires_a_certificate_for_every_domain() {
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_tcp_port(), free_tcp_port());
    let config = dir.path().join("mailconfd.toml");
    let text = CONFIG
        .replace(
            "[server]\n",
            &format!(
                "[server]\nhttp_listen = [\"127.0.0.1:{http}\"]\nhttps_listen = [\"127.0.0.1:{https}\"]\n"
            ),
        )
        .replace(
            "state_dir = \"/nonexistent-not-used-in-off-mode\"",
            &format!("state_dir = \"{}\"", dir.path().join("state").display()),
        )
        .replace("mode = \"off\"", "mode = \"local\"");
    std::fs::write(&config, &text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["serve", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health = |ready: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailconfd"));
        cmd.args(["health", "-c"]).arg(&config);
        if ready {
            cmd.arg("--ready");
        }
        cmd.output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !health(true).status.success() {
        assert!(Instant::now() < deadline, "never ready: {:?}", health(true));
        std::thread::sleep(Duration::from_millis(100));
    }
    // A domain the daemon has not loaded yet: alive, but not ready.
    std::fs::write(
        &config,
        text.replace(
            r#"domains = ["other.example"]"#,
            r#"domains = ["other.example", "new.example"]"#,
        ),
    )
    .unwrap();
    assert!(health(false).status.success());
    let out = health(true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not ready: 1 domain(s) without a valid certificate: new.example"),
        "{stderr}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !health(true).status.success() {
        assert!(
            Instant::now() < deadline,
            "not ready after the reload: {:?}",
            health(true)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
