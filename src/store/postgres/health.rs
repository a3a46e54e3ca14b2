//! Whether the shared database answers, so that calls fail fast during an
//! outage instead of each waiting out its deadline.

use std::time::Duration;

use tokio::sync::watch;

/// Whether the database answers, as the last call (or the feed's poll) saw.
/// While it does not, calls fail at once instead of each waiting out its
/// deadline (a node restarted during an outage would otherwise spend
/// `OP_TIMEOUT` per domain before serving its local copy); one call per
/// `PROBE_EVERY` goes through to find out whether it is back.
pub(crate) struct Health {
    url: String,
    up: watch::Sender<bool>,
    last_probe: std::sync::Mutex<Option<std::time::Instant>>,
}

/// While the database is down, how often a call may try it.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(5);

impl Health {
    pub(super) fn new(url: String) -> Health {
        Health {
            url,
            up: watch::channel(true).0,
            last_probe: std::sync::Mutex::new(None),
        }
    }

    /// Follows up/down as calls see it.
    pub(super) fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Whether a call should try the database now.
    pub(super) fn allow(&self) -> bool {
        if *self.up.borrow() {
            return true;
        }
        let mut last = self
            .last_probe
            .lock()
            .expect("probe lock is never poisoned: no panics while held");
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < PROBE_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Logs the database going away and coming back, once each.
    pub(crate) fn note(&self, ok: bool) {
        if !ok {
            // A failure is a probe too: the next one waits PROBE_EVERY
            // (without this, the first calls after a failed start each
            // waited out the pool's connect timeout).
            *self
                .last_probe
                .lock()
                .expect("probe lock is never poisoned: no panics while held") =
                Some(std::time::Instant::now());
        }
        let was = self.up.send_replace(ok);
        if was && !ok {
            tracing::warn!(url = %self.url, "shared state database unreachable: serving from memory and the local copy, retrying");
        } else if !was && ok {
            tracing::info!(url = %self.url, "shared state database reachable again");
        }
    }
}
