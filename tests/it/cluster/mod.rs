//! Issue 15: several nodes share certificates, challenges and order leases
//! through PostgreSQL. Real components only: PostgreSQL from Debian's
//! packages started into a temp dir, Pebble with pebble-challtestsrv whose
//! A records send each name's validation to a node of its own (not the one
//! that ordered), and the real binary on 127.0.0.2, .3, .4 (.5 joins
//! later), all on the same ports. Figures (orders per domain, failover time,
//! time for a certificate to reach every node, cost per request) are printed
//! as `FIGURE` lines, never asserted.
//!
//! - `shared`: three nodes start at once: one order per domain, validations
//!   answered across nodes, keys encrypted at rest.
//! - `outage`: a fourth node joins, PostgreSQL restarts under load, a new
//!   domain reaches every node, starts while PostgreSQL is down.
//! - `alpn`: TLS-ALPN-01 validations answered by nodes that did not order.
//! - `failover`: the ordering node is killed mid-order.
//! - `migrate`: sled -> PostgreSQL with `state export`/`state import`, and
//!   the cost per request on each backend.
//! - `budget`: the new-order budget is the account's, shared by the nodes.
//! - `unlisted`: HTTP-01 answered by a node that does not list the domain.

mod alpn;
mod budget;
mod client;
mod failover;
mod harness;
mod migrate;
mod outage;
mod shared;
mod unlisted;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::acme::names;
use client::served;
use harness::Node;

/// The cluster tests each run several daemons, a CA and a database: one at
/// a time, so that a loaded box does not turn deadlines into failures.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// First certificates for a handful of domains on a shared 2-core box.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(120);
/// A node picking up what is already stored (a join, a restart, a NOTIFY).
const SPREAD_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Waits until every node serves every name of every domain with a
/// certificate that verifies against Pebble's root, and all nodes serve the
/// same certificate per domain. Returns domain -> fingerprint, and when each
/// node first served all of them (since the call).
async fn wait_served_everywhere(
    nodes: &[&Node],
    https_port: u16,
    domains: &[&str],
    root: &std::path::Path,
    timeout: Duration,
) -> (HashMap<String, String>, Vec<Duration>) {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut fingerprints: HashMap<String, String> = HashMap::new();
    let mut times = Vec::new();
    for node in nodes {
        for domain in domains {
            for name in names(domain) {
                let fp = loop {
                    if let Some(fp) = served(&node.ip, https_port, &name, root).await {
                        break fp;
                    }
                    assert!(
                        !node.exited(),
                        "{} ({}) exited: {}",
                        node.name,
                        node.ip,
                        node.log()
                    );
                    assert!(
                        Instant::now() < deadline,
                        "{} ({}) does not serve {name} within {timeout:?}",
                        node.name,
                        node.ip
                    );
                    tokio::time::sleep(POLL).await;
                };
                let first = fingerprints.entry(domain.to_string()).or_insert(fp.clone());
                assert_eq!(
                    *first, fp,
                    "{} serves another certificate for {name} than the other nodes",
                    node.name
                );
            }
        }
        times.push(started.elapsed());
    }
    (fingerprints, times)
}

/// `mailconfd_acme_orders_total{result=...}` summed over `nodes`.
fn orders_metric(nodes: &[&Node], result: &str) -> f64 {
    nodes
        .iter()
        .map(|n| {
            client::metric(
                &n.ip,
                n.metrics_port,
                &format!("mailconfd_acme_orders_total{{result=\"{result}\"}}"),
            )
            .unwrap_or(0.0)
        })
        .sum()
}
