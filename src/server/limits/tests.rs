use super::*;

fn limits(f: impl FnOnce(&mut LimitsConfig)) -> Arc<Limits> {
    let mut c = LimitsConfig::default();
    f(&mut c);
    Arc::new(Limits::new(c))
}

#[test]
fn ipv6_counts_by_prefix_ipv4_by_address() {
    let k = |s: &str, p| ClientKey::new(s.parse().unwrap(), p);
    assert_eq!(k("2001:db8:1:2::1", 64), k("2001:db8:1:2:ffff::9", 64));
    assert_ne!(k("2001:db8:1:2::1", 64), k("2001:db8:1:3::1", 64));
    assert_ne!(k("2001:db8:1:2::1", 128), k("2001:db8:1:2::2", 128));
    assert_eq!(k("2001:db8:1:2::1", 48), k("2001:db8:1:ff::1", 48));
    assert_ne!(k("192.0.2.1", 64), k("192.0.2.2", 64));
    assert_eq!(k("::ffff:192.0.2.1", 64), k("192.0.2.1", 64));
    assert_ne!(k("::", 0), k("0.0.0.0", 0));
}

#[test]
fn per_client_cap_is_enforced_and_released() {
    let l = limits(|c| c.max_connections_per_client = 3);
    let ip: IpAddr = "2001:db8::1".parse().unwrap();
    let same_64: IpAddr = "2001:db8::2".parse().unwrap();
    let held: Vec<_> = (0..3)
        .map(|_| l.admit_client(l.key(ip), ip).unwrap())
        .collect();
    assert!(l.admit_client(l.key(same_64), same_64).is_none());
    let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
    assert!(l.admit_client(l.key(other), other).is_some());
    drop(held);
    assert!(l.admit_client(l.key(same_64), same_64).is_some());
    assert!(l.sketch.iter().all(|c| c.load(Ordering::Relaxed) == 0));
}

#[test]
fn token_bucket_refuses_beyond_burst_and_refills() {
    let mut b = Buckets::new();
    let (rate, burst) = (10, 5);
    for _ in 0..5 {
        assert!(matches!(b.take(42, 0, rate, burst), Taken::Yes));
    }
    assert!(matches!(
        b.take(42, 0, rate, burst),
        Taken::No { log: true }
    ));
    assert!(matches!(
        b.take(42, 50, rate, burst),
        Taken::No { log: false }
    ));
    // 100 ms at 10/s is one token.
    assert!(matches!(b.take(42, 150, rate, burst), Taken::Yes));
    assert!(matches!(
        b.take(42, 150, rate, burst),
        Taken::No { log: false }
    ));
    // Another client is not affected.
    assert!(matches!(b.take(7, 150, rate, burst), Taken::Yes));
    // Logged again a minute later.
    assert!(matches!(b.take(42, 60_150, rate, burst), Taken::Yes));
    for _ in 0..4 {
        let _ = b.take(42, 60_150, rate, burst);
    }
    assert!(matches!(
        b.take(42, 60_150, rate, burst),
        Taken::No { log: true }
    ));
}

#[test]
fn table_does_not_grow_with_clients() {
    let l = limits(|c| c.connection_burst = 1);
    for i in 0..100_000u32 {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
        l.allow_connection(l.key(ip), ip);
    }
    assert_eq!(
        l.connection_rate.lock().unwrap().slots.len(),
        buckets::BUCKET_SLOTS
    );
}

#[test]
fn log_budget_caps_lines_per_minute() {
    let mut b = LogBudget::default();
    let allowed = (0..100).filter(|_| b.allow(0).is_some()).count();
    assert_eq!(allowed as u32, LOG_LINES_PER_MINUTE);
    assert_eq!(b.allow(1), Some(100 - LOG_LINES_PER_MINUTE));
}

#[tokio::test]
async fn pressure_turns_on_and_off() {
    let l = limits(|c| c.max_connections = 10);
    let rx = l.pressure();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(l.try_global().unwrap());
    }
    assert!(*rx.borrow());
    assert!(l.try_global().is_none());
    held.truncate(8);
    assert!(*rx.borrow(), "2 of 10 free is still under 25%");
    held.clear();
    assert!(!*rx.borrow());
}
