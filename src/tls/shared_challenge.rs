//! Several nodes behind one name: the CA validates on whichever node DNS
//! sends it to, usually not the one that ordered. The ordering node
//! publishes each challenge answer in the shared store; here any node looks
//! it up when a validation arrives (a TLS-ALPN-01 handshake, or an HTTP-01
//! request), installs it in its resolver, and answers.
//!
//! Looked up on every validation, not cached: a new order for the same name
//! brings a new answer, and validations are rare (a few per order). Only for
//! plausible names and tokens, a few lookups at a time (`MAX_IN_FLIGHT`), each
//! with a deadline: a flood of fake validations cannot queue up database
//! calls. When the store is down, whatever the resolver holds answers.
//!
//! TLS-ALPN-01 (the default) is answered even for a domain this node does
//! not list yet; an HTTP-01 request is routed only for known host names, so
//! with HTTP-01 every node must already list the domain.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::CertResolver;
use crate::store::{ChallengeKind, Store};

/// Lookups running at once; more are answered from memory only.
const MAX_IN_FLIGHT: usize = 8;
/// Longest a validation waits for the store.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// An installed answer is withdrawn again after this (the CA is done by then).
const KEEP_FOR: Duration = Duration::from_secs(120);

pub struct SharedChallenges {
    store: Arc<dyn Store>,
    resolver: Arc<CertResolver>,
    slots: Arc<Semaphore>,
}

impl SharedChallenges {
    pub fn new(store: Arc<dyn Store>, resolver: Arc<CertResolver>) -> SharedChallenges {
        SharedChallenges {
            store,
            resolver,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Before answering a TLS-ALPN-01 handshake for `name`.
    pub async fn fetch_alpn(&self, name: &str) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let Some(digest_hex) = self.lookup(ChallengeKind::TlsAlpn01, &name, None).await else {
            return;
        };
        let Ok(digest) = hex::decode(&digest_hex) else {
            return;
        };
        match crate::certs::acme::alpn_challenge_cert(&name, &digest) {
            Ok(cert) => {
                self.resolver.set_alpn_challenge(&name, cert);
                let (resolver, n) = (self.resolver.clone(), name.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(KEEP_FOR).await;
                    resolver.clear_alpn_challenge(&n);
                });
            }
            Err(e) => {
                tracing::warn!(name = %name, error = %e, "a shared TLS-ALPN-01 answer is unusable")
            }
        }
    }

    /// Before answering an HTTP-01 request for `token` on `host`.
    pub async fn fetch_http(&self, host: &str, token: &str) {
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if self.resolver.http_challenge(&name, token).is_some() {
            return; // this node's own order
        }
        let Some(key_authorization) = self.lookup(ChallengeKind::Http01, &name, Some(token)).await
        else {
            return;
        };
        self.resolver
            .set_http_challenge(&name, token, key_authorization);
        let (resolver, n, t) = (self.resolver.clone(), name, token.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_FOR).await;
            resolver.clear_http_challenge(&n, &t);
        });
    }

    async fn lookup(&self, kind: ChallengeKind, name: &str, token: Option<&str>) -> Option<String> {
        // A name this node does not serve yet is looked up too: another node
        // may have seen a new domain first (domain sources refresh on each
        // node's own schedule), and the CA's validation must not fail here.
        // HTTP-01 tokens are base64url (RFC 8555 §8.3); anything else is not ours.
        let plausible_name = (1..=253).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let plausible_token = token.is_none_or(|t| {
            (1..=128).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !(plausible_name && plausible_token) {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        let (store, n, t) = (
            self.store.clone(),
            name.to_owned(),
            token.map(str::to_owned),
        );
        let lookup = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            store.challenge(kind, &n, t.as_deref())
        });
        match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(Ok(found))) => found,
            Ok(Ok(Err(e))) => {
                tracing::debug!(name = %name, error = %e, "shared challenge lookup failed");
                None
            }
            _ => None,
        }
    }
}
