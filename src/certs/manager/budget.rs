//! The new-order budget: `new_orders_per_3h` new orders per 3 hours per ACME
//! account (renewals are exempt, as at Let's Encrypt). One node keeps the
//! token bucket itself and stores it after each take, so that a crash loop
//! cannot exceed it. Nodes sharing a store share the account, so they draw
//! from one bucket in the store instead: three nodes must not place three
//! times the CA's limit.

use std::sync::Arc;

use super::Manager;
use super::schedule::TokenBucket;
use crate::store::{OrderToken, Store};

/// How soon to ask again when the shared store could not answer (no new
/// order is placed meanwhile: its lease would need the store anyway).
const SHARED_RETRY_SECS: i64 = 10;

/// The bucket and where it is kept.
pub(super) struct OrderBudget {
    /// The store's name for it: one per issuer (directory URL).
    name: String,
    per_3h: u32,
    /// This node's own bucket (one node), restored from the store.
    local: TokenBucket,
    /// When an empty bucket has a token again: asked once per pass over the
    /// domains, not once per waiting domain (100,000 of them at a hoster's
    /// first start), since each shared ask is a database round trip.
    empty_until: Option<i64>,
}

impl OrderBudget {
    pub(super) fn open(store: &dyn Store, issuer_name: &str, per_3h: u32, now: i64) -> Self {
        let name = format!("new-orders|{issuer_name}");
        let local = store
            .blob(&name)
            .ok()
            .flatten()
            .and_then(|b| TokenBucket::restored(&b, per_3h, now))
            .unwrap_or_else(|| TokenBucket::new(per_3h, now));
        OrderBudget {
            name,
            per_3h,
            local,
            empty_until: None,
        }
    }
}

impl Manager {
    /// Takes a token for a new order: `Err(at)` when none is left until `at`.
    pub(super) async fn take_order_token(
        &mut self,
        budget: &mut OrderBudget,
        now: i64,
    ) -> Result<(), i64> {
        if let Some(at) = budget.empty_until.filter(|&at| at > now) {
            return Err(at);
        }
        budget.empty_until = None;
        if self.store.is_shared() {
            let (store, name, per_3h) = (self.store.clone(), budget.name.clone(), budget.per_3h);
            let asked =
                tokio::task::spawn_blocking(move || store.take_order_token(&name, per_3h)).await;
            let at = match asked {
                Ok(Some(Ok(OrderToken::Taken))) => return Ok(()),
                Ok(Some(Ok(OrderToken::EmptyFor(secs)))) => now + secs as i64,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "taking a new-order token from the shared store failed");
                    now + SHARED_RETRY_SECS
                }
                Err(_) => now + SHARED_RETRY_SECS,
                Ok(None) => return self.take_local_token(budget, now).await,
            };
            budget.empty_until = Some(at);
            return Err(at);
        }
        self.take_local_token(budget, now).await
    }

    async fn take_local_token(&mut self, budget: &mut OrderBudget, now: i64) -> Result<(), i64> {
        if !budget.local.take(now) {
            let at = budget.local.next_token_at();
            budget.empty_until = Some(at);
            return Err(at);
        }
        self.store_blob(&budget.name, budget.local.to_bytes()).await;
        Ok(())
    }

    /// Returns a token taken for an order that was not placed after all
    /// (another node held the domain's lease, or had the certificate).
    pub(super) async fn give_back_order_token(&mut self, budget: &mut OrderBudget) {
        budget.empty_until = None;
        if self.store.is_shared() {
            let store: Arc<dyn Store> = self.store.clone();
            let (name, per_3h) = (budget.name.clone(), budget.per_3h);
            if let Ok(Err(e)) =
                tokio::task::spawn_blocking(move || store.give_back_order_token(&name, per_3h))
                    .await
            {
                tracing::debug!(error = %e, "returning a new-order token to the shared store failed");
            }
            return;
        }
        budget.local.give_back();
    }
}
