use super::*;
use crate::store::write_durably;

fn record(n: i64) -> CertRecord {
    CertRecord {
        names: vec!["autoconfig.example.com".into()],
        key_pem: "KEY".into(),
        chain_pem: "CHAIN".into(),
        not_before: n,
        not_after: n + 100,
        issuer: "CN=test".into(),
        source: "local".into(),
    }
}

#[test]
fn round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    {
        let store = SledStore::open(&state).unwrap();
        store.put_cert("example.com", &record(1)).unwrap();
        store.put_account("https://ca/dir", b"{}").unwrap();
        store
            .put_status(
                "example.com",
                "local",
                &DomainStatus {
                    failures: 2,
                    ..Default::default()
                },
            )
            .unwrap();
    }
    let store = SledStore::open(&state).unwrap();
    assert_eq!(store.cert("example.com", "local").unwrap(), Some(record(1)));
    assert_eq!(
        store.account("https://ca/dir").unwrap().as_deref(),
        Some(&b"{}"[..])
    );
    assert_eq!(
        store
            .status("example.com", "local")
            .unwrap()
            .unwrap()
            .failures,
        2
    );
    assert_eq!(store.certs_for("example.com").unwrap().len(), 1);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn corrupt_records_are_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store
        .read(|t| Ok(t.certs.insert("bad.example|local", &b"not json"[..])?))
        .unwrap();
    assert!(matches!(
        store.cert("bad.example", "local"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn certificates_from_two_issuers_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let staging = CertRecord {
        source: "https://staging/dir".into(),
        ..record(1)
    };
    store.put_cert("example.com", &staging).unwrap();
    assert_eq!(store.cert("example.com", "https://prod/dir").unwrap(), None);
    assert_eq!(
        store.cert("example.com", "https://staging/dir").unwrap(),
        Some(staging.clone())
    );
    // Another domain sharing the prefix is not listed.
    store.put_cert("example.com.au", &record(2)).unwrap();
    assert_eq!(store.certs_for("example.com").unwrap(), vec![staging]);
}

#[test]
fn records_keyed_by_domain_alone_are_read_for_their_own_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let old = serde_json::to_vec(&record(1)).unwrap();
    store
        .read(|t| Ok(t.certs.insert("example.com", old)?))
        .unwrap();
    assert_eq!(store.cert("example.com", "local").unwrap(), Some(record(1)));
    assert_eq!(store.cert("example.com", "https://ca/dir").unwrap(), None);
    assert_eq!(store.certs_for("example.com").unwrap().len(), 1);
}

#[test]
fn recover_reopens_and_keeps_what_was_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store.put_cert("example.com", &record(1)).unwrap();
    store.recover().unwrap(); // nothing failed: a no-op
    store
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    store.recover().unwrap();
    assert_eq!(store.cert("example.com", "local").unwrap(), Some(record(1)));
    store.put_cert("example.net", &record(2)).unwrap();
    assert_eq!(store.cert("example.net", "local").unwrap(), Some(record(2)));
}

#[test]
fn durable_write_replaces_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certs.json");
    write_durably(&path, b"first").unwrap();
    write_durably(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("certs.json")]);
    // A directory that is not there: an error, nothing written.
    assert!(write_durably(&dir.path().join("missing/x.json"), b"x").is_err());
}
