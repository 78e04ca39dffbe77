//! The application core: per-organization in-memory state kept in step with the store, the
//! single write path ([`commit`]), the change feed ([`feed`]), the sessions ([`sessions`]) and
//! the token cache (`token_cache`).
//!
//! The core owns the store: the `store` module is declared here, privately, so nothing above
//! the core (the rules, the gRPC layer) can name it, and [`Core`] does not hand it out. Only its
//! plain data types (events, token records, credential changes) are re-exported. (The
//! benchmark measures the store directly through the `store-access` feature, which makes it
//! `identity_svc::store`; the services are built without it.)
//!
//! Every write takes a proof: [`Authorized`](crate::auth::Authorized) (made only by `auth` once
//! the caller passed the RPC's checks), or, for Login and AcceptInvitation, a type only
//! [`sessions`] makes.
//!
//! With the proof, a write compiles:
//!
//! ```no_run
//! use identity_svc::auth::{Authorized, Entry};
//! use identity_svc::core::{Core, Draft};
//! use identity_svc::error::Error;
//!
//! async fn handler(core: &Core, entry: &Entry, org: uuid::Uuid) -> Result<u64, Error> {
//!     let auth: Authorized = entry.authorized()?;
//!     let done = core.mutate(&auth, org, None, |_: &mut Draft<'_>| Ok(())).await?;
//!     Ok(done.seq)
//! }
//! ```
//!
//! Without it, it does not: a write takes nothing else than a proof...
//!
//! ```compile_fail,E0277
//! use identity_svc::core::{Core, Draft};
//! use identity_svc::error::Error;
//!
//! async fn handler(core: &Core, org: uuid::Uuid) -> Result<u64, Error> {
//!     let done = core.mutate(&(), org, None, |_: &mut Draft<'_>| Ok(())).await?;
//!     Ok(done.seq)
//! }
//! ```
//!
//! ...a proof cannot be made outside `auth` (private fields, no public constructor)...
//!
//! ```compile_fail,E0451
//! use identity_svc::auth::Authorized;
//!
//! let forged = Authorized { actor: "operator".into(), principal: None, org: None, session: None };
//! ```
//!
//! ...and the store cannot be reached to write around the core:
//!
//! ```compile_fail,E0616
//! async fn handler(core: &identity_svc::core::Core) {
//!     let _store = &core.storage;
//! }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::{Mutex, broadcast};
use uuid::Uuid;

use crate::domain::model::{Entity, Micros, Organization};
use crate::domain::state::OrgState;
use crate::error::Error;

pub mod clock;
pub mod commit;
pub mod feed;
pub mod grant_boundaries;
pub mod hashing;
pub mod lockout;
pub mod mailer;
pub mod oidc;
pub mod outbox;
mod queue;
mod replicas;
pub mod sessions;
mod stream_access;
mod token_cache;
mod tokens;

// The store, private to the core. Its items are `pub` for the benchmark, which reaches it with
// the `store-access` feature (never enabled by the services themselves).
#[cfg(not(feature = "store-access"))]
#[allow(unreachable_pub)]
mod store;
#[cfg(feature = "store-access")]
pub mod store;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use commit::{Committed, Draft, Proof};
pub use mailer::Mailer;
pub use sessions::Session;
pub use store::{
    Delivery, DeliveryState, EventFilter, EventRecord, InvitationToken, SecretOp, StoreError,
    TokenKind, TokenRecord,
};
pub use stream_access::ACCESS_TICK;
pub use token_cache::TOKEN_CACHE_TTL;

use queue::Queue;
use store::{Commit, Store};
use token_cache::TokenCache;

/// How many committed events a slow watcher may fall behind before it re-reads from the store.
const FEED_CAPACITY: usize = 4096;

/// One organization: its state, its writer lock and its live feed.
#[derive(Debug)]
pub struct OrgHandle {
    /// The state as of the last applied event.
    state: RwLock<OrgState>,
    /// Serializes what commits to the store and applies committed events to the state: the
    /// group committer and catch-up.
    writer: Mutex<()>,
    /// Committed events, as they are committed.
    feed: broadcast::Sender<Arc<EventRecord>>,
    /// Drafts validated but not committed yet (group commit).
    queue: std::sync::Mutex<Queue>,
}

impl OrgHandle {
    fn new(state: OrgState) -> Arc<Self> {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Arc::new(Self {
            state: RwLock::new(state),
            writer: Mutex::new(()),
            feed,
            queue: std::sync::Mutex::new(Queue::default()),
        })
    }

    /// Reads the state.
    pub fn read(&self) -> RwLockReadGuard<'_, OrgState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, OrgState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to events committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.feed.subscribe()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The store, with the token cache in front of its token part.
#[derive(Debug)]
struct Storage {
    /// The store.
    store: Arc<dyn Store>,
    /// Bearer-token lookups, from memory.
    tokens: TokenCache,
}

impl Storage {
    /// Writes consecutive commits of one organization in one transaction (see
    /// [`Store::commit_batch`]). The tokens they revoke are evicted from the cache before the
    /// write (so no lookup racing with it keeps the old record) and again after it.
    async fn commit_batch(&self, commits: &[Commit<'_>]) -> Result<u64, StoreError> {
        for c in commits {
            self.tokens.evict_revoked(c.org, c.secrets);
        }
        let result = self.store.commit_batch(commits).await;
        for c in commits {
            self.tokens.evict_revoked(c.org, c.secrets);
        }
        result
    }

    /// Writes one commit, evicting what it revokes as [`Storage::commit_batch`] does.
    async fn commit(&self, commit: Commit<'_>) -> Result<u64, StoreError> {
        let (org, secrets) = (commit.org, commit.secrets);
        self.tokens.evict_revoked(org, secrets);
        let result = self.store.commit(commit).await;
        self.tokens.evict_revoked(org, secrets);
        result
    }
}

/// The core shared by every handler.
#[derive(Debug)]
pub struct Core {
    /// The store and the token cache: private to the core.
    storage: Arc<Storage>,
    /// The clock.
    pub clock: SharedClock,
    /// Delivers the invitation mail the commits queue.
    outbox: Arc<outbox::Outbox>,
    orgs: RwLock<HashMap<Uuid, Arc<OrgHandle>>>,
    /// Becomes true when the server starts shutting down: long-lived streams end then, so the
    /// graceful drain does not wait for watchers that never hang up.
    closing: tokio::sync::watch::Sender<bool>,
    /// The time of the follower's last scan for tokens other replicas revoked.
    revocations_scanned: std::sync::Mutex<Micros>,
    /// Where every password is hashed and verified: bounded.
    hashing: hashing::HashPool,
    /// The waits after wrong passwords.
    lockout: lockout::LockoutPolicy,
    /// The addresses each account logged in from (this replica's memory).
    familiar: lockout::FamiliarAddresses,
    /// Verifies ID tokens of external identity providers (caches their key sets).
    pub oidc: oidc::Verifier,
}

/// An opened and migrated store, to load a [`Core`] from. Opaque: only the core uses it.
#[derive(Debug)]
pub struct OpenedStore(Arc<dyn Store>);

impl OpenedStore {
    /// Opens and migrates the store of `database`: a SQLite file or a PostgreSQL URL.
    pub async fn open(database: &shared::config::Database) -> Result<Self, Error> {
        Ok(Self(match database {
            shared::config::Database::Sqlite(path) => {
                Arc::new(store::sqlite::SqliteStore::open(path).await?)
            }
            shared::config::Database::Postgres(url) => {
                Arc::new(store::postgres::PgStore::connect(url).await?)
            }
        }))
    }
}

impl Core {
    /// Loads every organization from `store`; token lookups go through a cache trusting
    /// records for `token_cache_ttl`, so authentication does not query the store per request.
    pub async fn load(
        store: OpenedStore,
        clock: SharedClock,
        mailer: Mailer,
        token_cache_ttl: std::time::Duration,
    ) -> Result<Self, Error> {
        Self::from_store(store.0, clock, mailer, token_cache_ttl).await
    }

    /// Whether the database answers a trivial query now (the health probe): `Err` says why
    /// not, the causes included, as a sentence for the operator's log.
    pub async fn database_reachable(&self) -> Result<(), String> {
        self.storage
            .store
            .ping()
            .await
            .map_err(|e| shared::health::with_causes(&e))
    }

    /// Tells long-lived streams (WatchChanges) that the server is shutting down.
    pub fn begin_shutdown(&self) {
        let _ = self.closing.send(true);
    }

    /// Completes when the server starts shutting down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Loads every organization from the store. Token lookups go through a [`TokenCache`]
    /// trusting records for `token_cache_ttl`, so authentication does not query the store per
    /// request.
    async fn from_store(
        store: Arc<dyn Store>,
        clock: SharedClock,
        mailer: Mailer,
        token_cache_ttl: std::time::Duration,
    ) -> Result<Self, Error> {
        // Bearer tokens are looked up on every request: keep them in memory.
        let tokens = TokenCache::with_ttl(store.clone(), token_cache_ttl);
        let started = clock.now();
        let mut orgs = HashMap::new();
        for id in store.organization_ids().await? {
            if let Some(state) = load_state(&*store, id).await? {
                orgs.insert(id, OrgHandle::new(state));
            }
        }
        let (closing, _) = tokio::sync::watch::channel(false);
        Ok(Self {
            storage: Arc::new(Storage {
                store: Arc::clone(&store),
                tokens,
            }),
            outbox: Arc::new(outbox::Outbox::new(
                Arc::clone(&store),
                mailer,
                crate::config::MailSettings::default(),
            )),
            clock,
            orgs: RwLock::new(orgs),
            closing,
            revocations_scanned: std::sync::Mutex::new(started),
            hashing: hashing::HashPool::new(0, hashing::DEFAULT_QUEUE),
            lockout: lockout::LockoutPolicy::default(),
            familiar: lockout::FamiliarAddresses::default(),
            oidc: oidc::Verifier::new(&crate::config::OidcSettings::default()).map_err(|e| {
                Error::Internal(format!("cannot build the OpenID HTTP client: {e}"))
            })?,
        })
    }

    /// Replaces the password-hashing pool and the lockout policy (the defaults: one worker per
    /// core, [`hashing::DEFAULT_QUEUE`], [`lockout::LockoutPolicy::default`]).
    #[must_use]
    pub fn with_login_limits(
        mut self,
        hashing: hashing::HashPool,
        lockout: lockout::LockoutPolicy,
    ) -> Self {
        self.hashing = hashing;
        self.lockout = lockout;
        self
    }

    /// Replaces the ID-token verifier (the default: [`crate::config::OidcSettings::default`]).
    #[must_use]
    pub fn with_oidc(mut self, oidc: oidc::Verifier) -> Self {
        self.oidc = oidc;
        self
    }

    /// Replaces the mail outbox's settings (the default: [`crate::config::MailSettings`]'s).
    #[must_use]
    pub fn with_mail(mut self, settings: crate::config::MailSettings) -> Self {
        self.outbox = Arc::new(self.outbox.with_settings(settings));
        self
    }

    /// The delivery worker of the invitation mail outbox (the server runs it).
    pub fn outbox(&self) -> Arc<outbox::Outbox> {
        Arc::clone(&self.outbox)
    }

    /// The delivery of the newest invitation message queued for `user` of `org`.
    pub async fn invitation_delivery(
        &self,
        org: Uuid,
        user: Uuid,
    ) -> Result<Option<Delivery>, Error> {
        Ok(self.storage.store.mail_delivery(org, user).await?)
    }

    /// The current time.
    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    /// An organization's handle, loading it from the store if another replica created it.
    pub async fn org(&self, id: Uuid) -> Result<Arc<OrgHandle>, Error> {
        if let Some(h) = self.orgs_read().get(&id) {
            return Ok(h.clone());
        }
        match load_state(&*self.storage.store, id).await? {
            Some(state) => {
                let h = OrgHandle::new(state);
                Ok(self
                    .orgs
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(id)
                    .or_insert(h)
                    .clone())
            }
            None => Err(Error::NotFound(format!("organizations/{id}"))),
        }
    }

    /// An organization's handle if it is loaded (no store access).
    pub fn org_cached(&self, id: Uuid) -> Option<Arc<OrgHandle>> {
        self.orgs_read().get(&id).cloned()
    }

    /// Every loaded organization id.
    pub fn org_ids(&self) -> Vec<Uuid> {
        self.orgs_read().keys().copied().collect()
    }

    fn orgs_read(&self) -> RwLockReadGuard<'_, HashMap<Uuid, Arc<OrgHandle>>> {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Builds an organization's state from the store, entity by entity as they are read; `None`
/// if the organization is unknown.
async fn load_state(store: &dyn Store, id: Uuid) -> Result<Option<OrgState>, Error> {
    let mut st = OrgState::new(Organization {
        id,
        display_name: String::new(),
        create_time: 0,
        update_time: 0,
        rev: 0,
    });
    let mut has_record = false;
    let seq = store
        .load_organization_into(id, &mut |e| {
            has_record |= matches!(e, Entity::Organization(_));
            st.insert(e);
        })
        .await?;
    let Some(seq) = seq else {
        return Ok(None);
    };
    if !has_record {
        return Err(Error::Internal(format!("organization {id} has no record")));
    }
    st.seq = seq;
    Ok(Some(st))
}

/// A store failure, as a service error (INTERNAL, unless the commit path turned it into
/// something else first).
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(Box::new(e))
    }
}

/// Seals [`Proof`]: only the core's own proofs implement it.
mod sealed {
    /// Implemented by [`Authorized`](crate::auth::Authorized) and the session module's proofs.
    pub trait Sealed {}
}
