//! A running three-node cluster: a fourth node joins and serves at once;
//! PostgreSQL restarts while clients keep asking every node; a new domain
//! reaches every node; PostgreSQL down at a node's start: refused without a
//! local cache, served with one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::client::{get_once, metric, served};
use super::harness::{Node, tools};
use super::shared::{DOMAINS, ThreeNodes, three_nodes};
use super::{ISSUE_TIMEOUT, POLL, SERIAL, SPREAD_TIMEOUT, orders_metric, wait_served_everywhere};
use crate::acme::names;

/// A node restarted while PostgreSQL is down, serving from its local cache.
const CACHED_START_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM to exit while PostgreSQL is down: the 10 s connection grace, a
/// store flush that cannot reach the database, and room for a loaded box.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_a_database_restart_a_new_domain_and_a_start_without_the_database() {
    if !tools() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Some(ThreeNodes {
        mut c,
        domains,
        fingerprints,
        ..
    }) = three_nodes().await
    else {
        return;
    };
    let mut refs: Vec<&str> = domains.iter().map(String::as_str).collect();
    let https = c.world.https_port;
    let root = c.world.pebble.root.clone();
    // Whatever the start cost (a failed order is retried): counted from here.
    let orders = c.world.pebble.orders();
    let ok_before = orders_metric(&c.nodes.iter().collect::<Vec<_>>(), "ok");

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
    assert_eq!(c.world.pebble.orders(), orders, "the fourth node ordered");
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
    assert_eq!(c.world.pebble.orders(), orders + 1, "one order for {new}");
    let ok_total = orders_metric(&nodes, "ok");
    assert_eq!(ok_total, ok_before + 1.0, "orders_total summed");
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
    // A node that crashes during the outage comes back from its cache.
    let n3 = &mut c.nodes[1];
    n3.kill9();
    let restarted = Instant::now();
    n3.spawn();
    let (fp3, _) = wait_served_everywhere(&[&*n3], https, &refs, &root, CACHED_START_TIMEOUT).await;
    eprintln!(
        "FIGURE start without database: {} served all {} domains from its local cache {:.2?} after start",
        n3.name,
        refs.len(),
        restarted.elapsed()
    );
    for (d, fp) in &fingerprints {
        assert_eq!(fp3.get(d), Some(fp), "{d} from the local cache");
    }
    // And a clean stop still ends the process while the database is away.
    let n2 = &mut c.nodes[0];
    n2.signal(Signal::SIGTERM);
    let asked = Instant::now();
    let status = n2.wait_exit(STOP_TIMEOUT);
    eprintln!(
        "FIGURE stop without database: {} after SIGTERM: {status:?} within {:.2?}",
        n2.name,
        asked.elapsed()
    );
    let status = status.unwrap_or_else(|| {
        panic!(
            "{} still running {STOP_TIMEOUT:?} after SIGTERM with PostgreSQL down",
            n2.name
        )
    });
    assert!(status.success(), "{}: {status}", n2.name);
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
