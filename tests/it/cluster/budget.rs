//! `new_orders_per_3h` is Let's Encrypt's limit per account, and the nodes
//! share one account, so they draw from one bucket in the shared database.
//! Three nodes with a budget of 3 run with one domain (one token spent),
//! then a reload adds five more on every node at once: two more orders in
//! all, whichever nodes place them. (Before, each node kept its own bucket in
//! memory, seeded from the store at start: nodes running side by side each
//! refilled at the full rate, so a backlog drained at up to three times the
//! CA's limit. This short run does not reach a refill; the store test
//! `nodes_draw_new_order_tokens_from_one_bucket` shows the bucket's
//! atomicity under concurrent takes.)

use std::time::Duration;

use super::harness::{Cluster, DNS_NODES, Node, Setup, tools};
use super::{ISSUE_TIMEOUT, SERIAL, wait_served_everywhere};
use crate::pebble::PebbleOptions;

const DOMAINS: usize = 6;
const BUDGET: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_new_order_budget() {
    if !tools() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = Setup {
        challenge: "http-01",
        pebble: PebbleOptions::default(),
        lease_secs: 30,
        encrypt: false,
        password: false,
    };
    let Some(mut c) = Cluster::start(setup).await else {
        return;
    };
    let domains: Vec<String> = (1..=DOMAINS).map(|i| format!("b{i}.test")).collect();
    let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
    for (i, d) in refs.iter().enumerate() {
        c.spread_dns(i, d);
    }
    for (k, ip) in DNS_NODES.iter().enumerate() {
        let mut node = c.node(&format!("n{}", k + 2), ip, &refs[..1]);
        node.acme_extra = format!("new_orders_per_3h = {BUDGET}");
        node.write_config(&c.world, &refs[..1]);
        c.nodes.push(node);
    }
    for node in &mut c.nodes {
        node.spawn();
    }
    let nodes: Vec<&Node> = c.nodes.iter().collect();
    wait_served_everywhere(
        &nodes,
        c.world.https_port,
        &refs[..1],
        &c.world.pebble.root,
        ISSUE_TIMEOUT,
    )
    .await;
    // Every node's config gains four domains, and every node reloads at once.
    for node in &c.nodes {
        node.write_config(&c.world, &refs);
    }
    for node in &c.nodes {
        node.signal(nix::sys::signal::Signal::SIGHUP);
    }
    let deadline = std::time::Instant::now() + ISSUE_TIMEOUT;
    while stored(&c, &refs) < BUDGET {
        assert!(
            std::time::Instant::now() < deadline,
            "{} stored",
            stored(&c, &refs)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time in which an over-budget order would be placed.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let orders = c.world.pebble.orders();
    eprintln!(
        "FIGURE new-order budget: {orders} order(s) at the CA for {DOMAINS} domains on 3 nodes \
         with new_orders_per_3h = {BUDGET}; {} stored",
        stored(&c, &refs)
    );
    assert_eq!(orders, BUDGET, "orders placed by the cluster");
    assert_eq!(stored(&c, &refs), BUDGET);
    // The ordered ones reach every node; `certs` shows the rest waiting.
    let ordered: Vec<&str> = refs
        .iter()
        .copied()
        .filter(|d| c.stored_by(d).is_some())
        .collect();
    let nodes: Vec<&Node> = c.nodes.iter().collect();
    wait_served_everywhere(
        &nodes,
        c.world.https_port,
        &ordered,
        &c.world.pebble.root,
        super::SPREAD_TIMEOUT,
    )
    .await;
    let bucket = c
        .query("SELECT round(tokens) FROM mailconfd_order_buckets")
        .unwrap();
    assert_eq!(
        bucket,
        vec!["0".to_owned()],
        "tokens left in the shared bucket"
    );
}

/// How many of `domains` have a certificate in the shared database.
fn stored(c: &Cluster, domains: &[&str]) -> usize {
    domains.iter().filter(|d| c.stored_by(d).is_some()).count()
}
