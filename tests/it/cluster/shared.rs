//! Three nodes start at once against an empty database and order each
//! domain exactly once; the validations are answered by other nodes
//! (HTTP-01, so each node's request log shows who answered), and nothing
//! secret is readable in PostgreSQL (`encryption_key_file`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::harness::{Cluster, DNS_NODES, Node, Setup, tools};
use super::{ISSUE_TIMEOUT, SERIAL, orders_metric, wait_served_everywhere};
use crate::acme::names;
use crate::pebble::PebbleOptions;

pub(super) const DOMAINS: usize = 6;

/// A cluster of three nodes (n2, n3, n4) serving `DOMAINS` domains.
pub(super) struct ThreeNodes {
    pub c: Cluster,
    pub domains: Vec<String>,
    /// domain -> SHA-256 of the leaf every node serves.
    pub fingerprints: HashMap<String, String>,
    /// From the nodes' start to every node serving every domain.
    pub took: Duration,
}

/// Pebble, PostgreSQL and three nodes started at once (HTTP-01, a shared
/// encryption key); returns once every node serves every domain. None when
/// skipped.
pub(super) async fn three_nodes() -> Option<ThreeNodes> {
    let setup = Setup {
        challenge: "http-01",
        pebble: PebbleOptions::default(),
        lease_secs: 30,
        encrypt: true,
        password: false,
    };
    let mut c = Cluster::start(setup).await?;
    let domains: Vec<String> = (1..=DOMAINS).map(|i| format!("d{i}.test")).collect();
    let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
    for (i, d) in refs.iter().enumerate() {
        c.spread_dns(i, d);
    }
    for (k, ip) in DNS_NODES.iter().enumerate() {
        let node = c.node(&format!("n{}", k + 2), ip, &refs);
        c.nodes.push(node);
    }
    let started = Instant::now();
    for node in &mut c.nodes {
        node.spawn();
    }
    let three: Vec<&Node> = c.nodes.iter().collect();
    let (fingerprints, _) = wait_served_everywhere(
        &three,
        c.world.https_port,
        &refs,
        &c.world.pebble.root,
        ISSUE_TIMEOUT,
    )
    .await;
    let took = started.elapsed();
    Some(ThreeNodes {
        c,
        domains,
        fingerprints,
        took,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_starting_at_once_order_each_domain_once() {
    if !tools() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Some(ThreeNodes {
        c, domains, took, ..
    }) = three_nodes().await
    else {
        return;
    };
    let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
    let three: Vec<&Node> = c.nodes.iter().collect();
    eprintln!("FIGURE three nodes: {DOMAINS} domains served by all 3 nodes {took:.2?} after start");
    let orders = c.world.pebble.orders();
    eprintln!(
        "FIGURE three nodes: {orders} orders at the CA for {DOMAINS} domains ({:.2} per domain); \
         orders_total ok={} failed={}",
        orders as f64 / DOMAINS as f64,
        orders_metric(&three, "ok"),
        orders_metric(&three, "failed"),
    );
    assert_eq!(orders, DOMAINS, "orders at Pebble");
    assert_eq!(orders_metric(&three, "ok"), DOMAINS as f64);
    let rows = c.query("SELECT domain, node FROM mailconfd_certs").unwrap();
    assert_eq!(rows.len(), DOMAINS, "one row per domain: {rows:?}");
    // encryption_key_file: no private key readable in the database.
    let plain = c
        .query(
            "SELECT domain FROM mailconfd_certs WHERE NOT key_encrypted \
             OR position(convert_to('PRIVATE KEY', 'UTF8') in key) > 0",
        )
        .unwrap();
    assert!(plain.is_empty(), "private keys in the clear: {plain:?}");
    let accounts = c
        .query("SELECT count(*) FILTER (WHERE encrypted), count(*) FROM mailconfd_accounts")
        .unwrap();
    assert_eq!(accounts, ["1|1"], "the ACME account is stored encrypted");

    // Who answered each validation: the node its name resolves to, seen in
    // that node's request log; crossed when it is not the one that stored
    // the certificate.
    let mut crossed = 0;
    let mut by_node = std::collections::BTreeMap::<String, usize>::new();
    for (i, domain) in refs.iter().enumerate() {
        let orderer = c.stored_by(domain).expect("a mailconfd_certs row");
        assert!(
            c.nodes.iter().any(|n| n.name == orderer),
            "{domain} stored by {orderer}"
        );
        *by_node.entry(orderer.clone()).or_default() += 1;
        for (k, name) in names(domain).iter().enumerate() {
            let ip = Cluster::dns_node(i, k);
            let answering = c.nodes.iter().find(|n| n.ip == ip).unwrap();
            let host = format!("host=\"{name}:{}\"", c.world.http_port);
            let answered = answering.log().lines().any(|l| {
                l.contains(&host)
                    && l.contains("/.well-known/acme-challenge/")
                    && l.contains("status=200")
            });
            assert!(
                answered,
                "{} ({ip}) did not answer the HTTP-01 validation of {name}",
                answering.name
            );
            if answering.name != orderer {
                crossed += 1;
            }
        }
    }
    eprintln!(
        "FIGURE three nodes: orders by node {by_node:?}; {crossed} of {} validations answered by another node than the orderer",
        DOMAINS * 3
    );
    assert!(crossed > 0);
}
