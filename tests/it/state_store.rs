//! The shared PostgreSQL state store against a real PostgreSQL (Debian's
//! `postgresql`, initdb into a temp dir): schema migrations with several
//! nodes opening at once, order leases (exclusive, renewable, expiring),
//! private keys encrypted at rest, the change feed, shared challenge
//! answers, `state export`/`state import` from sled, and the local copy a
//! node serves from while the database is down. The multi-daemon scenarios
//! with Pebble are in `cluster`.

use std::path::Path;
use std::time::{Duration, Instant};

use mailconfd::config::state::PostgresState;
use mailconfd::store::{
    CertRecord, ChallengeAnswer, ChallengeKind, PostgresStore, SledStore, Store, StoreError,
};

use crate::support::{Postgres, eventually};

const KEY_HEX: &str = "8f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100";
const ISSUER: &str = "https://ca.test/dir";

fn settings(pg: &Postgres, node: &str, key_file: Option<&Path>, lease_secs: u64) -> PostgresState {
    PostgresState {
        url: format!("postgres://postgres@127.0.0.1:{}/mailconfd", pg.port),
        password_file: None,
        encryption_key_file: key_file.map(Path::to_owned),
        node: node.to_owned(),
        lease_secs,
    }
}

fn record(domain: &str, not_after: i64) -> CertRecord {
    CertRecord {
        names: vec![
            format!("autoconfig.{domain}"),
            format!("autodiscover.{domain}"),
        ],
        key_pem: "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n".to_owned(),
        chain_pem: "-----BEGIN CERTIFICATE-----\nchain\n-----END CERTIFICATE-----\n".to_owned(),
        not_before: not_after - 1000,
        not_after,
        issuer: "CN=Test CA".to_owned(),
        source: ISSUER.to_owned(),
    }
}

/// Raw column bytes, as an operator with database access would see them.
fn raw_keys(pg: &Postgres) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&format!(
            "postgres://postgres@127.0.0.1:{}/mailconfd",
            pg.port
        ))
        .await
        .unwrap();
        sqlx::query_scalar("SELECT key FROM mailconfd_certs")
            .fetch_all(&pool)
            .await
            .unwrap()
    })
}

#[test]
fn postgres_store_shares_leases_keys_changes_and_challenges() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pg) = Postgres::start(dir.path()) else {
        return;
    };
    pg.sql("CREATE DATABASE mailconfd");
    let key_file = dir.path().join("state.key");
    std::fs::write(&key_file, format!("{KEY_HEX}\n")).unwrap();

    // Three nodes open at once: each migrates under the advisory lock; the
    // schema is applied exactly once.
    let opened: Vec<PostgresStore> = std::thread::scope(|s| {
        let handles: Vec<_> = ["n1", "n2", "n3"]
            .iter()
            .map(|node| {
                let (cfg, state) = (
                    settings(&pg, node, Some(&key_file), 5),
                    dir.path().join(node),
                );
                s.spawn(move || PostgresStore::open(&cfg, &state).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let [n1, n2, n3]: [PostgresStore; 3] = opened.try_into().ok().unwrap();
    let versions = n1.dump().unwrap();
    assert!(versions.certs.is_empty());

    // Leases: exclusive, renewable by the holder, given back, and expiring.
    assert!(n1.try_lease("a.example", ISSUER).unwrap());
    assert!(!n2.try_lease("a.example", ISSUER).unwrap());
    assert!(
        n1.try_lease("a.example", ISSUER).unwrap(),
        "the holder renews"
    );
    assert!(
        n2.try_lease("b.example", ISSUER).unwrap(),
        "another domain is free"
    );
    n1.release_lease("a.example", ISSUER).unwrap();
    assert!(n2.try_lease("a.example", ISSUER).unwrap());
    let names = vec!["autoconfig.a.example".to_owned()];
    n2.set_lease_order("a.example", ISSUER, "https://ca.test/order/7", &names)
        .unwrap();
    n1.release_lease("a.example", ISSUER).unwrap(); // not n1's: no effect
    assert!(!n3.try_lease("a.example", ISSUER).unwrap());
    let held = Instant::now();
    eventually(
        "n2's lease expires (lease_secs = 5) and n3 takes it",
        || n3.try_lease("a.example", ISSUER).unwrap(),
    );
    eprintln!(
        "lease taken over {:?} after it was last renewed",
        held.elapsed()
    );
    // The taker finds the order the previous holder placed, to finish it.
    assert_eq!(
        n3.lease_order("a.example", ISSUER).unwrap(),
        Some(("https://ca.test/order/7".to_owned(), names.clone()))
    );
    assert!(!n2.try_lease("a.example", ISSUER).unwrap());

    // A certificate stored by n1 reaches n2 through the change feed, with
    // its key decrypted; in the database the key is ciphertext.
    let mut changes = n2.changes();
    let stored_at = Instant::now();
    n1.put_cert("a.example", &record("a.example", 4_000_000_000))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let changed = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(15), changes.recv()).await })
        .expect("a change notification within 15 s");
    assert_eq!(changed.as_deref(), Some("a.example"));
    eprintln!(
        "change reached the other node after {:?}",
        stored_at.elapsed()
    );
    assert_eq!(
        n2.cert("a.example", ISSUER).unwrap(),
        Some(record("a.example", 4_000_000_000))
    );
    for raw in raw_keys(&pg) {
        assert!(
            !raw.windows(11).any(|w| w == b"PRIVATE KEY"),
            "a private key is stored in clear"
        );
    }
    // A node without the key cannot read it, and says what to set.
    let keyless = PostgresStore::open_uncached(&settings(&pg, "n4", None, 5)).unwrap();
    match keyless.cert("a.example", ISSUER) {
        Err(StoreError::Crypto(e)) => assert!(e.contains("encryption_key_file"), "{e}"),
        other => panic!("expected a decryption error, got {other:?}"),
    }

    // Challenge answers: published by one node, found by another, withdrawn.
    let answer = ChallengeAnswer {
        kind: ChallengeKind::Http01,
        name: "autoconfig.a.example".to_owned(),
        token: "tok_en-1".to_owned(),
        value: "tok_en-1.thumbprint".to_owned(),
    };
    n1.put_challenge(&answer).unwrap();
    assert_eq!(
        n3.challenge(ChallengeKind::Http01, &answer.name, Some("tok_en-1"))
            .unwrap()
            .as_deref(),
        Some("tok_en-1.thumbprint")
    );
    assert_eq!(
        n3.challenge(ChallengeKind::TlsAlpn01, &answer.name, None)
            .unwrap(),
        None
    );
    n1.clear_challenge(&answer).unwrap();
    assert_eq!(
        n3.challenge(ChallengeKind::Http01, &answer.name, Some("tok_en-1"))
            .unwrap(),
        None
    );

    // sled -> PostgreSQL: the account and certificate move, keys still encrypted.
    let sled_dir = dir.path().join("sled");
    {
        let sled = SledStore::open(&sled_dir).unwrap();
        sled.put_account(ISSUER, b"{\"account\":\"credentials\"}")
            .unwrap();
        sled.put_cert("moved.example", &record("moved.example", 4_100_000_000))
            .unwrap();
        let dump_file = dir.path().join("dump.json");
        mailconfd::store::dump::export(&sled, &dump_file).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&dump_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let counts = mailconfd::store::dump::import(&n1, &dump_file).unwrap();
        assert_eq!((counts.accounts, counts.certs), (1, 1));
    }
    assert_eq!(
        n3.account(ISSUER).unwrap().as_deref(),
        Some(&b"{\"account\":\"credentials\"}"[..])
    );
    assert_eq!(
        n3.cert("moved.example", ISSUER).unwrap(),
        Some(record("moved.example", 4_100_000_000))
    );

    // The database goes away: reads come from the node's local copy, writes
    // fail (the manager keeps them in memory), and `up` says so.
    drop((n1, n3, keyless));
    let up = n2.up();
    pg.stop();
    assert_eq!(
        n2.cert("a.example", ISSUER).unwrap(),
        Some(record("a.example", 4_000_000_000)),
        "served from the local copy"
    );
    assert!(!*up.borrow());
    assert!(matches!(
        n2.put_status("a.example", ISSUER, &Default::default()),
        Err(StoreError::Unavailable { .. })
    ));
    // Restarting during the outage: with a local copy it opens; without, it
    // refuses and names [state].url.
    drop(n2);
    let restarted = PostgresStore::open(
        &settings(&pg, "n2", Some(&key_file), 5),
        &dir.path().join("n2"),
    )
    .expect("a node with a local copy starts during an outage");
    assert_eq!(
        restarted
            .cert("a.example", ISSUER)
            .unwrap()
            .map(|r| r.not_after),
        Some(4_000_000_000)
    );
    let err = PostgresStore::open(
        &settings(&pg, "n9", Some(&key_file), 5),
        &dir.path().join("n9"),
    )
    .err()
    .expect("a node with nothing cached refuses to start");
    let text = format!("{err:#}");
    assert!(
        text.contains("state.url") && text.contains("no local copy"),
        "{text}"
    );
}

/// The new-order budget is the account's, so nodes draw from one bucket:
/// three nodes taking tokens at once from a bucket of 5 get 5 in all (each
/// node's own bucket would have given 15); an empty bucket names the wait
/// (3 h / 5 = 36 min for one token); a token given back can be taken again.
#[test]
fn nodes_draw_new_order_tokens_from_one_bucket() {
    use mailconfd::store::OrderToken;

    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = Postgres::start(dir.path()) else {
        return;
    };
    pg.sql("CREATE DATABASE mailconfd");
    let nodes: Vec<PostgresStore> = ["n1", "n2", "n3"]
        .iter()
        .map(|node| {
            PostgresStore::open(&settings(&pg, node, None, 30), &dir.path().join(node)).unwrap()
        })
        .collect();
    const BUCKET: &str = "new-orders|https://ca.test/dir";
    let taken: usize = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                s.spawn(move || {
                    (0..10)
                        .filter(|_| {
                            node.take_order_token(BUCKET, 5).unwrap().unwrap() == OrderToken::Taken
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(taken, 5, "tokens taken by three nodes from a bucket of 5");
    match nodes[0].take_order_token(BUCKET, 5).unwrap().unwrap() {
        OrderToken::EmptyFor(secs) => {
            assert!((2100..=2160).contains(&secs), "next token in {secs} s")
        }
        OrderToken::Taken => panic!("a sixth token"),
    }
    nodes[1].give_back_order_token(BUCKET, 5).unwrap();
    assert_eq!(
        nodes[2].take_order_token(BUCKET, 5).unwrap().unwrap(),
        OrderToken::Taken,
        "the token given back"
    );
    // Another issuer has a bucket of its own.
    assert_eq!(
        nodes[0]
            .take_order_token("new-orders|https://other.test/dir", 5)
            .unwrap()
            .unwrap(),
        OrderToken::Taken
    );
    // One node (sled) keeps its own bucket: the store has none.
    let sled = SledStore::open(&dir.path().join("single")).unwrap();
    assert!(sled.take_order_token(BUCKET, 5).is_none());
}
