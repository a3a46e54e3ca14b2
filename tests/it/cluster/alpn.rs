//! TLS-ALPN-01 across nodes: each name of a domain resolves to another of
//! three nodes, so whichever node orders, two of its three validations are
//! TLS handshakes (ALPN `acme-tls/1`) on nodes that must find the answer in
//! the shared store. Each node counts them in its own metrics. PostgreSQL
//! wants a password here, which the nodes read from `password_file`.

use std::time::Instant;

use super::client::metric;
use super::harness::{Cluster, DNS_NODES, Node, Setup, tools};
use super::{ISSUE_TIMEOUT, SERIAL, orders_metric, wait_served_everywhere};
use crate::pebble::PebbleOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_alpn_01_validations_are_answered_by_any_node() {
    if !tools() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = Setup {
        challenge: "tls-alpn-01",
        pebble: PebbleOptions::default(),
        lease_secs: 30,
        encrypt: false,
        password: true,
    };
    let Some(mut c) = Cluster::start(setup).await else {
        return;
    };
    let domains = ["a1.test", "a2.test", "a3.test"];
    for (i, d) in domains.iter().enumerate() {
        c.spread_dns(i, d);
    }
    for (k, ip) in DNS_NODES.iter().enumerate() {
        let node = c.node(&format!("n{}", k + 2), ip, &domains);
        c.nodes.push(node);
    }
    let started = Instant::now();
    for node in &mut c.nodes {
        node.spawn();
    }
    let nodes: Vec<&Node> = c.nodes.iter().collect();
    wait_served_everywhere(
        &nodes,
        c.world.https_port,
        &domains,
        &c.world.pebble.root,
        ISSUE_TIMEOUT,
    )
    .await;
    let answered: Vec<(String, f64)> = nodes
        .iter()
        .map(|n| {
            let series = "mailconfd_tls_handshakes_total{result=\"acme_challenge\",";
            (
                n.name.clone(),
                metric(&n.ip, n.metrics_port, series).unwrap_or(0.0),
            )
        })
        .collect();
    let stored: Vec<String> = domains
        .iter()
        .map(|d| format!("{d}: {:?}", c.stored_by(d)))
        .collect();
    eprintln!(
        "FIGURE tls-alpn-01: {} domains on 3 nodes in {:.2?}, {} orders at the CA, orders_total \
         failed={}; acme-tls/1 handshakes per node {answered:?}; stored by {stored:?}",
        domains.len(),
        started.elapsed(),
        c.world.pebble.orders(),
        orders_metric(&nodes, "failed"),
    );
    assert_eq!(
        c.world.pebble.orders(),
        domains.len(),
        "one order per domain"
    );
    // Every node is the DNS target of one name per domain: each answered
    // validations, most of them for orders another node placed.
    for (name, count) in &answered {
        assert!(*count > 0.0, "{name} answered no TLS-ALPN-01 validation");
    }
}
