//! Tells this node which domains' certificates another node stored: LISTEN
//! on a channel that `put_cert` notifies in its transaction, and, because a
//! notification sent while this node's listening connection was down is
//! lost, a poll of recently updated rows as the fallback.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

/// The NOTIFY channel; the payload is `payload()`'s.
pub const CHANNEL: &str = "mailconfd_certs";

/// `DOMAIN NODE`: neither contains a space. The node lets each node skip
/// its own writes.
pub fn payload(domain: &str, node: &str) -> String {
    format!("{domain} {node}")
}
/// Changes waiting for the manager at most; past that the poll catches up.
pub const QUEUE: usize = 1024;
/// How often rows are polled for, whatever the listener says.
const POLL_EVERY: Duration = Duration::from_secs(10);
/// Each poll looks back this much further than the newest row it saw, for
/// transactions that committed after a later one (`updated_at` is taken
/// inside the transaction). Re-sent domains cost a comparison each.
const POLL_OVERLAP_SECS: f64 = 60.0;
/// Rows one poll hands over at most.
const POLL_LIMIT: i64 = 10_000;

pub struct Feed {
    pub pool: PgPool,
    pub node: String,
    pub tx: mpsc::Sender<String>,
    /// The poll doubles as the database's heartbeat while the node is idle.
    pub health: std::sync::Arc<super::Health>,
}

impl Feed {
    /// Runs until the manager stops listening.
    pub async fn run(self) {
        let mut listener: Option<PgListener> = None;
        // Unix seconds of the newest row seen; start from the database's now:
        // what is older was read at start.
        let mut newest: Option<f64> = None;
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.tx.is_closed() {
                return;
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            tokio::select! {
                note = recv(&mut listener) => match note {
                    Ok(payload) => {
                        let (domain, node) = payload.split_once(' ').unwrap_or((&payload, ""));
                        if node != self.node && !self.send(domain.to_owned()) {
                            newest = newest.map(|n| n - 3_600.0);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "certificate change listener lost; polling until it is back");
                        listener = None;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                _ = poll.tick() => {
                    let polled = self.poll(newest).await;
                    self.health.note(polled.is_ok());
                    match polled {
                        Ok((rows, seen)) => {
                            newest = seen.or(newest);
                            for domain in rows {
                                self.send(domain);
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "certificate change poll failed"),
                    }
                }
            }
        }
    }

    /// False when the manager's queue was full (the next polls resend).
    fn send(&self, domain: String) -> bool {
        !matches!(
            self.tx.try_send(domain),
            Err(mpsc::error::TrySendError::Full(_))
        )
    }

    async fn listen(&self) -> Option<PgListener> {
        let attempt = async {
            let mut l = PgListener::connect_with(&self.pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(l)) => Some(l),
            _ => None,
        }
    }

    /// Domains stored by other nodes since `newest` (minus the overlap), and
    /// the newest `updated_at` among them; the first poll only learns the
    /// database's clock.
    async fn poll(&self, newest: Option<f64>) -> Result<(Vec<String>, Option<f64>), sqlx::Error> {
        let Some(since) = newest else {
            let now: f64 = tokio::time::timeout(
                Duration::from_secs(5),
                sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
                    .fetch_one(&self.pool),
            )
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
            return Ok((Vec::new(), Some(now)));
        };
        let rows: Vec<(String, f64)> = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::query_as(
                "SELECT domain, extract(epoch FROM updated_at)::float8 FROM mailconfd_certs
                 WHERE updated_at > to_timestamp($1) AND node <> $2
                 ORDER BY updated_at LIMIT $3",
            )
            .bind(since - POLL_OVERLAP_SECS)
            .bind(&self.node)
            .bind(POLL_LIMIT)
            .fetch_all(&self.pool),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let seen = rows
            .iter()
            .map(|(_, t)| *t)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        Ok((
            rows.into_iter().map(|(d, _)| d).collect(),
            seen.map(|s| s.max(since)),
        ))
    }
}

/// The next notification's payload; pends forever without a listener.
async fn recv(listener: &mut Option<PgListener>) -> Result<String, sqlx::Error> {
    match listener {
        Some(l) => Ok(l.recv().await?.payload().to_owned()),
        None => std::future::pending().await,
    }
}
