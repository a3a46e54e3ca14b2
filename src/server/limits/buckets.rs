//! The rate limits' memory: a fixed table of token buckets that forgets
//! clients rather than growing with them.

/// Token-bucket slots per table (each ~40 bytes; two tables).
pub const BUCKET_SLOTS: usize = 8_192;

#[derive(Clone, Copy, Default)]
pub(super) struct Bucket {
    /// Hash of the client; 0 = empty slot.
    tag: u64,
    /// Tokens in thousandths.
    milli_tokens: u64,
    last_ms: u64,
    /// When a refusal for this client was last logged (ms + 1; 0 = never).
    logged_ms: u64,
}

pub enum Taken {
    Yes,
    No { log: bool },
}

/// Fixed-size token-bucket table, two candidate slots per client.
pub struct Buckets {
    pub(super) slots: Box<[Bucket]>,
}

impl Buckets {
    pub fn new() -> Buckets {
        Buckets {
            slots: vec![Bucket::default(); BUCKET_SLOTS].into_boxed_slice(),
        }
    }

    /// The client's slot, or the staler of its two candidates, reset for it.
    fn slot(&mut self, hash: u64, now: u64, burst: u32) -> &mut Bucket {
        let tag = hash | 1;
        let a = (hash as usize) % BUCKET_SLOTS;
        let b = ((hash >> 32) as usize ^ 0x5bd1) % BUCKET_SLOTS;
        let i = if self.slots[a].tag == tag {
            a
        } else if self.slots[b].tag == tag {
            b
        } else {
            let i = if self.slots[a].last_ms <= self.slots[b].last_ms {
                a
            } else {
                b
            };
            self.slots[i] = Bucket {
                tag,
                milli_tokens: u64::from(burst) * 1000,
                last_ms: now,
                logged_ms: 0,
            };
            i
        };
        &mut self.slots[i]
    }

    pub fn take(&mut self, hash: u64, now: u64, rate: u32, burst: u32) -> Taken {
        let b = self.slot(hash, now, burst);
        let refill = now.saturating_sub(b.last_ms) * u64::from(rate);
        b.milli_tokens = (b.milli_tokens + refill).min(u64::from(burst) * 1000);
        b.last_ms = now;
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            return Taken::Yes;
        }
        Taken::No {
            log: gate_minute(b, now),
        }
    }

    /// Once-a-minute log gate of the client's slot, without taking a token.
    pub fn should_log(&mut self, hash: u64, now: u64) -> bool {
        let tag = hash | 1;
        let a = (hash as usize) % BUCKET_SLOTS;
        let b = ((hash >> 32) as usize ^ 0x5bd1) % BUCKET_SLOTS;
        match [a, b].into_iter().find(|&i| self.slots[i].tag == tag) {
            Some(i) => gate_minute(&mut self.slots[i], now),
            // No slot: the client connected but its slot was taken over; log.
            None => true,
        }
    }
}

fn gate_minute(b: &mut Bucket, now: u64) -> bool {
    if b.logged_ms == 0 || now + 1 >= b.logged_ms + 60_000 {
        b.logged_ms = now + 1;
        true
    } else {
        false
    }
}
