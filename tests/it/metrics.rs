//! The operators' listener of the real binary: /metrics, /ready, /live.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::pebble::free_tcp_port;
use crate::support::{CONFIG, eventually};

/// (status, body) of a GET on 127.0.0.1:`port`.
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn metrics_ready_and_live_move_with_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (http, https, metrics) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let config = dir.path().join("mailconfd.toml");
    let text = CONFIG
        .replace(
            "[server]\n",
            &format!(
                "[server]\nhttp_listen = [\"127.0.0.1:{http}\"]\nhttps_listen = [\"127.0.0.1:{https}\"]\nmetrics_listen = \"127.0.0.1:{metrics}\"\n"
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
    eventually("the metrics listener", || {
        std::net::TcpStream::connect(("127.0.0.1", metrics)).is_ok()
    });
    assert_eq!(get(metrics, "/live").0, 200);
    eventually("readiness", || get(metrics, "/ready").0 == 200);

    // A domain the running config does not have yet: not ready until reloaded.
    std::fs::write(
        &config,
        text.replace(
            r#"domains = ["other.example"]"#,
            r#"domains = ["other.example", "new.example"]"#,
        ),
    )
    .unwrap();
    let hup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };
    hup();
    eventually("the reload counted", || {
        get(metrics, "/metrics")
            .1
            .contains("mailconfd_config_reloads_total{result=\"ok\"} 1")
    });
    eventually("readiness after the reload", || {
        get(metrics, "/ready").0 == 200
    });
    // A broken file is counted as a failed reload.
    std::fs::write(&config, text.replace("port = 993", "port = 0")).unwrap();
    hup();
    eventually("the failed reload counted", || {
        get(metrics, "/metrics")
            .1
            .contains("mailconfd_config_reloads_total{result=\"failed\"} 1")
    });
    // Certificates: every domain valid, each with its expiry; no addresses anywhere.
    std::fs::write(&config, &text).unwrap();
    hup();
    eventually("certificate gauges", || {
        let body = get(metrics, "/metrics").1;
        body.contains("mailconfd_certificates{state=\"valid\"} 4")
            && body.contains("mailconfd_certificate_expiry_seconds{domain=\"example.com\"}")
    });
    // Traffic: a document over HTTP, one over HTTPS, an unknown-SNI handshake.
    {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.write_all(b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.com\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let ca = dir.path().join("state/local-ca.pem");
    let curl = Command::new("curl")
        .args(["-fsS", "--max-time", "5", "--http2", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("autoconfig.example.com:{https}:127.0.0.1"))
        .arg(format!(
            "https://autoconfig.example.com:{https}/mail/config-v1.1.xml"
        ))
        .output()
        .unwrap();
    assert!(curl.status.success(), "{curl:?}");
    let _ = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{https}"),
            "-servername",
            "nope.invalid",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eventually("request and handshake counters", || {
        let body = get(metrics, "/metrics").1;
        body.contains("mailconfd_http_requests_total{format=\"thunderbird\",status=\"2xx\",transport=\"http\",version=\"h1\"} 1")
            && body.contains("mailconfd_http_requests_total{format=\"thunderbird\",status=\"2xx\",transport=\"https\",version=\"h2\"} 1")
            && body.contains("mailconfd_tls_handshakes_total{result=\"ok\",version=\"tls1_3\"} 1")
            && body.contains("mailconfd_tls_handshakes_total{result=\"unknown_sni\",version=\"none\"} 1")
            && body.contains("mailconfd_http_request_duration_seconds_count{format=\"thunderbird\"} 2")
            && body.contains("mailconfd_acme_orders_total{result=\"ok\"} 5")
    });
    // Each route counts under the format it answered, whatever the path's
    // spelling; a path no route takes is `other`.
    let https_get = |name: &str, path: &str, extra: &[&str]| -> u16 {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--http2", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("{name}:{https}:127.0.0.1"))
            .args(extra)
            .arg(format!("https://{name}:{https}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
    };
    let pox = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>alice@example.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    let table: [(&str, &str, &[&str], u16); 8] = [
        (
            "autodiscover.example.com",
            "/Autodiscover/Autodiscover.xml",
            &["--data-binary", pox, "-H", "Content-Type: text/xml"],
            200,
        ),
        (
            "autodiscover.example.com",
            "/autodiscover/autodiscover.json?Email=alice@example.com&Protocol=AutodiscoverV1",
            &[],
            200,
        ),
        (
            "autodiscover.example.com",
            "/autodiscover/autodiscover.json/v1.0/alice@example.com?Protocol=AutodiscoverV1",
            &[],
            200,
        ),
        // Not the JSON route: the address would be two path segments.
        (
            "autodiscover.example.com",
            "/autodiscover/autodiscover.json/v1.0/a/b@example.com?Protocol=AutodiscoverV1",
            &[],
            404,
        ),
        (
            "autoconfig.example.com",
            "/mobileconfig/?emailaddress=alice@example.com",
            &[],
            200,
        ),
        ("mta-sts.example.com", "/.well-known/mta-sts.txt", &[], 200),
        ("autoconfig.example.com", "/", &[], 200),
        ("autoconfig.example.com", "/nothing", &[], 404),
    ];
    for (name, path, extra, want) in table {
        assert_eq!(https_get(name, path, extra), want, "{name}{path}");
    }
    {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.write_all(b"GET /.well-known/jmap HTTP/1.1\r\nHost: autoconfig.example.com\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 301"), "{answer}");
    }
    let line = |format: &str, status: &str, transport: &str, version: &str, n: u32| {
        format!(
            "mailconfd_http_requests_total{{format=\"{format}\",status=\"{status}\",transport=\"{transport}\",version=\"{version}\"}} {n}\n"
        )
    };
    let wanted = [
        line("autodiscover_pox", "2xx", "https", "h2", 1),
        line("autodiscover_json", "2xx", "https", "h2", 2),
        line("mobileconfig", "2xx", "https", "h2", 1),
        line("mta_sts", "2xx", "https", "h2", 1),
        line("page", "2xx", "https", "h2", 1),
        line("other", "4xx", "https", "h2", 2),
        line("jmap", "3xx", "http", "h1", 1),
        line("thunderbird", "2xx", "https", "h2", 1),
    ];
    eventually("each format counted once per request", || {
        let body = get(metrics, "/metrics").1;
        wanted.iter().all(|w| body.contains(w.as_str()))
            && !body.contains("format=\"autodiscover_json\",status=\"4xx\"")
    });

    let (status, body) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(!body.contains('@'), "an address in the metrics: {body}");
    assert_eq!(get(metrics, "/nothing").0, 404);
    let _ = child.kill();
    let _ = child.wait();
}
