use std::sync::atomic::AtomicUsize;

use super::*;
use crate::config::users::{UserSource, UserSourceKind};

fn source(kind: UserSourceKind) -> UserSource {
    UserSource {
        provider: 0,
        kind,
        timeout_ms: 100,
        cache_entries: 100,
        hit_ttl_secs: 300,
        miss_ttl_secs: 60,
    }
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

#[tokio::test]
async fn map_file_answers_known_addresses_and_follows_edits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    std::fs::write(
        &path,
        "[\"alice@example.com\"]\nlogin_name = \"alice7\"\ndisplay_name = \"Alice <L> & Co\"\nimap_host = \"IMAP3.example.com.\"\n",
    )
    .unwrap();
    let d = map_file::MapFile::new(path.clone());
    let alice = d.lookup(&addr("alice@EXAMPLE.com")).await.unwrap().unwrap();
    assert_eq!(alice.login_name.as_deref(), Some("alice7"));
    assert_eq!(alice.imap_host.as_deref(), Some("imap3.example.com"));
    assert_eq!(d.lookup(&addr("bob@example.com")).await.unwrap(), None);
    // A broken edit keeps the last good map.
    std::fs::write(&path, "[\"alice@example.com\"\nbroken").unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        d.lookup(&addr("alice@example.com"))
            .await
            .unwrap()
            .is_some()
    );
}

#[test]
fn unusable_values_are_dropped() {
    let (v, dropped) = UserValues {
        login_name: Some("x%EMAILADDRESS%".into()),
        display_name: Some("ok".into()),
        imap_host: Some("not a host".into()),
        pop3_host: None,
        smtp_host: Some("smtp.example.com".into()),
    }
    .sanitized();
    assert_eq!(dropped, vec!["login_name", "imap_host"]);
    assert_eq!(v.display_name.as_deref(), Some("ok"));
    assert_eq!(v.smtp_host.as_deref(), Some("smtp.example.com"));
}

/// A directory that answers slowly, or fails, and counts its calls.
struct Scripted {
    delay: Duration,
    fail: bool,
    calls: Arc<AtomicUsize>,
}

impl Directory for Scripted {
    fn lookup<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<UserValues>, String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            if self.fail {
                return Err("directory down".into());
            }
            Ok((address.local_part() == "known").then(|| UserValues {
                login_name: Some("k".into()),
                ..UserValues::default()
            }))
        })
    }
}

fn guarded(delay_ms: u64, fail: bool) -> (Guarded, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = Scripted {
        delay: Duration::from_millis(delay_ms),
        fail,
        calls: calls.clone(),
    };
    let g = Guarded::new(
        Box::new(inner),
        &source(UserSourceKind::MapFile {
            path: "/unused".into(),
        }),
    );
    (g, calls)
}

#[tokio::test]
async fn hits_and_misses_are_cached_failures_and_timeouts_are_not() {
    let (g, calls) = guarded(0, false);
    assert_eq!(
        g.lookup(&addr("known@example.com")).await.1,
        LookupResult::Hit
    );
    assert_eq!(
        g.lookup(&addr("known@example.com")).await.1,
        LookupResult::Cached
    );
    assert_eq!(
        g.lookup(&addr("nobody@example.com")).await,
        (None, LookupResult::Miss)
    );
    assert_eq!(
        g.lookup(&addr("nobody@example.com")).await.1,
        LookupResult::Cached
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let (g, calls) = guarded(0, true);
    assert_eq!(
        g.lookup(&addr("known@example.com")).await,
        (None, LookupResult::Failed)
    );
    assert_eq!(
        g.lookup(&addr("known@example.com")).await.1,
        LookupResult::Failed
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "failures are not cached");
}

#[tokio::test]
async fn a_slow_directory_gives_the_defaults_within_the_deadline() {
    // Without the deadline the 5 s lookup would come back as a Hit.
    let (g, _) = guarded(5_000, false);
    assert_eq!(
        g.lookup(&addr("known@example.com")).await,
        (None, LookupResult::TimedOut)
    );
}
