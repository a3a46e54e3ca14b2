//! Reload, shutdown and hostile connection patterns.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{CONFIG, Daemon, connect_from, send_raw};

const TB: &str = "/mail/config-v1.1.xml";

/// Waits (bounded) until `check` holds, polling the daemon.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached within 10 s");
}

#[tokio::test]
async fn good_reload_adds_a_domain() {
    let daemon = Daemon::start(CONFIG).await;
    assert_eq!(daemon.get("autoconfig.new.example", TB).await.status, 404);
    let grown = CONFIG.replace(
        r#"domains = ["other.example"]"#,
        r#"domains = ["other.example", "new.example"]"#,
    );
    std::fs::write(&daemon.config_path, grown).unwrap();
    daemon.reload.send(()).await.unwrap();
    eventually(|| async { daemon.get("autoconfig.new.example", TB).await.status == 200 }).await;
    daemon.stop().await;
}

#[tokio::test]
async fn bad_reload_keeps_old_config() {
    let daemon = Daemon::start(CONFIG).await;
    let broken = CONFIG.replace("port = 993", "port = 99999").replace(
        r#"domains = ["other.example"]"#,
        r#"domains = ["other.example", "new.example"]"#,
    );
    std::fs::write(&daemon.config_path, broken).unwrap();
    daemon.reload.send(()).await.unwrap();
    // Then a good change: once it shows, the bad one has certainly been processed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        daemon.get("autoconfig.new.example", TB).await.status,
        404,
        "half-applied a broken config"
    );
    let r = daemon.get("autoconfig.example.com", TB).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<port>993</port>"));
    daemon.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_slow_request_finish() {
    let daemon = Daemon::start(CONFIG).await;
    let body = b"<Autodiscover><Request><EMailAddress>alice@example.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    let mut s = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    let head = format!(
        "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    daemon.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are no longer accepted...
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        match tokio::net::TcpStream::connect(daemon.addr).await {
            Err(_) => true,
            Ok(mut c) => {
                let _ = c
                    .write_all(b"GET / HTTP/1.1\r\nHost: autoconfig.example.com\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1];
                matches!(c.read(&mut buf).await, Ok(0) | Err(_))
            }
        }
    })
    .await
    .unwrap();
    assert!(refused, "accepted a new connection after shutdown");
    // ...but the request in flight completes.
    s.write_all(&body[20..]).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    tokio::time::timeout(Duration::from_secs(12), daemon.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn idle_and_slow_clients_do_not_starve_others() {
    // Trusted proxies are not limited per client: trust none here.
    let daemon = Daemon::start(&CONFIG.replace("trusted_proxies = [\"127.0.0.0/8\"]\n", "")).await;
    // One hostile address opens more idle sockets than it may, sending half a header.
    let mut hostile = Vec::new();
    for _ in 0..mailconfd::server::MAX_CONNECTIONS_PER_IP + 20 {
        if let Ok(mut s) = connect_from("127.0.0.2", daemon.addr).await {
            let _ = s
                .write_all(b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autocon")
                .await;
            hostile.push(s);
        }
    }
    // Everyone else is still served promptly.
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(daemon.get("autoconfig.example.com", TB).await.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The sockets beyond the per-IP cap were closed at once.
    let mut closed = 0;
    for s in &mut hostile {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 20, "only {closed} excess connections were closed");
    drop(hostile);
    daemon.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let daemon = Daemon::start(CONFIG).await;
    let mut s = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    let one = "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.com\r\n\r\n";
    let mut all = one.repeat(9);
    all.push_str("GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.com\r\nConnection: close\r\n\r\n");
    s.write_all(all.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf)
            .matches("HTTP/1.1 200 OK")
            .count(),
        10
    );
    daemon.stop().await;
}

/// The real binary: a bad config exits 78 with the key; SIGTERM exits 0.
#[test]
fn binary_check_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, CONFIG.replace("port = 993", "port = 0")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("provider[0].server[0].port: must be 1-65535"),
        "{stderr}"
    );
    let serve = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["serve", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(78));

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        CONFIG.replace(
            "[server]\n",
            &format!("[server]\nhttp_listen = [\"127.0.0.1:{port}\"]\n"),
        ),
    )
    .unwrap();
    let mut child = serve_binary(&good, port, Stdio::piped());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = send_raw(addr, b"GET /mail/config-v1.1.xml?emailaddress=secret.person%40example.com HTTP/1.1\r\nHost: autoconfig.example.com\r\nAuthorization: Basic c2VjcmV0LXBhc3N3b3Jk\r\nConnection: close\r\n\r\n").await;
        assert_eq!(r.status, 200);
    });
    sigterm(&child);
    let status = wait_exit(
        &mut child,
        Duration::from_secs(11),
        "no exit within 10 s of SIGTERM",
    );
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("domain=example.com"),
        "info log names the domain: {log}"
    );
    assert!(
        !log.contains("secret.person"),
        "address leaked into the info log: {log}"
    );
    assert!(
        !log.contains("c2VjcmV0LXBhc3N3b3Jk"),
        "Authorization leaked: {log}"
    );
}

/// Started as root with `server.user`, the daemon binds, then runs as that
/// user and hands it the state directory.
#[test]
fn root_drops_to_server_user_after_binding() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        eprintln!("SKIPPED: not root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("c.toml");
    let text = CONFIG
        .replace(
            "[server]\n",
            &format!("[server]\nuser = \"nobody\"\nhttp_listen = [\"127.0.0.1:{port}\"]\n"),
        )
        .replace(
            "state_dir = \"/nonexistent-not-used-in-off-mode\"",
            &format!("state_dir = {:?}", state.display().to_string()),
        );
    std::fs::write(&config, text).unwrap();
    // An answer means serving has started, which happens after the drop.
    let mut child = serve_binary(&config, port, Stdio::null());
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    sigterm(&child);
    let status = wait_exit(
        &mut child,
        Duration::from_secs(11),
        "no exit within 10 s of SIGTERM",
    );
    assert_eq!(status.code(), Some(0));
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "65534"),
        "{uid}"
    );
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), 65534);
}

/// Starts `mailconfd serve -c config` and waits (bounded) until it answers on `port`.
fn serve_binary(config: &std::path::Path, port: u16, stderr: Stdio) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["serve", "-c"])
        .arg(config)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers_http(port) {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn sigterm(child: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

/// Waits at most `limit` for the process to exit.
fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn answers_http(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.com\r\nConnection: close\r\n\r\n";
    if s.write_all(request).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

/// `check` in files mode says which certificate files it cannot use and which
/// domains no certificate covers, before the daemon would find out.
#[test]
fn check_warns_about_unusable_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let text = CONFIG.replace(
        "[tls]\nmode = \"off\"",
        "[tls]\nmode = \"files\"\n[[tls.files]]\ncert = \"/nonexistent/fullchain.pem\"\nkey = \"/nonexistent/privkey.pem\"",
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailconfd"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: tls.files: /nonexistent/fullchain.pem"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no certificate covers autoconfig.other.example"),
        "{stderr}"
    );
}

/// SIGTERM to the real binary while a request is half sent: the request
/// still gets its answer, then the process exits 0.
#[test]
fn sigterm_during_a_slow_request_lets_it_finish() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        CONFIG.replace(
            "[server]\n",
            &format!("[server]\nhttp_listen = [\"127.0.0.1:{port}\"]\n"),
        ),
    )
    .unwrap();
    let mut child = serve_binary(&config, port, Stdio::null());
    let body = b"<Autodiscover><Request><EMailAddress>alice@example.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..30]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    s.write_all(&body[30..]).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("<Type>IMAP</Type>"), "{answer}");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(11),
        "no exit after the request finished",
    );
    assert_eq!(status.code(), Some(0));
}
