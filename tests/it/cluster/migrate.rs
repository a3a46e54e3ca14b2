//! sled -> PostgreSQL: a sled node's certificate, exported with `mailconfd
//! state export` and imported into PostgreSQL with `state import`, is
//! served by a PostgreSQL node without a new order. Then both nodes serve
//! the same certificate, which makes them a fair pair for the cost per
//! request (figures only): requests must not touch the database.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use super::client::{LoadFigures, Target, load};
use super::harness::{Cluster, Node, Setup, arg, run_binary, tools};
use super::{ISSUE_TIMEOUT, SERIAL, SPREAD_TIMEOUT, orders_metric, wait_served_everywhere};
use crate::acme::names;
use crate::pebble::PebbleOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sled_store_moved_to_postgres_is_served_without_a_new_order() {
    if !tools() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let setup = Setup {
        challenge: "tls-alpn-01",
        pebble: PebbleOptions::default(),
        lease_secs: 30,
        encrypt: false,
        password: false,
    };
    let Some(c) = Cluster::start(setup).await else {
        return;
    };
    let domain = "m1.test";
    let (https, root) = (c.world.https_port, c.world.pebble.root.clone());
    for name in names(domain) {
        c.world.pebble.set_a(&name, &["127.0.0.2"]);
    }
    let mut sled = Node::new(&c.world, "sled", "127.0.0.2", &[domain], "");
    sled.spawn();
    let (before, _) =
        wait_served_everywhere(&[&sled], https, &[domain], &root, ISSUE_TIMEOUT).await;
    assert_eq!(c.world.pebble.orders(), 1);
    sled.stop();

    let dump = c.world.dir.path().join("state.dump");
    let out = run_binary(&[
        "state".as_ref(),
        "export".as_ref(),
        "-c".as_ref(),
        arg(&sled.config_path()),
        "-o".as_ref(),
        arg(&dump),
    ]);
    assert!(out.status.success(), "state export: {out:?}");
    let mode = std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the dump holds private keys");

    let mut pg = c.node("pg", "127.0.0.3", &[domain]);
    let out = run_binary(&[
        "state".as_ref(),
        "import".as_ref(),
        "-c".as_ref(),
        arg(&pg.config_path()),
        arg(&dump),
    ]);
    assert!(out.status.success(), "state import: {out:?}");
    pg.spawn();
    let (after, _) = wait_served_everywhere(&[&pg], https, &[domain], &root, SPREAD_TIMEOUT).await;
    assert_eq!(
        after, before,
        "the PostgreSQL node serves the imported certificate"
    );
    assert_eq!(c.world.pebble.orders(), 1, "a new order after the import");
    assert_eq!(orders_metric(&[&pg], "ok"), 0.0);
    let rows = c
        .query(&format!(
            "SELECT node FROM mailconfd_certs WHERE domain = '{domain}'"
        ))
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");

    // The sled node again, from its own store: the same certificate on both
    // backends, so the load runs below differ in the store only.
    sled.spawn();
    let (again, _) =
        wait_served_everywhere(&[&sled], https, &[domain], &root, SPREAD_TIMEOUT).await;
    assert_eq!(again, before);
    for node in [&sled, &pg] {
        let (keepalive, k_cpu) = measure(node, https, domain, &root, false).await;
        let (fresh, f_cpu) = measure(node, https, domain, &root, true).await;
        eprintln!(
            "FIGURE cost per request, {} node: kept-alive {keepalive}, daemon CPU {:.1} us/request; \
             new TLS connection each {fresh}, daemon CPU {:.1} us/request",
            node.name,
            per_request_us(k_cpu, &keepalive),
            per_request_us(f_cpu, &fresh),
        );
        assert_eq!(keepalive.failed + fresh.failed, 0, "{}", node.name);
    }
}

/// One load run against `node` (after a short warm-up): its figures and
/// the daemon's CPU time during it.
async fn measure(
    node: &Node,
    https: u16,
    domain: &str,
    root: &std::path::Path,
    fresh: bool,
) -> (LoadFigures, Duration) {
    let target = Target {
        ip: node.ip.clone(),
        port: https,
        host: format!("mta-sts.{domain}"),
        path: "/.well-known/mta-sts.txt".to_owned(),
        root: root.to_owned(),
    };
    let (conns, per_conn) = if fresh { (4, 150) } else { (8, 1000) };
    load(&target, 2, 20, fresh).await;
    let cpu = node.cpu_time();
    let figures = load(&target, conns, per_conn, fresh).await;
    (figures, node.cpu_time() - cpu)
}

fn per_request_us(cpu: Duration, figures: &LoadFigures) -> f64 {
    cpu.as_secs_f64() * 1e6 / figures.requests.max(1) as f64
}
