//! Sockets: accept loops, connection caps, TLS handshakes, hyper connections,
//! and graceful shutdown. Knows nothing about documents.
//!
//! One slow or hostile client must not starve the rest: every connection holds
//! a permit from a global cap and a per-IP cap, TLS handshakes and request
//! headers have deadlines, idle keep-alive connections are closed by hyper's
//! header-read timeout, and every connection is closed after MAX_CONNECTION_AGE.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{self, ConnInfo, Shared};

/// Open connections at once, all listeners together.
pub const MAX_CONNECTIONS: usize = 4_096;
/// Open connections at once from one IP address.
pub const MAX_CONNECTIONS_PER_IP: usize = 64;
/// A client must send a request's headers within this (also closes idle keep-alive).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this; it is then closed gracefully.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// In-flight requests get this long to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest request head hyper buffers (HTTP/1).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Concurrent HTTP/2 streams per connection.
pub const MAX_H2_STREAMS: u32 = 32;

/// Turns an accepted TCP stream into the stream HTTP runs on (TLS for https).
pub trait Acceptor: Send + Sync + 'static {
    fn accept(&self, tcp: TcpStream) -> futures_util::future::BoxFuture<'static, Option<Accepted>>;
}

/// A ready stream and the HTTP version ALPN settled, if it did.
pub struct Accepted {
    pub io: Box<dyn Io>,
    pub protocol: Option<Protocol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A byte stream hyper can serve.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A bound socket and how to serve it.
pub struct Listener {
    pub tcp: TcpListener,
    /// `None` for plain HTTP.
    pub tls: Option<Arc<dyn Acceptor>>,
}

/// Serves every listener until `shutdown` fires, then lets in-flight requests
/// finish (at most SHUTDOWN_GRACE) and returns.
pub async fn serve(listeners: Vec<Listener>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let limits = Arc::new(ConnectionLimits::new());
    let mut accept_loops = Vec::new();
    for listener in listeners {
        accept_loops.push(tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            limits.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    for l in accept_loops {
        let _ = l.await;
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    limits: Arc<ConnectionLimits>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let local = listener.tcp.local_addr().ok();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, listen = ?local, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(permit) = limits.admit(peer.ip()) else {
            tracing::debug!(client = %peer.ip(), "connection refused: connection limit reached");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = listener.tls.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let secure = tls.is_some();
            let accepted = match tls {
                None => Accepted {
                    io: Box::new(tcp),
                    protocol: None,
                },
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Some(accepted)) => accepted,
                        _ => return,
                    }
                }
            };
            serve_connection(accepted, peer, secure, shared, shutdown).await;
        });
    }
}

async fn serve_connection(
    accepted: Accepted,
    peer: SocketAddr,
    secure: bool,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let info = ConnInfo {
        peer,
        secure,
        requests: Arc::new(AtomicU32::new(0)),
    };
    let service = service_fn(move |req| http::handle(req, info.clone(), shared.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    // ALPN already chose the version: skip sniffing the first bytes for the h2 preface.
    let builder = match accepted.protocol {
        Some(Protocol::Http1) => builder.http1_only(),
        Some(Protocol::Http2) => builder.http2_only(),
        None => builder,
    };
    let conn = builder.serve_connection(TokioIo::new(accepted.io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(client = %peer.ip(), error = %e, "connection ended with an error");
            }
            return;
        }
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}

/// The global and per-IP connection caps.
struct ConnectionLimits {
    global: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Holds one connection's place in both caps; released on drop.
struct ConnectionPermit {
    _global: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionLimits {
    fn new() -> ConnectionLimits {
        ConnectionLimits {
            global: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<ConnectionPermit> {
        let global = self.global.clone().try_acquire_owned().ok()?;
        let mut per_ip = self
            .per_ip
            .lock()
            .expect("per-IP map lock is never poisoned: no panics while held");
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= MAX_CONNECTIONS_PER_IP {
            return None;
        }
        *count += 1;
        Some(ConnectionPermit {
            _global: global,
            ip,
            per_ip: self.per_ip.clone(),
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_ip = self
            .per_ip
            .lock()
            .expect("per-IP map lock is never poisoned: no panics while held");
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_cap_is_enforced_and_released() {
        let limits = ConnectionLimits::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_CONNECTIONS_PER_IP)
            .map(|_| limits.admit(ip).unwrap())
            .collect();
        assert!(limits.admit(ip).is_none());
        assert!(limits.admit("192.0.2.2".parse().unwrap()).is_some());
        drop(held);
        assert!(limits.admit(ip).is_some());
        assert!(limits.per_ip.lock().unwrap().is_empty());
    }
}
