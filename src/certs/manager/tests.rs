use super::schedule::*;
use crate::certs::RenewalWindow;
use crate::store::{CertRecord, DomainStatus};

fn record(not_before: i64, lifetime: i64) -> CertRecord {
    CertRecord {
        names: vec![],
        key_pem: String::new(),
        chain_pem: String::new(),
        not_before,
        not_after: not_before + lifetime,
        issuer: String::new(),
        source: String::new(),
    }
}

#[test]
fn renewal_at_two_thirds_with_bounded_jitter() {
    let day = 86_400;
    let r = record(0, 90 * day);
    let at = renew_at(&r, "example.com");
    assert!(at <= 60 * day && at > 60 * day - 90 * day / 20, "{at}");
    assert_eq!(at, renew_at(&r, "example.com"), "stable");
    let short = record(0, 6 * day);
    assert!(renew_at(&short, "example.com") <= 3 * day);
}

#[test]
fn backoff_grows_and_respects_the_hourly_budget() {
    let now = 1_000_000;
    let mut s = DomainStatus {
        failures: 1,
        recent_failures: vec![now],
        ..Default::default()
    };
    assert_eq!(next_attempt(&s, now, None), now + 60);
    s.failures = 2;
    assert_eq!(next_attempt(&s, now, None), now + 600);
    s.failures = 9;
    assert_eq!(next_attempt(&s, now, None), now + 86_400);
    s.failures = 1;
    assert_eq!(next_attempt(&s, now, Some(7200)), now + 7200);
    // Four failures within the hour: the next one waits until the oldest is an hour old.
    s.recent_failures = vec![now - 100, now - 50, now - 10, now];
    assert_eq!(next_attempt(&s, now, None), now - 100 + 3_600);
}

#[test]
fn ari_time_is_inside_the_window_and_stable() {
    let w = RenewalWindow {
        start: 1_000,
        end: 2_000,
        recheck_secs: 3_600,
    };
    for d in ["a.example", "b.example", "c.example"] {
        let t = time_in_window(&w, d);
        assert!((1_000..=2_000).contains(&t));
        assert_eq!(t, time_in_window(&w, d));
    }
    let point = RenewalWindow {
        start: 5,
        end: 5,
        recheck_secs: 1,
    };
    assert_eq!(time_in_window(&point, "x.example"), 5);
}

#[test]
fn bucket_limits_new_orders_per_window() {
    let mut b = TokenBucket::new(300, 0);
    assert!((0..300).all(|_| b.take(0)));
    assert!(!b.take(0));
    assert_eq!(b.next_token_at(), 36);
    assert!(b.take(36));
    assert!(!b.take(36));
}

#[test]
fn stored_bucket_survives_a_restart() {
    let mut b = TokenBucket::new(3, 100);
    assert!(b.take(100) && b.take(100) && b.take(100));
    let bytes = b.to_bytes();
    // A crash and restart a second later: still empty, not refilled to 3.
    let mut restored = TokenBucket::restored(&bytes, 3, 101).unwrap();
    assert!(!restored.take(101));
    // A smaller configured capacity caps what was stored.
    let full = TokenBucket::new(300, 0).to_bytes();
    let mut capped = TokenBucket::restored(&full, 2, 0).unwrap();
    assert!(capped.take(0) && capped.take(0) && !capped.take(0));
    // Garbage or a clock from the future: start fresh.
    assert!(TokenBucket::restored(b"not json", 3, 0).is_none());
    assert!(TokenBucket::restored(&bytes, 3, 50).is_none());
}

#[test]
fn failures_are_counted_in_memory() {
    let mut s = DomainStatus::default();
    let now = 10_000;
    assert_eq!(record_failure(&mut s, now, None), now + 60);
    assert_eq!(record_failure(&mut s, now + 60, None), now + 60 + 600);
    assert_eq!(s.failures, 2);
    assert_eq!(s.next_attempt, Some(now + 660));
    // The CA's Retry-After wins when longer.
    assert_eq!(record_failure(&mut s, now, Some(20_000)), now + 20_000);
}

/// The counts readiness reports: domains, valid certificates, orders, and
/// a store that cannot be written. Local CA, real sled store in a temp dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_follow_issuance() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = crate::config::parse(&format!(
        r#"
[server]
state_dir = "{}"
[tls]
mode = "local"
[[provider]]
id = "a.example"
name = "A"
domains = ["a.example", "b.example"]
  [[provider.server]]
  type = "imap"
  host = "imap.a.example"
  [[provider.server]]
  type = "smtp"
  host = "smtp.a.example"
"#,
        state.display()
    ))
    .unwrap();
    let store: Arc<dyn crate::store::Store> =
        Arc::new(crate::store::SledStore::open(&state).unwrap());
    let issuer =
        crate::certs::local::LocalIssuer::open(&store, &state, crate::config::KeyType::EcdsaP256)
            .unwrap();
    let resolver = Arc::new(crate::tls::CertResolver::new());
    let (_config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(config));
    let manager = super::Manager::new(
        store,
        resolver.clone(),
        Arc::new(issuer),
        config_rx,
        state.clone(),
    );
    let mut counts = manager.status_counts();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(manager.run(4, 300, shutdown.clone()));
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        counts.wait_for(|c| c.certificates_valid == 2),
    )
    .await
    .expect("both domains issued")
    .map(|c| *c)
    .unwrap();
    assert_eq!(
        done,
        super::StatusCounts {
            domains: 2,
            certificates_valid: 2,
            orders_in_flight: 0,
            orders_queued: 0,
            failing: 0,
            state_write_failing: false,
        }
    );
    assert!(resolver.domain_key("b.example").is_some());
    shutdown.cancel();
    task.await.unwrap();
}
