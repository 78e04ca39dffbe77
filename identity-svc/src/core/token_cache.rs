//! The token cache: bearer-token records kept in memory in front of the token part of the store,
//! so that authenticating a request does not query the database (`find_token` on every call
//! was the largest cost of a read RPC).
//!
//! It wraps only the token methods of the store (lookup, insert, revoke, list, the revocations
//! of other replicas); commits go to the store directly and tell the cache what they revoke
//! ([`TokenCache::evict_revoked`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::sessions::NewSession;
use super::store::{SecretOp, StoreError, TokenRecord, TokenStore};
use super::stream_access::HeldTokens;
use crate::auth::Authorized;
use crate::domain::model::{Micros, Principal};

/// How long a cached token record is trusted before it is read from the store again, by
/// default.
///
/// Revocations made through this replica (Logout, RevokeServiceAccountToken, and the
/// revocations committed with a deactivation or deletion) evict the record at once; revocations
/// made through *another* replica over the same database are evicted by this replica's follower
/// (`Store::revoked_since`, every follow interval). This is the safety net when the follower is
/// off or failing. A deactivated or deleted principal is refused at once anyway:
/// [`Core::authenticate`](super::Core::authenticate) checks it against the in-memory state,
/// which follows the change events.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// Counter of bearer-token lookups, labelled `result`: `hit` (answered from memory) or `miss`
/// (read from the store).
pub(crate) const TOKEN_CACHE_LOOKUPS_TOTAL: &str = "identity_token_cache_lookups_total";

/// At most this many token records are cached; beyond it, stale ones are dropped first, then all.
const TOKEN_CACHE_CAPACITY: usize = 100_000;

/// The cached records and the eviction generation.
#[derive(Debug, Default)]
struct TokenMap {
    /// Record by token hash, with the time it was read from the store.
    records: HashMap<String, (TokenRecord, Instant)>,
    /// Bumped by every eviction, so that a lookup that read the store before an eviction
    /// cannot put the stale record back after it.
    generation: u64,
}

/// Bearer-token records in memory, in front of the store's token methods.
///
/// Whatever revokes tokens through this replica evicts them before it returns:
/// [`TokenCache::revoke`], and a commit carrying [`SecretOp::RevokeToken`] or
/// [`SecretOp::RevokeTokensOf`] (evicted before the commit, so no lookup racing with it keeps
/// the old record, and again after it). Records older than [`TOKEN_CACHE_TTL`] are read again.
/// Unknown tokens are not cached (forged tokens must not fill memory).
///
/// Every revocation of one token passes here, so the cache also tells the open streams holding
/// it ([`HeldTokens`]): at once for a revocation through this replica ([`TokenCache::revoke`]),
/// and through the follower for the others ([`TokenCache::forget_revoked_since`]).
#[derive(Debug)]
pub(super) struct TokenCache {
    inner: Arc<dyn TokenStore>,
    map: RwLock<TokenMap>,
    ttl: Duration,
    held: Arc<HeldTokens>,
}

impl TokenCache {
    /// Wraps `inner`, trusting records for `ttl`.
    pub(super) fn with_ttl(inner: Arc<dyn TokenStore>, ttl: Duration) -> Self {
        Self {
            inner,
            map: RwLock::new(TokenMap::default()),
            ttl,
            held: Arc::default(),
        }
    }

    /// The tokens open streams hold.
    pub(super) fn held(&self) -> &Arc<HeldTokens> {
        &self.held
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, TokenMap> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, TokenMap> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops every cached record matching `doomed`.
    fn evict(&self, doomed: impl Fn(&TokenRecord) -> bool) {
        let mut map = self.write_map();
        map.generation += 1;
        map.records.retain(|_, (r, _)| !doomed(r));
    }

    /// Caches `record`, read from the store when the eviction generation was `generation`,
    /// unless an eviction happened since (the record may be what it revoked).
    fn remember(&self, hash: &str, generation: u64, record: &TokenRecord) {
        let mut map = self.write_map();
        if map.generation != generation {
            return;
        }
        if map.records.len() >= TOKEN_CACHE_CAPACITY {
            map.records.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if map.records.len() >= TOKEN_CACHE_CAPACITY {
                map.records.clear();
            }
        }
        map.records
            .insert(hash.to_owned(), (record.clone(), Instant::now()));
    }

    /// Evicts what the credential changes of a commit to `org` revoke.
    pub(super) fn evict_revoked(&self, org: Uuid, secrets: &[SecretOp]) {
        for op in secrets {
            match op {
                SecretOp::RevokeToken { id, .. } => self.evict(|r| r.id == *id),
                SecretOp::RevokeTokensOf { principal, .. } => {
                    self.evict(|r| r.org == org && r.principal == *principal);
                }
                _ => {}
            }
        }
    }

    /// A bearer token by hash: from memory when read less than the TTL ago.
    pub(super) async fn find(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let generation = {
            let map = self.read_map();
            if let Some((record, at)) = map.records.get(hash)
                && at.elapsed() < self.ttl
            {
                metrics::counter!(TOKEN_CACHE_LOOKUPS_TOTAL, "result" => "hit").increment(1);
                return Ok(Some(record.clone()));
            }
            map.generation
        };
        metrics::counter!(TOKEN_CACHE_LOOKUPS_TOTAL, "result" => "miss").increment(1);
        let found = self.inner.find_token(hash).await?;
        if let Some(record) = &found {
            self.remember(hash, generation, record);
        }
        Ok(found)
    }

    /// Stores a session token (outside of any entity change).
    pub(super) async fn insert(&self, session: &NewSession) -> Result<(), StoreError> {
        self.inner.insert_token(session.record()).await
    }

    /// Revokes one token (a write: it takes the proof), evicted before and after the write,
    /// and ends the streams holding it; false when it did not exist or was already revoked.
    pub(super) async fn revoke(
        &self,
        _proof: &Authorized,
        id: Uuid,
        at: Micros,
    ) -> Result<bool, StoreError> {
        self.evict(|r| r.id == id);
        let result = self.inner.revoke_token(id, at).await;
        self.evict(|r| r.id == id);
        if matches!(result, Ok(true)) {
            self.held.revoked([id]);
        }
        result
    }

    /// Tokens of a principal, newest first (from the store).
    pub(super) async fn list(
        &self,
        org: Uuid,
        principal: Principal,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list_tokens(org, principal).await
    }

    /// Forgets every cached token revoked at or after `since` (by any replica): the follower's
    /// way of learning about revocations made through other replicas. Returns their ids, for
    /// the streams holding them (told once the follower has applied the organizations' events,
    /// so that a deactivation is reported as such rather than as its tokens' revocation).
    pub(super) async fn forget_revoked_since(
        &self,
        since: Micros,
    ) -> Result<Vec<Uuid>, StoreError> {
        let ids = self.inner.revoked_since(since).await?;
        if !ids.is_empty() {
            let ids: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
            // The follower asks every pass with a look-back: most ids were evicted by an
            // earlier pass. Evict (and bump the generation, which stops concurrent lookups
            // from caching) only when a cached record is actually revoked.
            let cached = self
                .read_map()
                .records
                .values()
                .any(|(r, _)| ids.contains(&r.id));
            if cached {
                self.evict(|r| ids.contains(&r.id));
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests;
