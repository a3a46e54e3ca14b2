//! SNI -> certificate. Each mail domain has its own certificate (customers never
//! see each other in a SAN list, one failing domain never blocks another);
//! names we do not serve get no certificate at all, so the handshake fails.
//! ACME TLS-ALPN-01 challenge certificates and HTTP-01 tokens live here too,
//! because the listeners are where the CA's validator arrives.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of RFC 8737 validation connections.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Default, Debug)]
pub struct CertResolver {
    inner: RwLock<Inner>,
    /// Bounds profile signatures running at once (see `sign::sign_for_domain`).
    pub(super) signing: super::sign::SigningSlots,
}

#[derive(Default, Debug)]
struct Inner {
    /// mail domain -> (names, certificate)
    domains: HashMap<String, (Vec<String>, Arc<Slot>)>,
    /// served name -> certificate (derived from `domains`)
    by_name: HashMap<String, Arc<Slot>>,
    /// name -> TLS-ALPN-01 challenge certificate
    alpn_challenges: HashMap<String, Arc<CertifiedKey>>,
    /// (name, token) -> HTTP-01 key authorization
    http_challenges: HashMap<(String, String), String>,
    /// Domains for which serving an unsigned profile was already logged
    /// (since they last had a certificate): once per domain, not per request.
    unsigned_logged: std::collections::HashSet<String>,
}

/// A certificate, parsed now or on its first use. Start-up with thousands of
/// stored certificates then costs a database read each, not a key parse each
/// (10,000 domains: about 0.3 s saved); the parse happens once, outside the lock.
#[derive(Debug)]
struct Slot {
    pem: Option<(String, String)>,
    key: OnceLock<Option<Arc<CertifiedKey>>>,
}

impl Slot {
    fn ready(key: Arc<CertifiedKey>) -> Arc<Slot> {
        Arc::new(Slot {
            pem: None,
            key: OnceLock::from(Some(key)),
        })
    }

    fn lazy(chain_pem: String, key_pem: String) -> Arc<Slot> {
        Arc::new(Slot {
            pem: Some((chain_pem, key_pem)),
            key: OnceLock::new(),
        })
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.key
            .get_or_init(|| {
                let (chain, key) = self.pem.as_ref()?;
                match super::certkey::certified_key(chain, key) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        tracing::error!(error = %e, "stored certificate unusable; it is replaced at its next renewal");
                        None
                    }
                }
            })
            .clone()
    }
}

impl CertResolver {
    pub fn new() -> CertResolver {
        CertResolver::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .expect("resolver lock is never poisoned: no panics while held")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .expect("resolver lock is never poisoned: no panics while held")
    }

    /// Serves `key` for `names` of mail domain `domain`, replacing what it had.
    pub fn set_domain(&self, domain: &str, names: Vec<String>, key: Arc<CertifiedKey>) {
        self.set_slot(domain, names, Slot::ready(key));
    }

    /// As `set_domain`, with a PEM chain and key parsed on first use.
    pub fn set_domain_pem(
        &self,
        domain: &str,
        names: Vec<String>,
        chain_pem: String,
        key_pem: String,
    ) {
        self.set_slot(domain, names, Slot::lazy(chain_pem, key_pem));
    }

    fn set_slot(&self, domain: &str, names: Vec<String>, key: Arc<Slot>) {
        let mut inner = self.write();
        if let Some((old_names, _)) = inner.domains.remove(domain) {
            for n in old_names {
                inner.by_name.remove(&n);
            }
        }
        for n in &names {
            inner.by_name.insert(n.clone(), key.clone());
        }
        inner.domains.insert(domain.to_owned(), (names, key));
        inner.unsigned_logged.remove(domain);
    }

    /// True the first time an unsigned profile is served for `domain` since
    /// it last had a certificate: the caller logs then, and not again.
    pub fn first_unsigned(&self, domain: &str) -> bool {
        if self.read().unsigned_logged.contains(domain) {
            return false;
        }
        self.write().unsigned_logged.insert(domain.to_owned())
    }

    /// Stops serving every domain for which `keep` is false.
    pub fn retain_domains(&self, keep: impl Fn(&str) -> bool) {
        let mut inner = self.write();
        let gone: Vec<String> = inner.domains.keys().filter(|d| !keep(d)).cloned().collect();
        for d in gone {
            if let Some((names, _)) = inner.domains.remove(&d) {
                for n in names {
                    inner.by_name.remove(&n);
                }
            }
        }
    }

    /// The certificate of a mail domain (for signing its profiles).
    pub fn domain_key(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let slot = self.read().domains.get(domain).map(|(_, k)| k.clone())?;
        slot.get()
    }

    /// Whether a certificate is served for SNI `name` (for counting
    /// unknown-SNI handshakes).
    pub fn serves_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        self.read().by_name.contains_key(name)
    }

    pub fn domain_names(&self, domain: &str) -> Option<Vec<String>> {
        self.read().domains.get(domain).map(|(n, _)| n.clone())
    }

    pub fn set_alpn_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        self.write().alpn_challenges.insert(name.to_owned(), key);
    }

    pub fn clear_alpn_challenge(&self, name: &str) {
        self.write().alpn_challenges.remove(name);
    }

    pub fn set_http_challenge(&self, name: &str, token: &str, key_authorization: String) {
        self.write()
            .http_challenges
            .insert((name.to_owned(), token.to_owned()), key_authorization);
    }

    pub fn clear_http_challenge(&self, name: &str, token: &str) {
        self.write()
            .http_challenges
            .remove(&(name.to_owned(), token.to_owned()));
    }

    /// The key authorization for an HTTP-01 request, if one is pending.
    pub fn http_challenge(&self, name: &str, token: &str) -> Option<String> {
        self.read()
            .http_challenges
            .get(&(name.to_owned(), token.to_owned()))
            .cloned()
    }
}

/// A ClientHello that offers only `acme-tls/1` is a CA validating us.
pub fn is_alpn_challenge(hello: &ClientHello<'_>) -> bool {
    hello.alpn().is_some_and(|mut protocols| {
        protocols.next() == Some(ACME_TLS_ALPN) && protocols.next().is_none()
    })
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        let slot = {
            let inner = self.read();
            if is_alpn_challenge(&hello) {
                return inner.alpn_challenges.get(name).cloned();
            }
            inner.by_name.get(name).cloned()?
        };
        slot.get()
    }
}
