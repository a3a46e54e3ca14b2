//! Three nodes start at once and order each domain once, validations
//! answered by other nodes (HTTP-01, so each node's request log shows who
//! answered); a fourth node joins and serves at once; PostgreSQL restarts
//! under client load; a new domain reaches every node; PostgreSQL down at a
//! node's start: refused without a local cache, served with one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::client::{get_once, metric, served};
use super::harness::{Cluster, DNS_NODES, Node, Setup, tools};
use super::{ISSUE_TIMEOUT, POLL, SERIAL, SPREAD_TIMEOUT, orders_metric, wait_served_everywhere};
use crate::acme::names;
use crate::pebble::PebbleOptions;

const DOMAINS: usize = 6;
/// A node restarted while PostgreSQL is down, serving from its local cache.
const CACHED_START_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_share_orders_certificates_and_ride_out_a_database_restart() {
    if !tools() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = Setup {
        challenge: "http-01",
        pebble: PebbleOptions::default(),
        lease_secs: 30,
        encrypt: true,
    };
    let Some(mut c) = Cluster::start(setup).await else {
        return;
    };
    let domains: Vec<String> = (1..=DOMAINS).map(|i| format!("d{i}.test")).collect();
    let mut refs: Vec<&str> = domains.iter().map(String::as_str).collect();
    for (i, d) in refs.iter().enumerate() {
        c.spread_dns(i, d);
    }
    let https = c.world.https_port;
    let root = c.world.pebble.root.clone();

    // (a) Three nodes start at once.
    for (k, ip) in DNS_NODES.iter().enumerate() {
        let node = c.node(&format!("n{}", k + 2), ip, &refs);
        c.nodes.push(node);
    }
    let started = Instant::now();
    for node in &mut c.nodes {
        node.spawn();
    }
    let three: Vec<&Node> = c.nodes.iter().collect();
    let (fingerprints, _) =
        wait_served_everywhere(&three, https, &refs, &root, ISSUE_TIMEOUT).await;
    eprintln!(
        "FIGURE three nodes: {DOMAINS} domains served by all 3 nodes {:.2?} after start",
        started.elapsed()
    );
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

    // (c) A fourth node joins: everything at once, no order.
    let mut fourth = c.node("n5", "127.0.0.5", &refs);
    let joined = Instant::now();
    fourth.spawn();
    let (fp4, _) = wait_served_everywhere(&[&fourth], https, &refs, &root, SPREAD_TIMEOUT).await;
    eprintln!(
        "FIGURE join: a fourth node served all {DOMAINS} domains {:.2?} after its start",
        joined.elapsed()
    );
    assert_eq!(
        fp4, fingerprints,
        "the fourth node serves the same certificates"
    );
    assert_eq!(c.world.pebble.orders(), DOMAINS, "the fourth node ordered");
    assert_eq!(orders_metric(&[&fourth], "ok"), 0.0);
    c.nodes.push(fourth);

    // (d) PostgreSQL restarts while clients keep asking every node.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let targets: Vec<(String, String)> = c
            .nodes
            .iter()
            .flat_map(|n| refs.iter().map(|d| (n.ip.clone(), format!("mta-sts.{d}"))))
            .collect();
        let (stop, ok, failures, root) = (stop.clone(), ok.clone(), failures.clone(), root.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let (ip, host) = &targets[i % targets.len()];
                match get_once(ip, https, host, "/.well-known/mta-sts.txt", &root).await {
                    Ok(200) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures
                        .lock()
                        .unwrap()
                        .push(format!("{ip} {host}: {other:?}")),
                }
                i += 1;
            }
        }));
    }
    let wait_ok = |n: usize| {
        let ok = ok.clone();
        async move {
            let deadline = Instant::now() + SPREAD_TIMEOUT;
            while ok.load(Ordering::Relaxed) < n {
                assert!(
                    Instant::now() < deadline,
                    "{n} requests within {SPREAD_TIMEOUT:?}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
    };
    wait_ok(20).await;
    let before_outage = ok.load(Ordering::Relaxed);
    c.pg.stop();
    let down = Instant::now();
    let nodes: Vec<&Node> = c.nodes.iter().collect();
    store_up_everywhere(&nodes, 0.0).await;
    eprintln!(
        "FIGURE outage: every node reported mailconfd_state_store_up 0 {:.2?} after PostgreSQL stopped",
        down.elapsed()
    );
    // Keep the database away while clients get a good number of answers.
    wait_ok(ok.load(Ordering::Relaxed) + 100).await;
    c.pg.start_again();
    let back = Instant::now();
    store_up_everywhere(&nodes, 1.0).await;
    eprintln!(
        "FIGURE outage: every node back to mailconfd_state_store_up 1 {:.2?} after PostgreSQL started",
        back.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "FIGURE outage: {} requests answered, {} from the stop to the end, {} failed",
        ok.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) - before_outage,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed during the restart: {failures:?}"
    );

    // State converges: a new domain, configured on every node at once, is
    // ordered once and reaches every node.
    let new = "d7.test";
    c.spread_dns(DOMAINS, new);
    refs.push(new);
    for node in &c.nodes {
        node.write_config(&c.world, &refs);
        node.signal(Signal::SIGHUP);
    }
    let nodes: Vec<&Node> = c.nodes.iter().collect();
    let first_served = first_served_per_node(&nodes, https, new, &root).await;
    let first = first_served.iter().min().unwrap();
    let last = first_served.iter().max().unwrap();
    eprintln!(
        "FIGURE propagation: {new} first served {first:.2?} after the reload, on every node \
         {last:.2?} after ({:.2?} from the first node to the last)",
        *last - *first
    );
    assert_eq!(c.world.pebble.orders(), DOMAINS + 1, "one order for {new}");
    let ok_total = orders_metric(&nodes, "ok");
    assert_eq!(ok_total, (DOMAINS + 1) as f64, "orders_total summed");
    let rows = c.query("SELECT domain FROM mailconfd_certs").unwrap();
    assert_eq!(rows.len(), DOMAINS + 1, "{rows:?}");

    // (f) PostgreSQL down at a node's start.
    c.pg.stop();
    let mut fresh = c.node("n6", "127.0.0.6", &refs);
    fresh.spawn();
    let status = fresh
        .wait_exit(SPREAD_TIMEOUT)
        .expect("a node without a cache exits when PostgreSQL is down");
    let log = fresh.log();
    assert!(!status.success(), "{status}: {log}");
    assert!(
        log.contains("state.url") || log.contains(&format!("127.0.0.1:{}", c.pg.port)),
        "the error names [state].url: {log}"
    );
    eprintln!(
        "FIGURE start without database: exit {status}, last line: {}",
        log.lines().last().unwrap_or("")
    );
    let n2 = &mut c.nodes[0];
    n2.stop();
    let restarted = Instant::now();
    n2.spawn();
    let (fp2, _) = wait_served_everywhere(&[&*n2], https, &refs, &root, CACHED_START_TIMEOUT).await;
    eprintln!(
        "FIGURE start without database: {} served all {} domains from its local cache {:.2?} after start",
        n2.name,
        refs.len(),
        restarted.elapsed()
    );
    for (d, fp) in &fingerprints {
        assert_eq!(fp2.get(d), Some(fp), "{d} from the local cache");
    }
}

/// Waits until every node's `mailconfd_state_store_up` reads `value`.
async fn store_up_everywhere(nodes: &[&Node], value: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in nodes {
        loop {
            let v = metric(&node.ip, node.metrics_port, "mailconfd_state_store_up");
            if v == Some(value) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: mailconfd_state_store_up is {v:?}, not {value}, within 60 s",
                node.name
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Polls every node for every name of `domain` at once; when each node
/// first served all of them, since the call.
async fn first_served_per_node(
    nodes: &[&Node],
    https: u16,
    domain: &str,
    root: &std::path::Path,
) -> Vec<Duration> {
    let started = Instant::now();
    let mut done: Vec<Option<Duration>> = vec![None; nodes.len()];
    while done.iter().any(Option::is_none) {
        for (k, node) in nodes.iter().enumerate() {
            if done[k].is_some() {
                continue;
            }
            let mut all = true;
            for name in names(domain) {
                all &= served(&node.ip, https, &name, root).await.is_some();
            }
            if all {
                done[k] = Some(started.elapsed());
            }
        }
        assert!(
            started.elapsed() < ISSUE_TIMEOUT,
            "{domain} not on every node within {ISSUE_TIMEOUT:?}: {done:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.into_iter().map(Option::unwrap).collect()
}
