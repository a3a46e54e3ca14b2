//! Pure scheduling arithmetic: when a certificate is renewed, how long a
//! failing domain waits, and the new-order token bucket (whose state is
//! persisted so that a crash loop cannot exceed it).

use serde::{Deserialize, Serialize};

use super::super::RenewalWindow;
use crate::store::{CertRecord, DomainStatus};

/// Backoff after the 1st, 2nd, 3rd and later consecutive failures
/// (Let's Encrypt integration guide).
pub(super) const BACKOFF_SECS: [i64; 4] = [60, 600, 6_000, 86_400];
/// Let's Encrypt allows 5 failed validations per name per hour; stay below.
pub(super) const MAX_FAILURES_PER_HOUR: usize = 4;
const BUCKET_WINDOW_SECS: f64 = 3.0 * 3600.0;

/// A stable point in the CA's window, spread by domain (RFC 9773 asks for a
/// random one; a hash spreads as well and survives restarts).
pub(super) fn time_in_window(w: &RenewalWindow, domain: &str) -> i64 {
    let span = (w.end - w.start).max(0) as u64;
    w.start + (fnv1a(domain.as_bytes()) % (span + 1)) as i64
}

/// Two thirds into the lifetime (half for lifetimes under 10 days, as Let's
/// Encrypt advises), minus a stable per-domain jitter of up to 1/20 of the
/// lifetime so that certificates issued together do not renew together.
pub(super) fn renew_at(record: &CertRecord, domain: &str) -> i64 {
    let lifetime = (record.not_after - record.not_before).max(1);
    let fraction_num = if lifetime < 10 * 86_400 { 1 } else { 2 };
    let fraction_den = if lifetime < 10 * 86_400 { 2 } else { 3 };
    let jitter_range = (lifetime / 20).max(1);
    let jitter = (fnv1a(domain.as_bytes()) % jitter_range as u64) as i64;
    record.not_before + lifetime * fraction_num / fraction_den - jitter
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Records one failure in `status` and returns when to try next: backoff by
/// consecutive failures, the CA's own wait, and the hourly budget.
pub(super) fn record_failure(
    status: &mut DomainStatus,
    now: i64,
    retry_after_secs: Option<u64>,
) -> i64 {
    status.failures += 1;
    status.recent_failures.retain(|t| now - t < 3_600);
    status.recent_failures.push(now);
    let next = next_attempt(status, now, retry_after_secs);
    status.next_attempt = Some(next);
    next
}

/// Backoff by consecutive failures, the CA's own wait, and the hourly budget.
pub(super) fn next_attempt(status: &DomainStatus, now: i64, retry_after_secs: Option<u64>) -> i64 {
    let step = (status.failures.max(1) as usize - 1).min(BACKOFF_SECS.len() - 1);
    let mut next = now + BACKOFF_SECS[step];
    if let Some(wait) = retry_after_secs {
        next = next.max(now + wait as i64);
    }
    if status.recent_failures.len() >= MAX_FAILURES_PER_HOUR {
        let oldest = status.recent_failures.iter().copied().min().unwrap_or(now);
        next = next.max(oldest + 3_600);
    }
    next
}

/// `capacity` new orders per 3 hours, refilled continuously. Serializable:
/// the manager stores it after each order, so restarts (a crash loop
/// included) start from where the last run left off, not from a full bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    updated: i64,
}

impl TokenBucket {
    pub(super) fn new(capacity: u32, now: i64) -> TokenBucket {
        let capacity = f64::from(capacity.max(1));
        TokenBucket {
            capacity,
            tokens: capacity,
            per_sec: capacity / BUCKET_WINDOW_SECS,
            updated: now,
        }
    }

    /// A stored bucket, refitted to the configured capacity (which may have
    /// changed since): never more tokens than the stored state had.
    pub(super) fn restored(stored: &[u8], capacity: u32, now: i64) -> Option<TokenBucket> {
        let old: TokenBucket = serde_json::from_slice(stored).ok()?;
        let mut bucket = TokenBucket::new(capacity, now);
        if !(old.tokens.is_finite() && old.updated <= now) {
            return None;
        }
        bucket.tokens = old.tokens.clamp(0.0, bucket.capacity);
        bucket.updated = old.updated;
        Some(bucket)
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("TokenBucket serializes: numbers")
    }

    pub(super) fn take(&mut self, now: i64) -> bool {
        self.tokens =
            (self.tokens + (now - self.updated).max(0) as f64 * self.per_sec).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Returns a token taken for an order that was not placed after all
    /// (another node held the domain's lease).
    pub(super) fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.capacity);
    }

    pub(super) fn next_token_at(&self) -> i64 {
        self.updated + ((1.0 - self.tokens).max(0.0) / self.per_sec).ceil() as i64
    }
}
