//! What readiness (systemd `STATUS=`) and health output read: a few counts
//! the manager publishes through a `watch` channel as they change.

use std::collections::BTreeMap;

use super::Manager;

/// A cheap snapshot for readiness (systemd `STATUS=`) and health output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Configured mail domains.
    pub domains: usize,
    /// Domains served with an unexpired certificate from the configured CA.
    pub certificates_valid: usize,
    /// Orders running now.
    pub orders_in_flight: usize,
    /// Domains due for an order that wait for the queue or the token bucket.
    pub orders_queued: usize,
    /// Domains whose last order failed.
    pub failing: usize,
    /// The last write to the state directory failed (full or read-only disk):
    /// serving and scheduling continue from memory.
    pub state_write_failing: bool,
}

impl Manager {
    pub(super) fn publish_counts(
        &self,
        wanted: &BTreeMap<String, Vec<String>>,
        in_flight: usize,
        queued: usize,
        now: i64,
    ) {
        let certificates_valid = wanted
            .keys()
            .filter(|d| self.resolver.domain_key(d).is_some())
            .filter(|d| self.own_record(d).is_some_and(|r| r.not_after > now))
            .count();
        let counts = StatusCounts {
            domains: wanted.len(),
            certificates_valid,
            orders_in_flight: in_flight,
            orders_queued: queued,
            failing: self.statuses.values().filter(|s| s.failures > 0).count(),
            state_write_failing: self.store_failing || self.report_failing,
        };
        self.counts.send_if_modified(|old| {
            let changed = *old != counts;
            *old = counts;
            changed
        });
    }
}
