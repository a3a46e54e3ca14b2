//! HTTP-01 validations reaching a node whose config does not list the
//! domain yet (domain sources refresh on each node's own schedule, and an
//! operator edits one node's file first): that node answers from the shared
//! database, so the order of the node that does list it succeeds. Before,
//! the unlisted node answered 404 "unknown host" and the order failed.

use super::harness::{Cluster, DNS_NODES, Setup, tools};
use super::{ISSUE_TIMEOUT, SERIAL, wait_served_everywhere};
use crate::acme::names;
use crate::pebble::PebbleOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_is_answered_by_a_node_that_does_not_list_the_domain() {
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
    // n2 lists both domains; n3 lists only the first. Every validation of
    // the second goes to n3.
    let (listed, new) = ("everywhere.test", "only-n2.test");
    for name in names(listed) {
        c.world.pebble.set_a(&name, &[DNS_NODES[0]]);
    }
    for name in names(new) {
        c.world.pebble.set_a(&name, &[DNS_NODES[1]]);
    }
    let n2 = c.node("n2", DNS_NODES[0], &[listed, new]);
    let n3 = c.node("n3", DNS_NODES[1], &[listed]);
    c.nodes.push(n2);
    c.nodes.push(n3);
    // n3 first, so that it is up when n2's validations arrive.
    c.nodes[1].spawn();
    c.nodes[0].spawn();
    let n2_only = [&c.nodes[0]];
    wait_served_everywhere(
        &n2_only,
        c.world.https_port,
        &[new],
        &c.world.pebble.root,
        ISSUE_TIMEOUT,
    )
    .await;
    let answered = c.nodes[1]
        .log()
        .lines()
        .filter(|l| l.contains("/.well-known/acme-challenge/") && l.contains("status=200"))
        .filter(|l| l.contains(new))
        .count();
    assert!(
        answered >= 3,
        "validations of {new} answered by n3: {answered}\n{}",
        c.nodes[1].log()
    );
    assert_eq!(c.stored_by(new).as_deref(), Some("n2"));
}
