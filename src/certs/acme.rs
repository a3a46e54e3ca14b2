//! One ACME order, start to finish, through instant-acme: the account (created
//! once, stored, shared by every domain), the challenge (TLS-ALPN-01 on :443 or
//! HTTP-01 on :80, provisioned into the resolver and removed afterwards), a
//! fresh key and CSR, the certificate chain. Scheduling is the manager's job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeStatus,
    ChallengeType, ExternalAccountKey, Identifier, NewAccount, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, KeyPair};

mod errors;
mod http;

use super::{IssueError, Issued, Issuer, RenewalWindow};
use crate::config::{AcmeConfig, Challenge, KeyType};
use crate::store::Store;
use crate::store::{CertRecord, ChallengeAnswer, ChallengeKind};
use crate::tls::CertResolver;
use errors::{acme_error, problem_text, refused_replacement};

/// How long we wait for the CA to validate and to issue.
const ORDER_POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// Orders started at once for one domain when the CA keeps rejecting nonces.
const MAX_ORDER_ATTEMPTS: u32 = 5;

/// The lease name under which one node of several creates the ACME account.
const ACCOUNT_LEASE: &str = "(acme account)";
/// How long the other nodes wait for it.
const ACCOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct AcmeIssuer {
    config: AcmeConfig,
    key_type: KeyType,
    store: Arc<dyn Store>,
    resolver: Arc<CertResolver>,
    account: tokio::sync::Mutex<Option<Account>>,
    /// Until the directory proves otherwise (RFC 9773 renewalInfo).
    ari_supported: AtomicBool,
    /// Counts the CA's answers by status class when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The CA's latest Retry-After, honoured when an order is rateLimited.
    retry_after: Arc<http::RetryAfter>,
}

impl AcmeIssuer {
    pub fn new(
        config: AcmeConfig,
        key_type: KeyType,
        store: Arc<dyn Store>,
        resolver: Arc<CertResolver>,
    ) -> AcmeIssuer {
        AcmeIssuer {
            config,
            key_type,
            store,
            resolver,
            account: tokio::sync::Mutex::new(None),
            ari_supported: AtomicBool::new(true),
            metrics: None,
            retry_after: Arc::default(),
        }
    }

    /// Count the CA's HTTP answers in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> AcmeIssuer {
        self.metrics = Some(metrics);
        self
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, IssueError> {
        let client = http::CountingClient::new(
            self.config.ca_file.as_deref(),
            self.metrics.clone(),
            self.retry_after.clone(),
        )
        .map_err(|e| IssueError::new(format!("setting up the ACME client: {e}")))?;
        Ok(Account::builder_with_http(Box::new(client)))
    }

    /// The stored account, or a new one (created once, then stored and flushed).
    /// The stored account. With a shared store, one node creates it: the
    /// others wait (bounded) for it to appear rather than each registering
    /// its own.
    async fn stored_account(&self) -> Result<Option<Vec<u8>>, IssueError> {
        let deadline = tokio::time::Instant::now() + ACCOUNT_WAIT;
        loop {
            let (store, url) = (self.store.clone(), self.config.directory_url.clone());
            let looked = tokio::task::spawn_blocking(move || {
                let stored = store.account(&url)?;
                if stored.is_some() || !store.is_shared() {
                    return Ok((stored, true));
                }
                // Ours to create when we hold the lease; read again under it.
                if store.try_lease(ACCOUNT_LEASE, &url)? {
                    return Ok((store.account(&url)?, true));
                }
                Ok((None, false))
            })
            .await
            .map_err(|e| IssueError::new(e.to_string()))?
            .map_err(|e: crate::store::StoreError| IssueError::new(format!("{e:#}")))?;
            match looked {
                (stored, true) => return Ok(stored),
                (_, false) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                _ => {
                    return Err(IssueError::new(
                        "another node is creating the ACME account and has not stored it yet",
                    ));
                }
            }
        }
    }

    async fn account(&self) -> Result<Account, IssueError> {
        let mut slot = self.account.lock().await;
        if let Some(a) = &*slot {
            return Ok(a.clone());
        }
        let dir = &self.config.directory_url;
        let stored = self.stored_account().await?;
        let account = match stored.filter(|b| !b.is_empty()) {
            Some(bytes) => {
                let credentials: AccountCredentials = serde_json::from_slice(&bytes)
                    .map_err(|e| IssueError::new(format!("stored ACME account is corrupt: {e}")))?;
                self.builder()?
                    .from_credentials(credentials)
                    .await
                    .map_err(acme_error)?
            }
            None => {
                let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
                let eab = self
                    .config
                    .eab
                    .as_ref()
                    .map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
                let new = NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = self
                    .builder()?
                    .create(&new, dir.clone(), eab.as_ref())
                    .await
                    .map_err(acme_error)?;
                let bytes =
                    serde_json::to_vec(&credentials).map_err(|e| IssueError::new(e.to_string()))?;
                // A flushed write: off the runtime's workers.
                let (store, url) = (self.store.clone(), dir.clone());
                tokio::task::spawn_blocking(move || store.put_account(&url, &bytes))
                    .await
                    .map_err(|e| IssueError::new(e.to_string()))?
                    .map_err(|e| IssueError::new(format!("{e:#}")))?;
                tracing::info!(directory = %dir, "ACME account created");
                if self.store.is_shared() {
                    let (store, url) = (self.store.clone(), dir.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        store.release_lease(ACCOUNT_LEASE, &url)
                    })
                    .await;
                }
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Forgets the account (the CA no longer knows it, e.g. a test CA restarted).
    async fn forget_account(&self) {
        *self.account.lock().await = None;
        let (store, url) = (self.store.clone(), self.config.directory_url.clone());
        let _ = tokio::task::spawn_blocking(move || store.put_account(&url, b"")).await;
    }

    async fn order(
        &self,
        domain: &str,
        names: &[String],
        previous: Option<&CertRecord>,
    ) -> Result<Issued, IssueError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        if let Some(order) = self.resumable_order(&account, domain, names).await {
            return self.complete(order, names).await;
        }
        // Naming the replaced certificate makes a renewal exempt from rate
        // limits at Let's Encrypt; only where the CA speaks ARI, and only for
        // a certificate this directory issued.
        let replaces = replaces_for(
            previous,
            &self.config.directory_url,
            self.ari_supported.load(Ordering::Relaxed),
        );
        let plain = NewOrder::new(&identifiers);
        let first_try = match replaces {
            None => account.new_order(&plain).await,
            Some(id) => match account
                .new_order(&NewOrder::new(&identifiers).replaces(id))
                .await
            {
                Err(instant_acme::Error::Unsupported(_)) => {
                    self.ari_supported.store(false, Ordering::Relaxed);
                    account.new_order(&plain).await
                }
                // The CA refuses the replacement (Let's Encrypt: alreadyReplaced,
                // 409, once a replacing order exists, e.g. one a restart or a
                // poll timeout left behind; or a certificate it does not know).
                // Ordering without `replaces` still works, as certmagic does;
                // only the rate-limit exemption is lost.
                Err(instant_acme::Error::Api(p)) if refused_replacement(&p) => {
                    tracing::info!(problem = %problem_text(&p), "the CA refused the replaced certificate; ordering without naming it");
                    account.new_order(&plain).await
                }
                other => other,
            },
        };
        let order = match first_try {
            Ok(o) => o,
            Err(instant_acme::Error::Api(p))
                if p.r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":accountDoesNotExist")) =>
            {
                tracing::warn!("the CA does not know the stored ACME account; creating a new one");
                self.forget_account().await;
                self.account()
                    .await?
                    .new_order(&NewOrder::new(&identifiers))
                    .await
                    .map_err(acme_error)?
            }
            Err(e) => return Err(acme_error(e)),
        };
        if self.store.is_shared() {
            // A node that takes over this domain's lease after we die
            // finishes this order instead of placing another.
            let (store, d, issuer, url, ordered) = (
                self.store.clone(),
                domain.to_owned(),
                self.config.directory_url.clone(),
                order.url().to_owned(),
                names.to_vec(),
            );
            let _ = tokio::task::spawn_blocking(move || {
                store.set_lease_order(&d, &issuer, &url, &ordered)
            })
            .await;
        }
        self.complete(order, names).await
    }

    /// Several nodes: the order a node that died while holding this
    /// domain's lease left behind, if the CA still has it open for exactly
    /// these names.
    async fn resumable_order(
        &self,
        account: &Account,
        domain: &str,
        names: &[String],
    ) -> Option<Order> {
        if !self.store.is_shared() {
            return None;
        }
        let (store, d, issuer) = (
            self.store.clone(),
            domain.to_owned(),
            self.config.directory_url.clone(),
        );
        let (url, ordered) = tokio::task::spawn_blocking(move || store.lease_order(&d, &issuer))
            .await
            .ok()?
            .ok()??;
        let (mut ordered, mut wanted) = (ordered, names.to_vec());
        ordered.sort();
        wanted.sort();
        if ordered != wanted {
            tracing::info!(domain = %domain, "the order another node left was for other names; ordering anew");
            return None;
        }
        let mut order = match account.order(url).await {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(domain = %domain, error = %e, "the order another node left cannot be read; ordering anew");
                return None;
            }
        };
        let state = order.state();
        if !matches!(state.status, OrderStatus::Pending | OrderStatus::Ready) {
            tracing::info!(domain = %domain, status = ?state.status, "the order another node left is no longer open; ordering anew");
            return None;
        }
        tracing::info!(domain = %domain, status = ?state.status, "finishing the order a node that stopped left behind");
        Some(order)
    }

    /// Answers the challenges of `order`, waits for it, and finalizes it
    /// with a new key.
    async fn complete(&self, mut order: Order, names: &[String]) -> Result<Issued, IssueError> {
        let mut provisioned = Provisioned {
            resolver: &self.resolver,
            alpn: Vec::new(),
            http: Vec::new(),
            shared: self.store.is_shared().then(|| self.store.clone()),
            published: Vec::new(),
        };
        self.provision(&mut order, &mut provisioned).await?;
        let retry = RetryPolicy::new().timeout(ORDER_POLL_TIMEOUT);
        let status = order.poll_ready(&retry).await.map_err(acme_error)?;
        if status != OrderStatus::Ready {
            return Err(why_invalid(&mut order).await);
        }
        drop(provisioned);
        // RSA key generation takes tens of milliseconds of CPU: not on the
        // runtime's workers.
        let key_type = self.key_type;
        let key = tokio::task::spawn_blocking(move || super::new_key(key_type))
            .await
            .map_err(|e| IssueError::new(format!("generating a key: {e}")))??;
        let csr = CertificateParams::new(names.to_vec())
            .and_then(|p| p.serialize_request(&key))
            .map_err(|e| IssueError::new(format!("building the CSR: {e}")))?;
        order.finalize_csr(csr.der()).await.map_err(acme_error)?;
        let chain_pem = order.poll_certificate(&retry).await.map_err(acme_error)?;
        Ok(Issued {
            key_pem: key.serialize_pem(),
            chain_pem,
        })
    }

    /// Answers every pending authorization's challenge and tells the CA to look.
    async fn provision(
        &self,
        order: &mut Order,
        provisioned: &mut Provisioned<'_>,
    ) -> Result<(), IssueError> {
        let kind = match self.config.challenge {
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result.map_err(acme_error)?;
            let name = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(IssueError::new(format!(
                        "authorization for {name} is {other:?}"
                    )));
                }
            }
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                IssueError::new(format!("the CA offers no {kind:?} challenge for {name}"))
            })?;
            let key_authorization = challenge.key_authorization();
            let answer = match self.config.challenge {
                Challenge::TlsAlpn01 => {
                    let digest = key_authorization.digest();
                    let cert = alpn_challenge_cert(&name, digest.as_ref())?;
                    self.resolver.set_alpn_challenge(&name, cert);
                    provisioned.alpn.push(name.clone());
                    ChallengeAnswer {
                        kind: ChallengeKind::TlsAlpn01,
                        name,
                        token: String::new(),
                        value: hex::encode(digest.as_ref()),
                    }
                }
                Challenge::Http01 => {
                    let token = challenge.token.clone();
                    self.resolver.set_http_challenge(
                        &name,
                        &token,
                        key_authorization.as_str().to_owned(),
                    );
                    provisioned.http.push((name.clone(), token.clone()));
                    ChallengeAnswer {
                        kind: ChallengeKind::Http01,
                        name,
                        token,
                        value: key_authorization.as_str().to_owned(),
                    }
                }
            };
            // Several nodes: the CA may ask any of them; each finds the
            // answer in the shared store (tls::shared_challenge).
            if let Some(store) = provisioned.shared.clone() {
                let to_publish = answer.clone();
                tokio::task::spawn_blocking(move || store.put_challenge(&to_publish))
                    .await
                    .map_err(|e| IssueError::new(e.to_string()))?
                    .map_err(|e| {
                        IssueError::new(format!("publishing the challenge to the other nodes: {e}"))
                    })?;
                provisioned.published.push(answer);
            }
            // A resumed order's challenge may already be under validation
            // (the node that placed it told the CA before it died).
            if challenge.status == ChallengeStatus::Pending {
                challenge.set_ready().await.map_err(acme_error)?;
            }
        }
        Ok(())
    }
}

/// Removes provisioned challenge answers when the order ends, however it ends.
struct Provisioned<'r> {
    resolver: &'r CertResolver,
    alpn: Vec<String>,
    http: Vec<(String, String)>,
    /// The shared store answers were published to (several nodes).
    shared: Option<Arc<dyn Store>>,
    published: Vec<ChallengeAnswer>,
}

impl Drop for Provisioned<'_> {
    fn drop(&mut self) {
        if let (Some(store), false) = (self.shared.take(), self.published.is_empty()) {
            let answers = std::mem::take(&mut self.published);
            // Best effort: unwithdrawn answers expire in the store by themselves.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(move || {
                    for a in &answers {
                        let _ = store.clear_challenge(a);
                    }
                });
            }
        }
        for name in &self.alpn {
            self.resolver.clear_alpn_challenge(name);
        }
        for (name, token) in &self.http {
            self.resolver.clear_http_challenge(name, token);
        }
    }
}

/// RFC 8737 §3: a self-signed certificate for `name` carrying the critical
/// acmeIdentifier extension with the SHA-256 of the key authorization.
pub(crate) fn alpn_challenge_cert(
    name: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, IssueError> {
    let err =
        |e: rcgen::Error| IssueError::new(format!("building the TLS-ALPN-01 certificate: {e}"));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(err)?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(err)?;
    // Not through `certkey::certified_key`: its key/certificate check parses the
    // certificate with webpki, which refuses the critical acmeIdentifier
    // extension. The key is the one just generated, so it matches.
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der.into())
        .map_err(|e| IssueError::new(format!("building the TLS-ALPN-01 certificate: {e}")))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

/// The CA's reasons, per name, for an order that did not become ready.
async fn why_invalid(order: &mut Order) -> IssueError {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if authz.refresh().await.is_err() {
            continue;
        }
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{name}: {}", problem_text(problem)));
            }
        }
    }
    if reasons.is_empty() {
        reasons.push("the order became invalid".to_owned());
    }
    IssueError::new(reasons.join("; "))
}

impl Issuer for AcmeIssuer {
    fn issue<'a>(
        &'a self,
        domain: &'a str,
        names: &'a [String],
        previous: Option<&'a CertRecord>,
    ) -> futures_util::future::BoxFuture<'a, Result<Issued, IssueError>> {
        async move {
            // instant-acme retries a rejected nonce 3 times per request; an
            // order that still hits one is started again at once instead of
            // being backed off (and counted) like a failed validation.
            let mut attempt = 1;
            loop {
                match self.order(domain, names, previous).await {
                    Err(e) if e.transient && attempt < MAX_ORDER_ATTEMPTS => {
                        tracing::debug!(error = %e.message, attempt, "transient ACME error; ordering again");
                        attempt += 1;
                    }
                    Err(mut e) if e.retry_after_secs.is_some() => {
                        // rateLimited: the header, when the CA sent one, over
                        // the detail text (both bounded the same way).
                        if let Some(secs) = self.retry_after.take_recent(super::unix_now()) {
                            e.retry_after_secs = Some(errors::bound_rate_limited_wait(secs));
                        }
                        return Err(e);
                    }
                    result => return result,
                }
            }
        }
        .boxed()
    }

    fn source(&self) -> &str {
        &self.config.directory_url
    }

    fn renewal_window<'a>(
        &'a self,
        record: &'a CertRecord,
    ) -> futures_util::future::BoxFuture<'a, Option<RenewalWindow>> {
        self.ari_window(record).boxed()
    }
}

/// How often ARI is asked at most, and at least (Let's Encrypt asks for twice a day).
const ARI_MIN_RECHECK_SECS: i64 = 3_600;
const ARI_MAX_RECHECK_SECS: i64 = 12 * 3_600;

/// The `replaces` value for a renewal of `previous`: only for a certificate
/// from this very directory (another CA does not know it and refuses the
/// order), and only where the CA speaks ARI.
fn replaces_for(
    previous: Option<&CertRecord>,
    directory_url: &str,
    ari_supported: bool,
) -> Option<CertificateIdentifier<'static>> {
    previous
        .filter(|p| p.source == directory_url)
        .filter(|_| ari_supported)
        .and_then(certificate_id)
}

/// The ARI identifier (RFC 9773 §4.1) of a stored certificate's leaf.
fn certificate_id(record: &CertRecord) -> Option<CertificateIdentifier<'static>> {
    use rustls_pki_types::pem::PemObject as _;
    let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(record.chain_pem.as_bytes())
        .next()?
        .ok()?;
    CertificateIdentifier::try_from(&leaf)
        .ok()
        .map(|id| id.into_owned())
}

impl AcmeIssuer {
    /// Asks the CA when to renew. `None` when the directory has no
    /// renewalInfo (remembered, so we stop asking) or the request fails.
    async fn ari_window(&self, record: &CertRecord) -> Option<RenewalWindow> {
        if !self.ari_supported.load(Ordering::Relaxed) {
            return None;
        }
        let id = certificate_id(record)?;
        let account = self.account().await.ok()?;
        match account.renewal_info(&id).await {
            Ok((info, retry_after)) => Some(RenewalWindow {
                start: info.suggested_window.start.unix_timestamp(),
                end: info.suggested_window.end.unix_timestamp(),
                recheck_secs: (retry_after.as_secs() as i64)
                    .clamp(ARI_MIN_RECHECK_SECS, ARI_MAX_RECHECK_SECS),
            }),
            Err(instant_acme::Error::Unsupported(_)) => {
                self.ari_supported.store(false, Ordering::Relaxed);
                tracing::info!(directory = %self.config.directory_url, "the CA offers no renewal information (ARI); renewing at two thirds of the lifetime");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "renewal information request failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
