//! Sockets: accept loops, connection caps and rates, TLS handshakes, hyper
//! connections, and graceful shutdown. Knows nothing about documents.
//!
//! One slow or hostile client must not starve the rest: every connection
//! passes the client's connection rate and cap and holds a place under the
//! global cap (`limits`), and every phase of a connection has a deadline
//! (`conn`). When the global cap is reached a new connection waits briefly for
//! a place instead of being closed at once and asks the longest-idle
//! connection to make room, while idle connections are closed sooner, so real
//! clients keep getting in while idle sockets are churned out.

mod conn;
pub mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use conn::{
    CLOSE_GRACE, EVICT_MIN_IDLE, HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTION_AGE,
    MAX_H2_STREAMS, MAX_HEADER_BYTES, PRESSURE_IDLE_TIMEOUT, TLS_HANDSHAKE_TIMEOUT,
};
use limits::Limits;

use crate::config::LimitsConfig;
use crate::http::Shared;

/// The default open connections at once, all listeners together.
pub const MAX_CONNECTIONS: usize = 16_384;
/// The default open connections at once from one client.
pub const MAX_CONNECTIONS_PER_IP: usize = 64;
/// In-flight requests get this long to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// With the global cap reached, a new connection waits this long for a place.
pub const GLOBAL_QUEUE_WAIT: Duration = Duration::from_secs(3);

/// Turns an accepted TCP stream into the stream HTTP runs on (TLS for https).
pub trait Acceptor: Send + Sync + 'static {
    /// With `challenge_only` (the client is over its connection rate), only
    /// an ACME TLS-ALPN-01 validation handshake may complete; anything else
    /// is dropped once its ClientHello is read, before any crypto.
    fn accept(
        &self,
        tcp: TcpStream,
        challenge_only: bool,
    ) -> futures_util::future::BoxFuture<'static, Option<Accepted>>;
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
/// finish (at most SHUTDOWN_GRACE) and returns. `[limits]` follow reloads.
pub async fn serve(listeners: Vec<Listener>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let config: LimitsConfig = shared.config.borrow().limits;
    check_open_file_limit(config.max_connections);
    let tracker = TaskTracker::new();
    let (http1, http2) = conn::builders();
    let ctx = Arc::new(conn::Ctx {
        shared,
        limits: Arc::new(Limits::new(config)),
        shutdown: shutdown.clone(),
        http1,
        http2,
    });
    let follower = tokio::spawn(follow_reloads(ctx.clone()));
    let mut accept_loops = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        accept_loops.push(tokio::spawn(accept_loop(
            index,
            listener,
            ctx.clone(),
            tracker.clone(),
        )));
    }
    for l in accept_loops {
        let _ = l.await;
    }
    follower.abort();
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

/// Applies each published config's `[limits]` (the reload has validated
/// them) until shutdown.
async fn follow_reloads(ctx: Arc<conn::Ctx>) {
    let mut config = ctx.shared.config.clone();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            changed = config.changed() => if changed.is_err() { return },
        }
        let new = config.borrow_and_update().limits;
        let old = ctx.limits.config();
        if new != old {
            ctx.limits.apply(new);
            if new.max_connections > old.max_connections {
                check_open_file_limit(new.max_connections);
            }
            tracing::info!(
                max_connections = new.max_connections,
                max_connections_per_client = new.max_connections_per_client,
                "connection limits applied"
            );
        }
    }
}

/// Raises the soft open-file limit to the hard one (started by hand, the soft
/// limit is often 1024; the systemd unit sets 65536) and warns if it still
/// cannot hold `max_connections` and some files of our own. (Connections
/// waiting for a place, up to a quarter more, are not counted: running out
/// there only means a newcomer is closed at once, as without the queue.)
fn check_open_file_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let mut limit = soft;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        limit = hard;
    }
    let needed = (max_connections + 256) as u64;
    if limit < needed {
        tracing::warn!(
            open_files = limit,
            needed,
            "the open-file limit is below what limits.max_connections needs; \
             raise LimitNOFILE or lower max_connections"
        );
    }
}

async fn accept_loop(index: usize, listener: Listener, ctx: Arc<conn::Ctx>, tracker: TaskTracker) {
    let local = listener.tcp.local_addr().ok();
    // Proof of life for systemd's watchdog: this loop is being polled.
    let mut beat = tokio::time::interval(crate::systemd::HEARTBEAT_INTERVAL);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = beat.tick() => ctx.shared.heartbeat.beat(index),
            accepted = listener.tcp.accept() => match accepted {
                Ok((tcp, peer)) => admit(tcp, peer, &listener, &ctx, &tracker),
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning;
                    // logged within the refusal budget (this repeats 10 times a
                    // second while it lasts).
                    if ctx.limits.log_budget() {
                        tracing::warn!(error = %e, listen = ?local, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Applies the client's rate and cap and the global cap, then spawns the
/// connection; a refused socket is dropped (closed) at once. Never waits.
fn admit(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &Listener,
    ctx: &Arc<conn::Ctx>,
    tracker: &TaskTracker,
) {
    let limits = &ctx.limits;
    let key = limits.key(peer.ip());
    // A client over its connection rate still gets in, but only for ACME
    // validation (the CA validates from few addresses and must never be
    // locked out by its own volume); everything else it sends is refused
    // at its first request or ClientHello, before any real work. Its
    // connection cap still applies.
    let (client_slot, challenge_only) = if ctx.is_trusted(peer.ip()) {
        (None, false)
    } else {
        let over_rate = !limits.allow_connection(key, peer.ip());
        let Some(slot) = limits.admit_client(key, peer.ip()) else {
            ctx.shared.metrics.refused(Limit::per_client);
            return;
        };
        (Some(slot), over_rate)
    };
    let global = limits.try_global();
    let queued = match global {
        Some(_) => None,
        None => match limits.try_queue() {
            Some(q) => {
                limits.evict_one();
                Some(q)
            }
            None => {
                limits.log_global_full();
                ctx.shared.metrics.refused(Limit::global);
                return;
            }
        },
    };
    if challenge_only {
        ctx.shared.metrics.refused(Limit::rate);
    }
    let _ = tcp.set_nodelay(true);
    let tls = listener.tls.clone();
    let ctx = ctx.clone();
    tracker.spawn(async move {
        let _client_slot = client_slot;
        let _global = match global {
            Some(g) => g,
            None => {
                let waited = tokio::select! {
                    g = ctx.limits.wait_global(GLOBAL_QUEUE_WAIT) => g,
                    _ = ctx.shutdown.cancelled() => None,
                };
                drop(queued);
                match waited {
                    Some(g) => g,
                    None => {
                        ctx.limits.log_global_full();
                        ctx.shared.metrics.refused(Limit::global);
                        return;
                    }
                }
            }
        };
        let _open = ctx.shared.metrics.open_connection();
        conn::serve(tcp, peer, key, challenge_only, tls, ctx).await;
    });
}

use crate::metrics::Limit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_match_the_config_defaults() {
        let d = LimitsConfig::default();
        assert_eq!(d.max_connections, MAX_CONNECTIONS);
        assert_eq!(d.max_connections_per_client, MAX_CONNECTIONS_PER_IP);
    }
}
