//! One connection from accept to close, with a deadline on every phase.
//!
//! Phases and what bounds each:
//! - TLS handshake: `TLS_HANDSHAKE_TIMEOUT`, and the idle deadline below.
//! - Plain HTTP version sniffing (HTTP/1 or the HTTP/2 prior-knowledge
//!   preface): the idle deadline; nothing waits for bytes without one.
//! - Request line and headers (HTTP/1), the HTTP/2 preface and SETTINGS, idle
//!   keep-alive: the idle deadline, which runs whenever no request is being
//!   handled (`IDLE_TIMEOUT`, `PRESSURE_IDLE_TIMEOUT` while connection slots
//!   are scarce), plus hyper's own header-read timeout for HTTP/1. Control
//!   frames (PING, SETTINGS) are not requests: a connection that sends only
//!   those is idle.
//! - Request body and answer: `http::REQUEST_TIMEOUT` in the handler.
//! - A response the client does not read: the graceful close after the idle
//!   deadline waits at most `CLOSE_GRACE`.
//! - Whole connection: `MAX_CONNECTION_AGE`, then a graceful close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::limits::{ClientKey, Limits};
use super::{Acceptor, Io, Protocol};
use crate::http::{self, ConnInfo, Shared};

/// A TLS handshake must finish within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress is closed after this long: the
/// first bytes, request headers and the gap between keep-alive requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The idle deadline while free connection slots are scarce: long enough for
/// a real client on a slow link to send its request, short enough that idle
/// sockets cannot hold the slots.
pub const PRESSURE_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// A client must send a request's headers within this (hyper, HTTP/1).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this; it is then closed gracefully.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// After an idle or abuse close starts, the client gets this long to take its
/// last response before the socket is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// An idle connection younger than this is not evicted for a newcomer: a
/// real client is still sending its first bytes then.
pub const EVICT_MIN_IDLE: Duration = Duration::from_millis(250);
/// Largest request head hyper buffers (HTTP/1), and the HTTP/2 header list.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Concurrent HTTP/2 streams per connection.
pub const MAX_H2_STREAMS: u32 = 32;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Everything a connection needs from the server.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub limits: Arc<Limits>,
    pub shutdown: CancellationToken,
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
}

impl Ctx {
    /// Whether `ip` is one of `server.trusted_proxies` (as reloaded): their
    /// connections are not limited per client (every client behind the
    /// proxy shares its address); requests through them are rated by the
    /// X-Forwarded-For client instead.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        let config = self.shared.config.borrow();
        config
            .server
            .trusted_proxies
            .iter()
            .any(|net| net.contains(ip))
    }
}

/// The HTTP builders with every limit set on purpose.
pub fn builders() -> (http1::Builder, http2::Builder<TokioExecutor>) {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        // Slowloris on headers; the idle deadline closes such a connection too.
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Caps the request head (and pipelined bytes buffered ahead of it).
        .max_buf_size(MAX_HEADER_BYTES)
        // Our clients send a handful of headers; 100 (the default) is plenty too.
        .max_headers(64)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        // Streams one client may run at once; documents are small and quick.
        .max_concurrent_streams(MAX_H2_STREAMS)
        // Rapid reset (CVE-2023-44487): streams the client opens and resets
        // before we accept them. Beyond this many queued, the connection is
        // closed with ENHANCE_YOUR_CALM. 20 is h2's default, set explicitly.
        .max_pending_accept_reset_streams(20)
        // The variant that makes *us* reset streams (MadeYouReset, 2025): a
        // well-behaved client causes no local error resets at all.
        .max_local_error_reset_streams(64)
        // CONTINUATION floods (CVE-2024-27316 family): h2 counts the decoded
        // header list across HEADERS + CONTINUATION and stops at this size, and
        // bounds the number of CONTINUATION frames by it.
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        // HPACK dynamic table we keep for the client's headers: the RFC default,
        // explicit so that a client cannot talk us into more.
        .header_table_size(4_096)
        // Frames of at most the minimum size: no large per-frame buffers.
        .max_frame_size(16_384)
        // Request bodies are at most 8 KiB: a small window per stream and per
        // connection bounds what a client can make us buffer.
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(64 * 1024)
        .adaptive_window(false)
        // Outgoing bytes buffered per stream for a client that does not read.
        .max_send_buf_size(64 * 1024)
        // No pings of our own: idle connections are closed by the idle
        // deadline, busy ones by the request timeout and MAX_CONNECTION_AGE.
        // Client PING and SETTINGS floods: h2 keeps one pending PONG and one
        // pending SETTINGS ACK and stops reading until it is written, so a
        // flood is back-pressured; and it is idle time, so it ends with the
        // idle deadline.
        .keep_alive_interval(None);
    (h1, h2)
}

/// Serves one accepted TCP connection until it ends or a deadline passes.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    key: ClientKey,
    challenge_only: bool,
    tls: Option<Arc<dyn Acceptor>>,
    ctx: Arc<Ctx>,
) {
    let activity = Arc::new(Activity::new());
    let mut pressure = ctx.limits.pressure();
    let secure = tls.is_some();
    let start = async {
        match tls {
            // h2 over TLS needs ALPN (RFC 9113 §3.2): without it, HTTP/1.
            Some(acceptor) => {
                match tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    acceptor.accept(tcp, challenge_only),
                )
                .await
                {
                    Ok(accepted) => accepted.map(|a| (a.io, a.protocol.unwrap_or(Protocol::Http1))),
                    Err(_) => {
                        ctx.shared.metrics.handshake_timed_out();
                        None
                    }
                }
            }
            None => sniff(tcp)
                .await
                .ok()
                .map(|(io, protocol)| (Box::new(io) as Box<dyn Io>, protocol)),
        }
    };
    let (io, protocol) = tokio::select! {
        started = start => match started {
            Some(s) => s,
            None => return,
        },
        _ = idle(&activity, &mut pressure, ctx.limits.evictions()) => return,
        _ = ctx.shutdown.cancelled() => return,
    };

    let close = CancellationToken::new();
    let info = ConnInfo {
        peer,
        secure,
        requests: Arc::new(AtomicU32::new(0)),
    };
    let service = {
        let (ctx, activity, close) = (ctx.clone(), activity.clone(), close.clone());
        service_fn(move |req: hyper::Request<Incoming>| {
            let (ctx, info, activity, close) =
                (ctx.clone(), info.clone(), activity.clone(), close.clone());
            async move {
                let _busy = activity.busy();
                // ACME validation requests are never refused: the CA must get
                // through even while its address range is noisy.
                let acme = req.uri().path().starts_with("/.well-known/acme-challenge/");
                let (key, client) = if ctx.is_trusted(peer.ip()) {
                    let config = ctx.shared.config.borrow().clone();
                    let ip =
                        http::client_ip(peer.ip(), req.headers(), &config.server.trusted_proxies);
                    (ctx.limits.key(ip), ip)
                } else {
                    (key, peer.ip())
                };
                if !acme && (challenge_only || !ctx.limits.allow_request(key, client)) {
                    close.cancel();
                    return Ok(http::too_many_requests(req.version()));
                }
                let response = http::handle(req, info.clone(), ctx.shared.clone()).await;
                if info.requests.load(Ordering::Relaxed) >= http::MAX_REQUESTS_PER_CONNECTION {
                    // HTTP/2 has no Connection: close; GOAWAY after this many streams.
                    close.cancel();
                }
                response
            }
        })
    };
    let io = TokioIo::new(io);
    // Boxed with `Send` spelled out here, where the connection type is
    // concrete: rustc cannot prove it through the generic `drive` inside the
    // spawned task ("higher-ranked lifetime error").
    let driven: Pin<Box<dyn Future<Output = ()> + Send>> = match protocol {
        Protocol::Http1 => {
            let conn = ctx.http1.serve_connection(io, service);
            Box::pin(drive(conn, peer, ctx, activity, pressure, close))
        }
        Protocol::Http2 => {
            let conn = ctx.http2.serve_connection(io, service);
            Box::pin(drive(conn, peer, ctx, activity, pressure, close))
        }
    };
    driven.await;
}

/// Runs a hyper connection until it ends, or closes it gracefully when the
/// server shuts down, the connection is too old or idle, or it was abusive.
async fn drive<C>(
    conn: C,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    activity: Arc<Activity>,
    mut pressure: watch::Receiver<bool>,
    close: CancellationToken,
) where
    C: GracefulConnection + Send,
    C::Error: std::fmt::Display,
{
    tokio::pin!(conn);
    let grace = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(client = %peer.ip(), error = %e, "connection ended with an error");
            }
            return;
        }
        _ = ctx.shutdown.cancelled() => super::SHUTDOWN_GRACE,
        _ = tokio::time::sleep_until((activity.started + MAX_CONNECTION_AGE).into()) => super::SHUTDOWN_GRACE,
        _ = idle(&activity, &mut pressure, ctx.limits.evictions()) => CLOSE_GRACE,
        _ = close.cancelled() => CLOSE_GRACE,
    };
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, conn).await;
}

/// When the connection last did something and whether a request is running.
struct Activity {
    started: Instant,
    in_flight: AtomicU32,
    /// Milliseconds since `started` at the last request start or end.
    last_ms: AtomicU64,
}

/// Marks a request as running; on drop, done.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn busy(self: Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self)
    }

    fn idle_for(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Completes once the connection has had no request running for the idle
/// limit (shorter while the server is under connection pressure), or at once
/// when the server is full and asks the longest-waiting idle connection to
/// make room for a new one.
async fn idle(activity: &Activity, pressure: &mut watch::Receiver<bool>, evictions: &Notify) {
    loop {
        let limit = if *pressure.borrow_and_update() {
            PRESSURE_IDLE_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        let wait = if activity.in_flight.load(Ordering::Relaxed) > 0 {
            // A request is running; it has its own timeout. Look again later.
            limit
        } else {
            let idle_for = activity.idle_for();
            if idle_for >= limit {
                return;
            }
            limit - idle_for
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A pressure change re-evaluates the limit at once.
            changed = pressure.changed() => {
                if changed.is_err() {
                    // The server is gone; only the normal limit applies.
                    tokio::time::sleep(wait).await;
                }
            }
            _ = evictions.notified() => {
                // A busy or brand-new connection keeps its place; that
                // eviction is then lost and the newcomer waits for the
                // next free slot (its wait is bounded).
                if activity.in_flight.load(Ordering::Relaxed) == 0
                    && activity.idle_for() >= EVICT_MIN_IDLE
                {
                    return;
                }
            }
        }
    }
}

/// Reads the first bytes of a plain connection to tell HTTP/1 from the HTTP/2
/// preface, and hands them back in front of the stream. The caller bounds it
/// with the idle deadline.
async fn sniff(mut tcp: TcpStream) -> io::Result<(Prefixed<TcpStream>, Protocol)> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let n = tcp.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if buf[..len] != H2_PREFACE[..len] {
            return Ok((Prefixed::new(buf, len, tcp), Protocol::Http1));
        }
        if len == H2_PREFACE.len() {
            return Ok((Prefixed::new(buf, len, tcp), Protocol::Http2));
        }
    }
}

/// A stream with bytes already read from it put back in front.
struct Prefixed<T> {
    prefix: [u8; 24],
    pos: usize,
    len: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    fn new(prefix: [u8; 24], len: usize, inner: T) -> Prefixed<T> {
        Prefixed {
            prefix,
            pos: 0,
            len,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.len {
            let n = (self.len - self.pos).min(buf.remaining());
            let from = self.pos;
            buf.put_slice(&self.prefix[from..from + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
