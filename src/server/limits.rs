//! Who may open how many connections and send how many requests, in memory
//! that does not grow with the number of distinct clients.
//!
//! A client is an IPv4 address or an IPv6 prefix (`ipv6_client_prefix`, /64 by
//! default: one host or home router owns a whole /64, so counting single IPv6
//! addresses would give it 2^64 quotas). Open connections per client live in a
//! count-min sketch (two rows of counters, hashed with a per-process random
//! key): two clients that collide share a counter in one row only, and the
//! smaller of the two rows is an upper bound on the true count, so a collision
//! can refuse a little early but never lets a client over its cap. Token
//! buckets for the rates live in a fixed table of slots; a client that lost its
//! slot to another starts with a full bucket again (the table forgets, never
//! grows). Refusals are logged once per client per minute, and at most
//! `LOG_LINES_PER_MINUTE` times a minute in all, so a flood from many
//! addresses cannot flood the log either.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, watch};

use crate::config::LimitsConfig;

mod buckets;
mod capacity;
use buckets::{Buckets, Taken};
use capacity::Capacity;

/// Counters per sketch row (2 rows of u32: 128 KiB).
const SKETCH_WIDTH: usize = 16_384;
/// Refusal log lines per minute, all clients together.
const LOG_LINES_PER_MINUTE: u32 = 20;
/// Below this share of free connection slots the server is under pressure and
/// idle connections get a much shorter deadline (see `conn`).
const PRESSURE_FREE_PERCENT: usize = 10;
/// Pressure ends when this share is free again (hysteresis).
const RELIEF_FREE_PERCENT: usize = 25;

/// A client as counted: IPv4 address, or IPv6 prefix (IPv4-mapped IPv6
/// addresses count as their IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u128::from(v4.to_ipv6_mapped())),
                None => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                        .unwrap_or(0);
                    ClientKey(u128::from(v6) & mask)
                }
            },
        }
    }
}

/// What was refused, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ConnectionRate,
    ClientConnections,
    Requests,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::ConnectionRate => "too many new connections from this client",
            Refusal::ClientConnections => "too many open connections from this client",
            Refusal::Requests => "too many requests from this client",
        }
    }
}

/// All the limits of one server: the global cap, per-client caps and rates.
pub struct Limits {
    /// Replaced by a reload (`apply`); read afresh for every decision.
    config: std::sync::RwLock<LimitsConfig>,
    global: Capacity,
    /// Connections waiting for a place under the global cap hold a socket
    /// each: at most a quarter of the cap may wait, the rest are closed at
    /// once.
    queue: Capacity,
    hasher: RandomState,
    sketch: Box<[AtomicU32]>,
    connection_rate: Mutex<Buckets>,
    request_rate: Mutex<Buckets>,
    log: Mutex<LogBudget>,
    pressure: watch::Sender<bool>,
    evict: Notify,
    epoch: Instant,
}

/// One connection's place in its client's count; released on drop.
pub struct ClientSlot {
    limits: Arc<Limits>,
    cells: [usize; 2],
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Limits {
        Limits {
            config: std::sync::RwLock::new(config),
            global: Capacity::new(config.max_connections),
            queue: Capacity::new(queue_size(config)),
            hasher: RandomState::new(),
            sketch: (0..2 * SKETCH_WIDTH).map(|_| AtomicU32::new(0)).collect(),
            connection_rate: Mutex::new(Buckets::new()),
            request_rate: Mutex::new(Buckets::new()),
            log: Mutex::new(LogBudget::default()),
            pressure: watch::Sender::new(false),
            evict: Notify::new(),
            epoch: Instant::now(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> LimitsConfig {
        *self
            .config
            .read()
            .expect("limits lock: no panics while held")
    }

    /// A reloaded `[limits]`: rates, per-client caps and the IPv6 prefix
    /// apply to the next decision; the global cap and its queue are resized
    /// (a smaller cap is reached as connections close, none is cut).
    pub fn apply(&self, new: LimitsConfig) {
        *self
            .config
            .write()
            .expect("limits lock: no panics while held") = new;
        self.global.resize(new.max_connections);
        self.queue.resize(queue_size(new));
        self.update_pressure();
    }

    pub fn key(&self, ip: IpAddr) -> ClientKey {
        ClientKey::new(ip, self.config().ipv6_client_prefix)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Takes a token from the client's new-connection bucket.
    pub fn allow_connection(&self, key: ClientKey, ip: IpAddr) -> bool {
        let hash = self.hasher.hash_one((0u8, key));
        let config = self.config();
        let (rate, burst) = (config.connections_per_second, config.connection_burst);
        self.take(
            &self.connection_rate,
            hash,
            rate,
            burst,
            ip,
            Refusal::ConnectionRate,
        )
    }

    /// Takes a token from the client's request bucket.
    pub fn allow_request(&self, key: ClientKey, ip: IpAddr) -> bool {
        let hash = self.hasher.hash_one((1u8, key));
        let config = self.config();
        let (rate, burst) = (config.requests_per_second, config.request_burst);
        self.take(&self.request_rate, hash, rate, burst, ip, Refusal::Requests)
    }

    fn take(
        &self,
        table: &Mutex<Buckets>,
        hash: u64,
        rate: u32,
        burst: u32,
        ip: IpAddr,
        what: Refusal,
    ) -> bool {
        let now = self.now_ms();
        let log = {
            let mut t = table.lock().expect("bucket lock: no panics while held");
            match t.take(hash, now, rate, burst) {
                Taken::Yes => return true,
                Taken::No { log } => log,
            }
        };
        if log {
            self.log_refusal(ip, what);
        }
        false
    }

    /// Counts one more connection for the client, unless it is at its cap.
    pub fn admit_client(self: &Arc<Self>, key: ClientKey, ip: IpAddr) -> Option<ClientSlot> {
        let h = self.hasher.hash_one((2u8, key));
        let cells = [
            (h as usize) % SKETCH_WIDTH,
            SKETCH_WIDTH + ((h >> 32) as usize) % SKETCH_WIDTH,
        ];
        let estimate = cells
            .iter()
            .map(|&c| self.sketch[c].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if estimate as usize >= self.config().max_connections_per_client {
            // The per-client minute gate lives in the connection-rate table.
            let hash = self.hasher.hash_one((0u8, key));
            let log = self
                .connection_rate
                .lock()
                .expect("bucket lock: no panics while held")
                .should_log(hash, self.now_ms());
            if log {
                self.log_refusal(ip, Refusal::ClientConnections);
            }
            return None;
        }
        for &c in &cells {
            self.sketch[c].fetch_add(1, Ordering::Relaxed);
        }
        Some(ClientSlot {
            limits: self.clone(),
            cells,
        })
    }

    /// A place under the global cap, if one is free now.
    pub fn try_global(self: &Arc<Self>) -> Option<GlobalSlot> {
        let permit = self.global.semaphore().clone().try_acquire_owned().ok();
        self.update_pressure();
        Some(GlobalSlot {
            permit: Some(permit?),
            limits: self.clone(),
        })
    }

    /// Waits for a place under the global cap (first come, first served), at
    /// most `within`.
    pub async fn wait_global(self: &Arc<Self>, within: Duration) -> Option<GlobalSlot> {
        let permit = tokio::time::timeout(within, self.global.semaphore().clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        self.update_pressure();
        Some(GlobalSlot {
            permit: Some(permit),
            limits: self.clone(),
        })
    }

    /// A place in the queue of connections waiting for a place under the
    /// global cap, if one is free.
    pub fn try_queue(&self) -> Option<OwnedSemaphorePermit> {
        self.queue.semaphore().clone().try_acquire_owned().ok()
    }

    /// Whether free connection slots are scarce; connections watch it.
    pub fn pressure(&self) -> watch::Receiver<bool> {
        self.pressure.subscribe()
    }

    /// Asks one idle connection to make room: a new one is waiting for a
    /// place under the global cap. Idle connections wait on `evictions`;
    /// tokio wakes the one that has waited longest.
    pub fn evict_one(&self) {
        self.evict.notify_one();
    }

    pub fn evictions(&self) -> &Notify {
        &self.evict
    }

    /// Re-evaluates pressure; called on every admission and release.
    pub fn update_pressure(&self) {
        let free = self.global.semaphore().available_permits() * 100;
        let max = self.global.size();
        let mut started = false;
        self.pressure.send_if_modified(|on| {
            let next = if *on {
                free < max * RELIEF_FREE_PERCENT
            } else {
                free < max * PRESSURE_FREE_PERCENT
            };
            let changed = next != *on;
            started = changed && next;
            *on = next;
            changed
        });
        if started && self.log_budget() {
            tracing::warn!(
                max_connections = max,
                "connection slots nearly exhausted: idle connections are closed sooner"
            );
        }
    }

    /// Logs a refusal if the minute's global budget allows.
    fn log_refusal(&self, ip: IpAddr, what: Refusal) {
        let minute = self.now_ms() / 60_000;
        let dropped = {
            let mut b = self.log.lock().expect("log lock: no panics while held");
            match b.allow(minute) {
                Some(dropped) => dropped,
                None => return,
            }
        };
        if dropped > 0 {
            tracing::warn!(
                unlogged = dropped,
                "refusals from other clients in the previous minute were not logged"
            );
        }
        tracing::warn!(client = %ip, reason = what.reason(), "refusing client (logged once a minute per client)");
    }

    /// Whether the minute's log budget has room for one more line.
    pub fn log_budget(&self) -> bool {
        let minute = self.now_ms() / 60_000;
        let mut b = self.log.lock().expect("log lock: no panics while held");
        b.allow(minute).is_some()
    }

    /// Logs that the global cap turned a connection away (budgeted like refusals).
    pub fn log_global_full(&self) {
        if self.log_budget() {
            tracing::warn!(
                max_connections = self.global.size(),
                "connection limit reached; new connections are closed until slots free up"
            );
        }
    }
}

fn queue_size(config: LimitsConfig) -> usize {
    config.max_connections.div_ceil(4)
}

/// One connection's place under the global cap; released on drop.
pub struct GlobalSlot {
    permit: Option<OwnedSemaphorePermit>,
    limits: Arc<Limits>,
}

impl Drop for GlobalSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limits.update_pressure();
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        for &c in &self.cells {
            self.limits.sketch[c].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Refusal log lines per minute across all clients.
#[derive(Default)]
struct LogBudget {
    minute: u64,
    used: u32,
    dropped: u32,
}

impl LogBudget {
    /// `Some(lines dropped in the previous minute)` if this line may be logged.
    fn allow(&mut self, minute: u64) -> Option<u32> {
        let mut previous_dropped = 0;
        if minute != self.minute {
            previous_dropped = self.dropped;
            *self = LogBudget {
                minute,
                used: 0,
                dropped: 0,
            };
        }
        if self.used >= LOG_LINES_PER_MINUTE {
            self.dropped += 1;
            return None;
        }
        self.used += 1;
        Some(previous_dropped)
    }
}

#[cfg(test)]
mod tests;
