//! What systemd (or any service manager speaking the sd_notify protocol) is
//! told about the daemon's life: `READY=1` once the listeners are bound and
//! stored certificates are deployed, `RELOADING=1` … `READY=1` around a
//! reload, `STOPPING=1` when shutdown starts, a `STATUS=` line an operator
//! reads in `systemctl status`, and `WATCHDOG=1` keep-alives while the accept
//! loops prove they still run.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset: by hand, in Docker) every call is a
//! no-op. A failed notification is logged at debug and otherwise ignored: the
//! service manager's timeout is the safety net, not a crash.
//!
//! Protocol: <https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html>

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::certs::manager::StatusCounts;
use crate::config::{Config, TlsMode};
use crate::tls::CertResolver;

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Startup is complete (or a reload finished): serving with `status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts. systemd 253+ pairs it with the reload job through the
/// CLOCK_MONOTONIC timestamp; older versions ignore the field.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        Err(_) => send(&[
            NotifyState::Reloading,
            NotifyState::Status("reloading the configuration"),
        ]),
    }
}

/// Shutdown starts: in-flight requests are being drained.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing requests in flight"),
    ]);
}

/// Replaces the status line.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// The one-line summary for `systemctl status`: how many domains are served
/// and how many of them have a certificate deployed; with the certificate
/// manager's `counts` (ACME, local CA) also what is queued, ordering and
/// failing. No addresses, no names.
pub fn status_line(
    config: &Config,
    resolver: &CertResolver,
    counts: Option<&StatusCounts>,
) -> String {
    let domains = config.domains().count();
    let plural = if domains == 1 { "" } else { "s" };
    if let (Some(c), TlsMode::Acme | TlsMode::Local) = (counts, config.tls.mode) {
        let source = if config.tls.mode == TlsMode::Acme {
            "ACME"
        } else {
            "local CA"
        };
        let mut line = format!(
            "serving {domains} domain{plural}: {} with a valid certificate ({source}), {} queued, {} ordering, {} failing",
            c.certificates_valid, c.orders_queued, c.orders_in_flight, c.failing
        );
        if c.state_write_failing {
            line.push_str("; state directory not writable: serving from memory");
        }
        return line;
    }
    match config.tls.mode {
        TlsMode::Off => {
            format!("serving {domains} domain{plural} over plain HTTP (tls.mode = off)")
        }
        mode => {
            let with_cert = config
                .domains()
                .filter(|(d, _)| resolver.domain_names(d).is_some())
                .count();
            let waiting = domains - with_cert;
            let source = match mode {
                TlsMode::Acme => "ACME",
                TlsMode::Local => "local CA",
                TlsMode::Files => "certificate files",
                TlsMode::Off => unreachable!("matched above"),
            };
            let waiting_word = if mode == TlsMode::Files {
                "not covered"
            } else {
                "waiting for one"
            };
            format!(
                "serving {domains} domain{plural}: {with_cert} with a certificate ({source}), {waiting} {waiting_word}"
            )
        }
    }
}

/// Proof of life from the accept loops: each beats at least every
/// [`HEARTBEAT_INTERVAL`] while it runs, idle or busy. The watchdog pings
/// systemd only while every loop has beaten recently, so a wedged runtime or
/// an accept loop stuck on a lock gets the service killed and restarted.
#[derive(Debug)]
pub struct Heartbeat {
    started: Instant,
    /// Milliseconds since `started` of each loop's last beat.
    last_beat_ms: Vec<AtomicU64>,
}

/// How often each accept loop beats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

impl Heartbeat {
    /// A heartbeat for `loops` accept loops, all beating now.
    pub fn new(loops: usize) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            started: Instant::now(),
            last_beat_ms: (0..loops).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Accept loop `index` is alive.
    pub fn beat(&self, index: usize) {
        if let Some(slot) = self.last_beat_ms.get(index) {
            slot.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The accept loops that have not beaten within `within`.
    pub fn silent_loops(&self, within: Duration) -> Vec<usize> {
        let now = self.now_ms();
        let limit = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        self.last_beat_ms
            .iter()
            .enumerate()
            .filter(|(_, b)| now.saturating_sub(b.load(Ordering::Relaxed)) > limit)
            .map(|(i, _)| i)
            .collect()
    }
}

/// Pings systemd's watchdog at half its timeout while the accept loops beat.
/// Does nothing unless the unit sets `WatchdogSec=` (systemd then passes
/// `WATCHDOG_USEC` and `WATCHDOG_PID`).
pub fn spawn_watchdog(heartbeat: Arc<Heartbeat>, shutdown: CancellationToken) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = timeout / 2;
    // A loop that missed several beats is stuck; one late beat on a loaded
    // machine is not.
    let allowed_silence = (HEARTBEAT_INTERVAL * 5).min(timeout / 2);
    tracing::info!(
        timeout_secs = timeout.as_secs_f64(),
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut reported = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let silent = heartbeat.silent_loops(allowed_silence);
            if silent.is_empty() {
                send(&[NotifyState::Watchdog]);
                reported = false;
            } else if !reported {
                tracing::error!(accept_loops = ?silent, "accept loops stopped beating; withholding the watchdog ping so systemd restarts the service");
                reported = true;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_never_beats_is_reported_silent() {
        let hb = Heartbeat::new(2);
        std::thread::sleep(Duration::from_millis(30));
        hb.beat(0);
        assert_eq!(hb.silent_loops(Duration::from_millis(10)), vec![1]);
        assert!(hb.silent_loops(Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn status_line_counts_domains_with_certificates() {
        let config = crate::config::parse(
            r#"
[tls]
mode = "local"
[[provider]]
id = "example.com"
name = "Example"
domains = ["example.com", "example.net"]
  [[provider.server]]
  type = "imap"
  host = "mail.example.com"
  [[provider.server]]
  type = "smtp"
  host = "mail.example.com"
"#,
        )
        .expect("valid config");
        let resolver = CertResolver::new();
        assert_eq!(
            status_line(&config, &resolver, None),
            "serving 2 domains: 0 with a certificate (local CA), 2 waiting for one"
        );
        let cert = rcgen::generate_simple_self_signed(vec!["autoconfig.example.net".into()])
            .expect("self-signed certificate");
        resolver.set_domain_pem(
            "example.net",
            vec!["autoconfig.example.net".into()],
            cert.cert.pem(),
            cert.signing_key.serialize_pem(),
        );
        assert_eq!(
            status_line(&config, &resolver, None),
            "serving 2 domains: 1 with a certificate (local CA), 1 waiting for one"
        );
        let counts = StatusCounts {
            domains: 2,
            certificates_valid: 1,
            orders_in_flight: 1,
            orders_queued: 0,
            failing: 0,
            state_write_failing: true,
        };
        assert_eq!(
            status_line(&config, &resolver, Some(&counts)),
            "serving 2 domains: 1 with a valid certificate (local CA), 0 queued, 1 ordering, 0 failing; state directory not writable: serving from memory"
        );
    }
}
