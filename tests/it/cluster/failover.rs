//! The node that holds a domain's order lease is killed (SIGKILL) while its
//! order is open at the CA; another node takes the lease once it expires and
//! finishes that same order (its URL is recorded on the lease): no second
//! order at the CA. Pebble's validator sleeps a random 0-9 s per
//! validation here, which keeps the order open long enough to kill in it.

use std::time::{Duration, Instant};

use super::harness::{Cluster, DNS_NODES, Node, Setup, tools};
use super::{POLL, SERIAL, orders_metric, wait_served_everywhere};
use crate::acme::names;
use crate::pebble::PebbleOptions;

const LEASE_SECS: u64 = 5;
/// The lease, a new order with Pebble's VA sleeps, a loaded box.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_node_finishes_the_order_of_a_killed_node() {
    if !tools() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = Setup {
        challenge: "tls-alpn-01",
        pebble: PebbleOptions {
            va_sleep_secs: Some(10),
            ..PebbleOptions::default()
        },
        lease_secs: LEASE_SECS,
        encrypt: false,
        password: false,
    };
    let Some(mut c) = Cluster::start(setup).await else {
        return;
    };
    let domain = "f1.test";
    c.spread_dns(0, domain);
    for (k, ip) in DNS_NODES.iter().enumerate() {
        let node = c.node(&format!("n{}", k + 2), ip, &[domain]);
        c.nodes.push(node);
    }
    for node in &mut c.nodes {
        node.spawn();
    }

    // Whoever takes the lease orders; from now on every name resolves to
    // one of the others (as a hoster drops a dead node from DNS), so the
    // order can still validate once its owner is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    let owner = loop {
        if let Some(owner) = c.lease_owner(domain) {
            break owner;
        }
        assert!(
            Instant::now() < deadline,
            "no mailconfd_leases row for {domain} within 60 s: {:?}",
            c.query("SELECT * FROM mailconfd_leases")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let survivor = c
        .nodes
        .iter()
        .find(|n| n.name != owner)
        .map(|n| n.ip.clone())
        .unwrap();
    for name in names(domain) {
        c.world.pebble.set_a(&name, &[&survivor]);
    }

    // Mid-order: Pebble's validator has taken a challenge of this order.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.world.pebble.validations_sleeping() == 0 {
        assert!(
            Instant::now() < deadline,
            "no validation started within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let victim = c.nodes.iter().position(|n| n.name == owner).unwrap();
    c.nodes[victim].kill9();
    let killed = Instant::now();
    let killed_at = time::OffsetDateTime::now_utc();
    assert_eq!(
        c.stored_by(domain),
        None,
        "the order ended before the kill (all of Pebble's VA sleeps were short); rerun"
    );
    let orders_at_kill = c.world.pebble.orders();

    let rest: Vec<&Node> = c.nodes.iter().filter(|n| n.running()).collect();
    let (_, _) = wait_served_everywhere(
        &rest,
        c.world.https_port,
        &[domain],
        &c.world.pebble.root,
        FAILOVER_TIMEOUT,
    )
    .await;
    let failover = killed.elapsed();
    let stored_by = c.stored_by(domain).expect("a mailconfd_certs row");
    let orders = c.world.pebble.orders();
    let took_over = c
        .nodes
        .iter()
        .find(|n| n.name == stored_by)
        .and_then(|n| first_resume_after(&n.log(), domain, killed_at))
        .map_or("(not logged)".to_owned(), |d| format!("{d:.2?}"));
    eprintln!(
        "FIGURE failover: {owner} killed mid-order (lease_secs {LEASE_SECS}); {stored_by} \
         took the order over {took_over} after the kill, both survivors served {failover:.2?} \
         after the kill; orders at the CA: {orders_at_kill} at the kill, {orders} in all; \
         survivors' orders_total ok={} failed={}",
        orders_metric(&rest, "ok"),
        orders_metric(&rest, "failed"),
    );
    assert_ne!(stored_by, owner, "stored by the dead node");
    assert!(rest.iter().any(|n| n.name == stored_by), "{stored_by}");
    // The survivor finished the dead node's order (recorded on the lease)
    // instead of placing another.
    assert_eq!(
        orders, orders_at_kill,
        "a new order was placed after the kill"
    );
    let survivor = rest.iter().find(|n| n.name == stored_by).unwrap();
    assert!(
        survivor
            .log()
            .contains("finishing the order a node that stopped left behind"),
        "{}",
        survivor.log()
    );
    // The order ended: its lease is released, not left to a dead owner.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.lease_owner(domain).is_some() {
        assert!(
            Instant::now() < deadline,
            "lease on {domain} still held: {:?}",
            c.query("SELECT * FROM mailconfd_leases")
        );
        tokio::time::sleep(POLL).await;
    }
}

/// How long after `since` the first "finishing the order" line for
/// `domain` in a node's log came (log timestamps are RFC 3339, UTC).
fn first_resume_after(log: &str, domain: &str, since: time::OffsetDateTime) -> Option<Duration> {
    let wanted = format!("domain={domain} ");
    log.lines()
        .filter(|l| l.contains("finishing the order") && l.contains(&wanted))
        .filter_map(|l| {
            let stamp = l.split_whitespace().next()?;
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
        })
        .find(|t| *t >= since)
        .map(|t| (t - since).unsigned_abs())
}
