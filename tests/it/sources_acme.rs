//! A hoster's domain source and the real ACME CA (Pebble): a domain added
//! to the source gets its certificate and is served without a restart; a
//! removed one stops being served.

use crate::acme::{ISSUE_TIMEOUT, InProcess, World, bind_pair, ca_tools, port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_added_to_the_source_gets_a_certificate_without_a_restart() {
    if !ca_tools() {
        return;
    }
    let (http, https) = bind_pair().await;
    let world = World::new("tls-alpn-01", port(&http), port(&https)).await;
    let list = world.state_dir().with_file_name("vdomains");
    std::fs::write(&list, "# customers\n").unwrap();
    let text = world
        .config_text(&world.state_dir(), &["example.test"], 5, "")
        .replace(
            "  [[provider.server]]\n  type = \"imap\"",
            &format!(
                "  [provider.domains_from]\n  file = \"{}\"\n  [[provider.server]]\n  type = \"imap\"",
                list.display()
            ),
        );
    assert!(text.contains("domains_from"));
    std::fs::write(world.config_path(), text).unwrap();
    let daemon = InProcess::start(&world, http, https);
    world.wait_served("example.test", ISSUE_TIMEOUT).await;

    // Added in the source: ordered, issued by Pebble, served; no reload.
    std::fs::write(&list, "# customers\ncustomer.test\n").unwrap();
    world.wait_served("customer.test", ISSUE_TIMEOUT).await;
    world.check_documents("customer.test").await;

    // Removed from the source: refused at once, the file's own domain stays.
    std::fs::write(&list, "# customers\n").unwrap();
    world.wait_not_served("customer.test").await;
    world
        .wait_served("example.test", std::time::Duration::ZERO)
        .await;
    daemon.stop().await;
}
