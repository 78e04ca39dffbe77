//! The application core: per-organization in-memory state kept in step with the store, the
//! single write path, and the change feed.
//!
//! Write path: take the organization's writer lock → run the mutation against the state as a
//! [`Draft`] (changes are applied as they are made so later steps see earlier ones) → undo them
//! → commit rows and events in one store transaction at the sequence they were validated
//! against → apply them again for real → publish the events. Readers therefore never see an
//! uncommitted change, and a commit that loses a race with another replica
//! ([`StoreError::Conflict`]) catches up from the event log and retries.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::{Mutex, broadcast};
use uuid::Uuid;

use super::auth::Authorized;
use super::clock::SharedClock;
use super::error::Error;
use super::mailer::Mailer;
use crate::domain::model::{Change, Entity, Micros};
use crate::domain::state::OrgState;
use crate::store::{Commit, EventRecord, SecretOp, Store, StoreError};

/// How many committed events a slow watcher may fall behind before it re-reads from the store.
const FEED_CAPACITY: usize = 4096;

/// One organization: its state, its writer lock and its live feed.
#[derive(Debug)]
pub struct OrgHandle {
    /// The state as of the last applied event.
    state: RwLock<OrgState>,
    /// Serializes writers of this organization.
    writer: Mutex<()>,
    /// Committed events, as they are committed.
    feed: broadcast::Sender<Arc<EventRecord>>,
}

impl OrgHandle {
    fn new(state: OrgState) -> Arc<Self> {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Arc::new(Self {
            state: RwLock::new(state),
            writer: Mutex::new(()),
            feed,
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
}

/// A mutation in progress: the state with the changes made so far applied.
#[derive(Debug)]
pub struct Draft<'s> {
    state: &'s mut OrgState,
    changes: Vec<Change>,
    secrets: Vec<SecretOp>,
    /// The time of the mutation.
    pub now: Micros,
}

impl Draft<'_> {
    /// The state, including the changes made so far.
    pub fn state(&self) -> &OrgState {
        self.state
    }

    /// Records a change and applies it to the draft state.
    pub fn change(
        &mut self,
        action: &str,
        target: String,
        before: Option<Entity>,
        after: Option<Entity>,
        affected_users: Vec<Uuid>,
    ) {
        let c = Change {
            action: action.to_owned(),
            target,
            before,
            after,
            affected_users,
        };
        self.state.apply(&c);
        self.changes.push(c);
    }

    /// Records a credential change committed with the entity changes.
    pub fn secret(&mut self, op: SecretOp) {
        self.secrets.push(op);
    }
}

/// What a successful mutation returns: the value and the organization's sequence after it
/// (the consistency token).
#[derive(Debug)]
pub struct Committed<T> {
    /// The mutation's result.
    pub value: T,
    /// Sequence after the commit.
    pub seq: u64,
}

/// The core shared by every handler.
#[derive(Debug)]
pub struct Core {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: SharedClock,
    /// Delivers invitations.
    pub mailer: Mailer,
    orgs: RwLock<HashMap<Uuid, Arc<OrgHandle>>>,
    /// Becomes true when the server starts shutting down: long-lived streams end then, so the
    /// graceful drain does not wait for watchers that never hang up.
    closing: tokio::sync::watch::Sender<bool>,
    /// The time of the follower's last scan for tokens other replicas revoked.
    revocations_scanned: std::sync::Mutex<Micros>,
}

impl Core {
    /// Tells long-lived streams (WatchChanges) that the server is shutting down.
    pub fn begin_shutdown(&self) {
        let _ = self.closing.send(true);
    }

    /// Completes when the server starts shutting down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Loads every organization from the store. The store is wrapped in a
    /// [`TokenCache`](super::auth::TokenCache) trusting records for `token_cache_ttl`, so
    /// authentication does not query it per request.
    pub async fn load(
        store: Arc<dyn Store>,
        clock: SharedClock,
        mailer: Mailer,
        token_cache_ttl: std::time::Duration,
    ) -> Result<Self, Error> {
        // Bearer tokens are looked up on every request: keep them in memory.
        let store: Arc<dyn Store> =
            Arc::new(super::auth::TokenCache::with_ttl(store, token_cache_ttl));
        let started = clock.now();
        let mut orgs = HashMap::new();
        for id in store.organization_ids().await? {
            if let Some(loaded) = store.load_organization(id).await? {
                orgs.insert(id, OrgHandle::new(state_from(loaded)?));
            }
        }
        let (closing, _) = tokio::sync::watch::channel(false);
        Ok(Self {
            store,
            clock,
            mailer,
            orgs: RwLock::new(orgs),
            closing,
            revocations_scanned: std::sync::Mutex::new(started),
        })
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
        match self.store.load_organization(id).await? {
            Some(loaded) => {
                let h = OrgHandle::new(state_from(loaded)?);
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

    /// Creates an organization: `seed` makes its initial entities on an empty state.
    pub async fn create_org<T>(
        &self,
        auth: &Authorized,
        org: crate::domain::model::Organization,
        seed: impl FnOnce(&mut Draft<'_>) -> Result<T, Error>,
    ) -> Result<Committed<T>, Error> {
        let id = org.id;
        let mut state = OrgState::new(org.clone());
        let now = self.now();
        let mut draft = Draft {
            state: &mut state,
            changes: Vec::new(),
            secrets: Vec::new(),
            now,
        };
        draft.change(
            "organization.created",
            crate::domain::names::fmt::org(id),
            None,
            Some(Entity::Organization(org)),
            Vec::new(),
        );
        let value = seed(&mut draft)?;
        let Draft {
            changes, secrets, ..
        } = draft;
        let seq = self
            .store
            .commit(Commit {
                org: id,
                expected_seq: 0,
                create_org: true,
                actor: auth.actor(),
                request_id: None,
                time: now,
                changes: &changes,
                secrets: &secrets,
            })
            .await?;
        state.seq = seq;
        let handle = OrgHandle::new(state);
        self.orgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, handle);
        Ok(Committed { value, seq })
    }

    /// Runs a mutation of one organization (see the module docs). `f` may run more than once
    /// (after a conflict with another replica), each time on fresh state.
    pub async fn mutate<T>(
        &self,
        auth: &Authorized,
        org: Uuid,
        request_id: Option<&str>,
        mut f: impl FnMut(&mut Draft<'_>) -> Result<T, Error>,
    ) -> Result<Committed<T>, Error> {
        let handle = self.org(org).await?;
        let _writer = handle.writer.lock().await;
        loop {
            let now = self.now();
            let (value, changes, secrets, expected) = {
                let mut st = handle.write();
                let expected = st.seq;
                let mut draft = Draft {
                    state: &mut st,
                    changes: Vec::new(),
                    secrets: Vec::new(),
                    now,
                };
                let value = f(&mut draft);
                let Draft {
                    changes, secrets, ..
                } = draft;
                for c in changes.iter().rev() {
                    st.apply(&c.inverse());
                }
                (value, changes, secrets, expected)
            };
            let value = value?;
            if changes.is_empty() && secrets.is_empty() {
                return Ok(Committed {
                    value,
                    seq: expected,
                });
            }
            let commit = Commit {
                org,
                expected_seq: expected,
                create_org: false,
                actor: auth.actor(),
                request_id,
                time: now,
                changes: &changes,
                secrets: &secrets,
            };
            match self.store.commit(commit).await {
                Ok(seq) => {
                    {
                        let mut st = handle.write();
                        for c in &changes {
                            st.apply(c);
                        }
                        st.seq = seq;
                    }
                    for (i, c) in changes.into_iter().enumerate() {
                        let record = EventRecord {
                            org,
                            seq: expected + 1 + i as u64,
                            actor: auth.actor().to_owned(),
                            action: c.action,
                            target: c.target,
                            before: c.before,
                            after: c.after,
                            affected_users: c.affected_users,
                            request_id: request_id.map(str::to_owned),
                            time: now,
                        };
                        // No receiver is fine: nobody is watching.
                        let _ = handle.feed.send(Arc::new(record));
                    }
                    return Ok(Committed { value, seq });
                }
                Err(StoreError::Conflict) => self.catch_up(&handle, org).await?,
                Err(StoreError::DuplicateRequest) => {
                    // A concurrent request with the same key committed first: nothing was
                    // written; a retry answers with what that request created.
                    return Err(Error::Aborted(
                        "a request with this request_id was just applied; retry to get its result"
                            .into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Applies the events other replicas committed since the state's sequence.
    async fn catch_up(&self, handle: &OrgHandle, org: Uuid) -> Result<(), Error> {
        loop {
            let from = handle.read().seq;
            let events = self.store.events_after(org, from, 1000).await?;
            if events.is_empty() {
                return Ok(());
            }
            let mut st = handle.write();
            for e in events {
                if e.seq == st.seq + 1 {
                    st.apply(&e.change());
                    st.seq = e.seq;
                    // Published under the state lock: watchers get every event once, in order.
                    let _ = handle.feed.send(Arc::new(e));
                }
            }
        }
    }
}

/// The read path across replicas: several identity replicas on one database each keep their
/// own in-memory state, and apply the events the others commit.
impl Core {
    /// Brings one organization's state up to the store's last committed event (the events
    /// other replicas committed), under the organization's writer lock.
    pub async fn refresh(&self, handle: &OrgHandle, org: Uuid) -> Result<(), Error> {
        let _writer = handle.writer.lock().await;
        self.catch_up(handle, org).await
    }

    /// One follower pass: forgets the cached tokens other replicas revoked, reads every
    /// organization's last sequence in one statement, catches up the organizations that are
    /// behind and loads the ones created elsewhere. Returns how many organizations moved.
    pub async fn follow_once(&self) -> Result<usize, Error> {
        // Revocation times come from each replica's clock: look back far enough to cover skew.
        const CLOCK_SKEW: Micros = 60_000_000;
        let now = self.now();
        let since = *self
            .revocations_scanned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The token cache evicts every id this returns.
        self.store.revoked_since(since - CLOCK_SKEW).await?;
        *self
            .revocations_scanned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        let mut moved = 0;
        for (org, seq) in self.store.sequences().await? {
            if let Some(handle) = self.org_cached(org) {
                if handle.read().seq < seq {
                    self.refresh(&handle, org).await?;
                    moved += 1;
                }
            } else {
                self.org(org).await?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Waits until the organization's state has applied sequence `seq` (a consistency token
    /// returned by a write on any replica), at most `deadline`. A token is only handed out
    /// after its commit, so catching up from the store reaches it; a token beyond the store's
    /// last event was not issued for this organization (`OutOfRange`).
    pub async fn await_sequence(
        &self,
        handle: &OrgHandle,
        org: Uuid,
        seq: u64,
        deadline: std::time::Duration,
    ) -> Result<(), Error> {
        if handle.read().seq >= seq {
            return Ok(());
        }
        match tokio::time::timeout(deadline, self.refresh(handle, org)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "this replica has not applied consistency token {seq} within {} ms; retry",
                    deadline.as_millis()
                )));
            }
        }
        let applied = handle.read().seq;
        if applied >= seq {
            Ok(())
        } else {
            Err(Error::OutOfRange(format!(
                "consistency token {seq} is ahead of this organization's last event ({applied})"
            )))
        }
    }
}

fn state_from(loaded: crate::store::LoadedOrg) -> Result<OrgState, Error> {
    let org = loaded
        .entities
        .iter()
        .find_map(|e| match e {
            Entity::Organization(o) => Some(o.clone()),
            _ => None,
        })
        .ok_or_else(|| Error::Internal(format!("organization {} has no record", loaded.org)))?;
    let mut st = OrgState::new(org);
    for e in loaded.entities {
        st.insert(e);
    }
    st.seq = loaded.seq;
    Ok(st)
}
