//! Issue 11, processes and the CA failing: kill -9 at random points 50
//! times in a row, and the CA unreachable for a while and then back. Real
//! binary, real Pebble; figures go to stderr (`--nocapture`).

use std::time::{Duration, Instant};

use crate::acme::{
    Binary, ISSUE_TIMEOUT, WAIT_TIMEOUT, World, ca_tools, certs_command, handshake, until,
};
use crate::pebble::free_tcp_port;

/// A small xorshift generator: the kill points, reproducible from the seed
/// the test prints (`KILL9_SEED=...`).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The fault "kill -9 at random points during issuance and storage, 50
/// times in a row": every restart comes up and serves what was stored
/// before, every certificate logged as deployed is there at the next start
/// (stored before it is served), no restart places more than one order per
/// domain, and afterwards every domain is issued and nothing is corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_fifty_times_at_random_points() {
    if !ca_tools() {
        return;
    }
    const RESTARTS: usize = 50;
    // Enough domains (two orders at a time, about a second each) that most
    // kills land while orders run or certificates are being stored.
    let owned: Vec<String> = (1..=24).map(|n| format!("k{n}.test")).collect();
    let domains: Vec<&str> = owned.iter().map(String::as_str).collect();
    let (http_port, https_port) = (free_tcp_port(), free_tcp_port());
    let world = World::new("tls-alpn-01", http_port, https_port).await;
    world.write_config(&domains, 2);
    let mut seed = std::env::var("KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("KILL9_SEED={seed}");
    let started = Instant::now();
    let mut orders_before = 0;
    let mut deployed_so_far = std::collections::HashSet::new();
    let mut restored_per_start = Vec::new();
    for i in 0..RESTARTS {
        let daemon = Binary::start(&world, &format!("run{i}.log"));
        let restored: usize = until("the restart comes up", WAIT_TIMEOUT, || async {
            let log = daemon.log();
            if !log.contains("scheme=\"https\"") {
                return None;
            }
            log.split("stored certificates deployed deployed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .await;
        assert!(
            restored >= deployed_so_far.len(),
            "start {i}: {restored} restored, {} were deployed before: {}",
            deployed_so_far.len(),
            daemon.log()
        );
        restored_per_start.push(restored);
        // It serves what it restored.
        for d in &deployed_so_far {
            handshake(
                https_port,
                Some(&format!("autoconfig.{d}")),
                &world.pebble.root,
            )
            .await
            .unwrap_or_else(|e| panic!("start {i}: {d} not served: {e}"));
        }
        let delay = Duration::from_millis(xorshift(&mut seed) % 1_200);
        tokio::time::sleep(delay).await;
        let log = daemon.log();
        daemon.kill9();
        for &d in &domains {
            if log.contains(&format!("certificate deployed domain={d} ")) {
                deployed_so_far.insert(d);
            }
            let orders = log
                .matches(&format!("ordering certificate domain={d} "))
                .count();
            assert!(orders <= 1, "start {i}: {orders} orders for {d}: {log}");
        }
        assert!(!log.contains("corrupt"), "start {i}: {log}");
        let orders = world.pebble.orders();
        assert!(
            orders - orders_before <= domains.len(),
            "start {i}: {} orders for {} domains",
            orders - orders_before,
            domains.len()
        );
        orders_before = orders;
    }
    let daemon = Binary::start(&world, "final.log");
    for &d in &domains {
        world.wait_served(d, ISSUE_TIMEOUT).await;
    }
    until("every domain valid in certs.json", WAIT_TIMEOUT, || async {
        let report = world.report();
        (report.len() == domains.len() && report.iter().all(|r| r["state"] == "valid"))
            .then_some(())
    })
    .await;
    daemon.stop().await;
    let table = certs_command(&world);
    assert_eq!(
        table.matches("state:       valid").count(),
        domains.len(),
        "{table}"
    );
    eprintln!(
        "FIGURE kill -9 x{RESTARTS} in {:?}: {} orders at the CA for {} domains, \
         certificates restored at each start: {restored_per_start:?}",
        started.elapsed(),
        world.pebble.orders(),
        domains.len()
    );
}

/// The fault "the CA unreachable, then back": the old certificate keeps
/// serving, the failed order is retried only after its backoff (60 s), each
/// failure is one log line, and issuance resumes with the CA back (a fresh
/// Pebble on the same ports, which knows neither our account nor its
/// earlier root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_unreachable_then_back_resumes_after_the_backoff() {
    if !ca_tools() {
        return;
    }
    let (http_port, https_port) = (free_tcp_port(), free_tcp_port());
    let mut world = World::new("tls-alpn-01", http_port, https_port).await;
    world.write_config(&["ca-back-old.test"], 5);
    let daemon = Binary::start(&world, "daemon.log");
    let old_leaf = world.wait_served("ca-back-old.test", ISSUE_TIMEOUT).await;
    let old_root = std::fs::read(&world.pebble.root).unwrap();

    world.pebble.kill_ca();
    world.write_config(&["ca-back-old.test", "ca-back-new.test"], 5);
    daemon.signal("HUP");
    let failed_at = until("the first failure", WAIT_TIMEOUT, || async {
        daemon
            .log()
            .contains("certificate order failed")
            .then(Instant::now)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart = world.pebble.dir.path().join("old-root.pem");
    std::fs::write(&restart, &old_root).unwrap();
    let pebble = &mut world.pebble;
    tokio::task::block_in_place(|| pebble.restart_ca());
    // The old certificate serves throughout (checked against the old root).
    assert_eq!(
        handshake(https_port, Some("autoconfig.ca-back-old.test"), &restart)
            .await
            .unwrap()[0],
        old_leaf
    );
    // Backoff 60 s after the first failure, then the order goes through.
    for name in crate::acme::names("ca-back-new.test") {
        until(
            &format!("{name} issued by the CA back"),
            Duration::from_secs(120),
            || async {
                handshake(https_port, Some(&name), &world.pebble.root)
                    .await
                    .ok()
            },
        )
        .await;
    }
    let resumed_after = failed_at.elapsed();
    let log = daemon.log();
    let attempts = log
        .matches("ordering certificate domain=ca-back-new.test ")
        .count();
    let failures = log.matches("certificate order failed").count();
    eprintln!(
        "FIGURE CA back: issued {resumed_after:?} after the first failure, {attempts} orders, {failures} failure lines"
    );
    assert_eq!(attempts, 2, "{log}");
    assert_eq!(failures, 1, "{log}");
    assert!(
        resumed_after >= Duration::from_secs(55),
        "{resumed_after:?}"
    );
    assert!(
        log.contains("the CA does not know the stored ACME account"),
        "{log}"
    );
    daemon.stop().await;
    let table = certs_command(&world);
    assert_eq!(table.matches("state:       valid").count(), 2, "{table}");
}
