//! Talking to servers the way a client would: a TLS handshake that checks the
//! chain and the name against the system's roots (plus an optional extra CA),
//! an HTTPS GET over it, and the IMAP/POP3/SMTP STARTTLS dialogues.
//!
//! Every step has a deadline; every read is capped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Connect, handshake, each protocol step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest HTTP body read.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest protocol line, and most lines, read in a STARTTLS dialogue.
const MAX_LINE_BYTES: usize = 4096;
const MAX_LINES: usize = 64;

pub use crate::tls::client::client_config;

/// What a successful handshake showed.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Unix seconds when the server's certificate expires.
    pub not_after: Option<i64>,
    pub protocol: String,
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| format!("{what}: no answer within {} s", STEP_TIMEOUT.as_secs()))?
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    timed("connect", async {
        TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))
    })
    .await
}

/// A TLS handshake on `tcp` for `name`, with the chain and name checked.
pub async fn handshake(
    tls: &Arc<rustls::ClientConfig>,
    tcp: TcpStream,
    name: &str,
) -> Result<(TlsStream<TcpStream>, Handshake), String> {
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| format!("{name}: {e}"))?;
    let stream = timed("TLS handshake", async {
        TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| explain_tls_error(name, &e))
    })
    .await?;
    let (_, conn) = stream.get_ref();
    let not_after = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp());
    let protocol = conn
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("TLS")
        .to_owned();
    Ok((
        stream,
        Handshake {
            not_after,
            protocol,
        },
    ))
}

/// A rustls error as an operator reads it.
fn explain_tls_error(name: &str, e: &std::io::Error) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("not valid for name") || lower.contains("notvalidforname") {
        // rustls lists the names in Debug form: `DnsName("a.example")`.
        let valid_for = text
            .split_once("only valid for")
            .map(|(_, names)| {
                let names = names
                    .replace("DnsName(\"", "")
                    .replace("IpAddress(", "")
                    .replace("\")", "")
                    .replace(')', "");
                format!(" (it names{names})")
            })
            .unwrap_or_default();
        format!("the certificate is not valid for {name}{valid_for}")
    } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        "the certificate's issuer is not trusted (self-signed, a private CA, or a staging CA)"
            .to_owned()
    } else if lower.contains("expired") {
        "the certificate has expired".to_owned()
    } else if lower.contains("received fatal alert") {
        format!("the server refused the handshake for {name} ({text})")
    } else {
        format!("TLS handshake failed: {text}")
    }
}

/// What an HTTPS GET answered.
#[derive(Debug)]
pub struct HttpsAnswer {
    pub status: u16,
    pub body: Vec<u8>,
    pub handshake: Handshake,
}

/// GET `https://{name}{path}` from `addr`, as a client would.
pub async fn https_get(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
    path: &str,
) -> Result<HttpsAnswer, String> {
    let tcp = connect(addr).await?;
    let (stream, handshake) = handshake(tls, tcp, name).await?;
    let (mut sender, conn) = timed("HTTP", async {
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let driver = tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(http::header::HOST, name)
        .header(http::header::USER_AGENT, "mailconfd-doctor")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = timed("HTTP answer", async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    })
    .await;
    driver.abort();
    let (status, body) = result?;
    Ok(HttpsAnswer {
        status,
        body,
        handshake,
    })
}

/// The mail protocols whose STARTTLS dialogue we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailProtocol {
    Imap,
    Pop3,
    Smtp,
}

/// Connects to a mail server and completes a TLS handshake for `name`:
/// at once (implicit TLS) or after the protocol's STARTTLS command.
pub async fn mail_tls(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
    protocol: MailProtocol,
    starttls: bool,
) -> Result<Handshake, String> {
    let tcp = connect(addr).await?;
    let tcp = if starttls {
        timed("STARTTLS", starttls_dialogue(tcp, protocol)).await?
    } else {
        tcp
    };
    let (mut stream, handshake) = handshake(tls, tcp, name).await?;
    let _ = stream.shutdown().await;
    Ok(handshake)
}

async fn starttls_dialogue(tcp: TcpStream, protocol: MailProtocol) -> Result<TcpStream, String> {
    let mut conn = BufReader::new(tcp);
    match protocol {
        MailProtocol::Imap => {
            expect_line(&mut conn, "greeting", |l| l.starts_with("* OK")).await?;
            send(&mut conn, "a1 STARTTLS\r\n").await?;
            let answer = read_until(&mut conn, |l| l.starts_with("a1 ")).await?;
            if !answer.starts_with("a1 OK") {
                return Err(format!("STARTTLS refused: {answer}"));
            }
        }
        MailProtocol::Pop3 => {
            expect_line(&mut conn, "greeting", |l| l.starts_with("+OK")).await?;
            send(&mut conn, "STLS\r\n").await?;
            expect_line(&mut conn, "STLS", |l| l.starts_with("+OK")).await?;
        }
        MailProtocol::Smtp => {
            let greeting = read_until(&mut conn, |l| l.len() >= 4 && &l[3..4] == " ").await?;
            if !greeting.starts_with("220") {
                return Err(format!("unexpected greeting: {greeting}"));
            }
            send(&mut conn, "EHLO mailconfd-doctor.invalid\r\n").await?;
            let mut offers_starttls = false;
            loop {
                let line = read_line(&mut conn).await?;
                if !line.starts_with("250") {
                    return Err(format!("EHLO refused: {line}"));
                }
                offers_starttls |= line[3..]
                    .trim_start_matches(['-', ' '])
                    .eq_ignore_ascii_case("STARTTLS");
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
            if !offers_starttls {
                return Err("the server does not offer STARTTLS after EHLO".to_owned());
            }
            send(&mut conn, "STARTTLS\r\n").await?;
            expect_line(&mut conn, "STARTTLS", |l| l.starts_with("220")).await?;
        }
    }
    if !conn.buffer().is_empty() {
        return Err("the server sent data before the TLS handshake".to_owned());
    }
    Ok(conn.into_inner())
}

async fn send(conn: &mut BufReader<TcpStream>, line: &str) -> Result<(), String> {
    conn.get_mut()
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut buf = Vec::new();
    let n = (&mut *conn)
        .take(MAX_LINE_BYTES as u64)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".to_owned());
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
}

async fn read_until(
    conn: &mut BufReader<TcpStream>,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    for _ in 0..MAX_LINES {
        let line = read_line(conn).await?;
        if done(&line) {
            return Ok(line);
        }
    }
    Err(format!("no final line within {MAX_LINES} lines"))
}

async fn expect_line(
    conn: &mut BufReader<TcpStream>,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let line = read_line(conn).await?;
    if ok(&line) {
        Ok(())
    } else {
        Err(format!("unexpected {what}: {line}"))
    }
}
