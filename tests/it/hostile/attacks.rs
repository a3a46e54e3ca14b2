//! The attacks, each run until `stop` fires and summed up in a short note.
//! Raw bytes throughout: what a hostile client sends, not what a library
//! would let it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{IpAddr as PkiIp, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::target::{NAME, connect_from, spread};

/// Where to attack and how hard.
pub struct Env {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
    pub tls_h2: Arc<rustls::ClientConfig>,
    /// Full scale (`scripts/bench-hostile`) or the short CI form.
    pub full: bool,
}

impl Env {
    pub fn n(&self, short: usize, full: usize) -> usize {
        if self.full { full } else { short }
    }
}

type Stream = Box<dyn Io>;
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How each held connection starts and what it trickles afterwards.
#[derive(Clone, Copy)]
pub struct Hold {
    pub https: bool,
    /// Complete a TLS handshake with this ALPN first ("h2" or "http/1.1").
    pub handshake: Option<&'static str>,
    pub first: &'static [u8],
    /// Sent once a second afterwards (slowloris).
    pub trickle: Option<&'static [u8]>,
    /// Connections per source address.
    pub per_address: usize,
}

/// Opens `count` connections from 127.`net`.x.y and holds them as `hold`
/// says; notes how many the server closed and when.
pub async fn hold(
    env: Arc<Env>,
    stop: CancellationToken,
    count: usize,
    net: u8,
    h: Hold,
) -> String {
    let closed: Arc<Mutex<Vec<f64>>> = Arc::default();
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let (env, stop, closed, opened) =
            (env.clone(), stop.clone(), closed.clone(), opened.clone());
        tasks.spawn(async move {
            let to = if h.https { env.https } else { env.http };
            let Ok(tcp) = connect_from(spread(net, i / h.per_address), to).await else {
                return;
            };
            let mut s: Stream = match h.handshake {
                None => Box::new(tcp),
                Some(alpn) => {
                    let config = if alpn == "h2" {
                        env.tls_h2.clone()
                    } else {
                        env.tls.clone()
                    };
                    match tokio_rustls::TlsConnector::from(config)
                        .connect(ServerName::try_from(NAME).unwrap(), tcp)
                        .await
                    {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    }
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            if s.write_all(h.first).await.is_err() {
                closed.lock().unwrap().push(0.0);
                return;
            }
            let mut buf = [0u8; 4096];
            loop {
                let tick = tokio::time::sleep(Duration::from_secs(1));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {} // a 408 or an error page: wait for the close
                    },
                    _ = tick => {
                        if let Some(t) = h.trickle
                            && s.write_all(t).await.is_err()
                        {
                            break;
                        }
                    }
                }
            }
            closed.lock().unwrap().push(started.elapsed().as_secs_f64());
        });
    }
    // Until stopped, or until the server has closed every connection.
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            next = tasks.join_next() => if next.is_none() { break },
        }
    }
    tasks.shutdown().await;
    let mut times = closed.lock().unwrap().clone();
    times.sort_by(f64::total_cmp);
    let max = times.last().copied().unwrap_or(0.0);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    format!(
        "{} of {count} open; server closed {} (median {median:.1} s, last {max:.1} s)",
        opened.load(Ordering::Relaxed),
        times.len()
    )
}

/// TLS handshakes as fast as `concurrency` loops can, with an unknown SNI or
/// none; notes how many the server refused.
pub async fn handshake_flood(
    env: Arc<Env>,
    stop: CancellationToken,
    sni: Option<&'static str>,
    net: u8,
) -> String {
    let tried = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for i in 0..env.n(8, 32) {
        let (env, stop, tried, refused) =
            (env.clone(), stop.clone(), tried.clone(), refused.clone());
        tasks.spawn(async move {
            let mut k = 0;
            while !stop.is_cancelled() {
                k += 1;
                let Ok(tcp) = connect_from(spread(net, i * 1000 + k % 1000), env.https).await
                else {
                    continue;
                };
                let name = match sni {
                    Some(n) => ServerName::try_from(n).unwrap(),
                    None => ServerName::IpAddress(PkiIp::from(std::net::IpAddr::from(
                        Ipv4Addr::LOCALHOST,
                    ))),
                };
                tried.fetch_add(1, Ordering::Relaxed);
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_rustls::TlsConnector::from(env.tls.clone()).connect(name, tcp),
                )
                .await;
                if matches!(r, Ok(Err(_))) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    stop.cancelled().await;
    tasks.shutdown().await;
    format!(
        "{} handshakes, {} refused by the server",
        tried.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    )
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http(s)://autoconfig.example.com/mail/config-v1.1.xml`:
/// indexed :method GET, :scheme, literal :path and :authority.
fn request_block(https: bool) -> Vec<u8> {
    let mut b = vec![0x82, if https { 0x87 } else { 0x86 }];
    for (index, value) in [(0x04u8, "/mail/config-v1.1.xml"), (0x01, NAME)] {
        b.push(index);
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

async fn h2_connect(env: &Env, https: bool, src: Ipv4Addr) -> Option<Stream> {
    let to = if https { env.https } else { env.http };
    let tcp = connect_from(src, to).await.ok()?;
    let mut s: Stream = if https {
        let t = tokio_rustls::TlsConnector::from(env.tls_h2.clone())
            .connect(ServerName::try_from(NAME).unwrap(), tcp)
            .await
            .ok()?;
        Box::new(t)
    } else {
        Box::new(tcp)
    };
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(4, 0, 0, &[])); // empty SETTINGS
    s.write_all(&hello).await.ok()?;
    Some(s)
}

/// HTTP/2 floods on `conns` connections from one client: rapid reset
/// (HEADERS + RST_STREAM pairs) or CONTINUATION frames that never end the
/// header block. Notes how much each connection got to send before the
/// server closed it.
pub async fn h2_flood(
    env: Arc<Env>,
    stop: CancellationToken,
    https: bool,
    continuation: bool,
    net: u8,
) -> String {
    let sent_per_conn: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for i in 0..env.n(4, 16) {
        let (env, stop, out) = (env.clone(), stop.clone(), sent_per_conn.clone());
        tasks.spawn(async move {
            let Some(s) = h2_connect(&env, https, spread(net, i / 8)).await else {
                return;
            };
            let (mut rd, mut wr) = tokio::io::split(s);
            // Drain what the server sends so that it never blocks on us.
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
            let block = request_block(https);
            let mut units = 0usize;
            let limit = if continuation { 20_000 } else { 50_000 };
            if continuation {
                let _ = wr.write_all(&frame(1, 0x1, 1, &block)).await;
            }
            let junk = vec![0x40u8; 16 * 1024];
            let mut closed = false;
            while units < limit && !stop.is_cancelled() && !reader.is_finished() {
                let mut batch = Vec::new();
                for _ in 0..100 {
                    if continuation {
                        batch.extend(frame(9, 0, 1, &junk[..1024]));
                    } else {
                        let id = (units * 2 + 1) as u32;
                        batch.extend(frame(1, 0x5, id, &block));
                        batch.extend(frame(3, 0, id, &8u32.to_be_bytes())); // CANCEL
                    }
                    units += 1;
                }
                match tokio::time::timeout(Duration::from_secs(5), wr.write_all(&batch)).await {
                    Ok(Ok(())) => {}
                    _ => {
                        closed = true;
                        break;
                    }
                }
            }
            // The reader ends when the server closes the connection.
            closed |= tokio::time::timeout(Duration::from_secs(15), reader)
                .await
                .is_ok();
            out.lock().unwrap().push((units, closed));
        });
    }
    while tasks.join_next().await.is_some() {}
    let v = sent_per_conn.lock().unwrap().clone();
    let closed = v.iter().filter(|(_, c)| *c).count();
    let max = v.iter().map(|(u, _)| *u).max().unwrap_or(0);
    let what = if continuation {
        "1 KiB CONTINUATION frames"
    } else {
        "reset streams"
    };
    format!(
        "{} conns, {closed} closed by the server; at most {max} {what} sent on one",
        v.len()
    )
}

/// Requests whose one header is 64 KiB, from one client: notes the statuses.
pub async fn oversized_headers(env: Arc<Env>, stop: CancellationToken, net: u8) -> String {
    let big = "a".repeat(64 * 1024);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut n = 0;
    while !stop.is_cancelled() && n < env.n(50, 2_000) {
        n += 1;
        let Ok(mut s) = connect_from(spread(net, 0), env.http).await else {
            *statuses.entry("refused".into()).or_default() += 1;
            continue;
        };
        let req =
            format!("GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: {NAME}\r\nX-Big: {big}\r\n\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        let mut r = BufReader::new(s);
        let status = read_status(&mut r).await.unwrap_or_else(|| "closed".into());
        *statuses.entry(status).or_default() += 1;
    }
    format!("{n} requests: {statuses:?}")
}

/// Many pipelined requests written without reading, on `conns` connections
/// from one client; then the answers are read. Notes statuses.
pub async fn pipelining(env: Arc<Env>, stop: CancellationToken, net: u8) -> String {
    let counts: Arc<Mutex<std::collections::BTreeMap<String, usize>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let per_conn = env.n(1_000, 5_000);
    for _ in 0..env.n(4, 16) {
        let (env, stop, counts) = (env.clone(), stop.clone(), counts.clone());
        tasks.spawn(async move {
            let Ok(s) = connect_from(spread(net, 0), env.http).await else {
                *counts.lock().unwrap().entry("refused".into()).or_default() += 1;
                return;
            };
            let (rd, mut wr) = s.into_split();
            let one = format!("GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: {NAME}\r\n\r\n");
            let all = one.repeat(per_conn);
            let writer = tokio::spawn(async move {
                let _ = wr.write_all(all.as_bytes()).await;
                wr
            });
            let mut r = BufReader::new(rd);
            while !stop.is_cancelled() {
                match tokio::time::timeout(Duration::from_secs(15), read_response(&mut r)).await {
                    Ok(Some(status)) => *counts.lock().unwrap().entry(status).or_default() += 1,
                    _ => break,
                }
            }
            writer.abort();
        });
    }
    stop.cancelled().await;
    tasks.shutdown().await;
    format!(
        "{per_conn} pipelined per conn: {:?}",
        counts.lock().unwrap()
    )
}

/// Keep-alive request loops from one client as fast as they go.
pub async fn request_flood(env: Arc<Env>, stop: CancellationToken, net: u8) -> String {
    let counts: Arc<Mutex<std::collections::BTreeMap<String, usize>>> = Arc::default();
    let mut tasks = JoinSet::new();
    for _ in 0..env.n(8, 32) {
        let (env, stop, counts) = (env.clone(), stop.clone(), counts.clone());
        tasks.spawn(async move {
            while !stop.is_cancelled() {
                let Ok(s) = connect_from(spread(net, 0), env.http).await else {
                    *counts
                        .lock()
                        .unwrap()
                        .entry("connect failed".into())
                        .or_default() += 1;
                    continue;
                };
                let mut r = BufReader::new(s);
                let one = format!("GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: {NAME}\r\n\r\n");
                loop {
                    if stop.is_cancelled() || r.get_mut().write_all(one.as_bytes()).await.is_err() {
                        break;
                    }
                    match read_response(&mut r).await {
                        Some(status) => *counts.lock().unwrap().entry(status).or_default() += 1,
                        None => {
                            *counts.lock().unwrap().entry("closed".into()).or_default() += 1;
                            break;
                        }
                    }
                }
            }
        });
    }
    stop.cancelled().await;
    tasks.shutdown().await;
    format!("{:?}", counts.lock().unwrap())
}

async fn read_status<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<String> {
    let mut line = String::new();
    r.read_line(&mut line).await.ok()?;
    line.split(' ').nth(1).map(str::to_owned)
}

/// One HTTP/1.1 response (status line, headers, Content-Length body).
async fn read_response<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<String> {
    let status = read_status(r).await?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.ok()?;
    Some(status)
}
