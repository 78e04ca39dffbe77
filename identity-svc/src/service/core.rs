//! The application core: per-organization in-memory state kept in step with the store, the
//! single write path, and the change feed.
//!
//! Write path (group commit): take the state's write guard → apply the changes of the
//! mutations already validated but not committed yet (the organization's queue) → run the
//! mutation against that as a [`Draft`] (changes are applied as they are made so later steps see
//! earlier ones) → undo everything before the guard is released → queue the draft. A draft
//! that finds nothing queued nor committing is committed by its own caller (no hop to another
//! task on the sequential path); what is queued behind it goes to a committer task per
//! organization. Holding the writer lock, the committer commits what is queued in **one**
//! store transaction ([`Store::commit_batch`]: one compare-and-set of the organization's
//! sequence, consecutive event numbers, each draft's own request id), then applies the changes
//! for real, publishes the events in order and answers each caller with the sequence after its
//! own changes. So concurrent mutations of one organization share a transaction and an fsync,
//! and each is validated against the state after the ones queued before it. Readers never see
//! an uncommitted change.
//!
//! Failures acknowledge nothing that is not written: a batch that loses a race with another
//! replica ([`StoreError::Conflict`]) is not written at all, and every draft in it or queued
//! behind it runs again after catching up from the event log; a batch refused for any other
//! reason (a duplicate request id, a database error) is committed again draft by draft, so only
//! the offending draft fails, and the drafts after it run again (they were validated on top of
//! it). A draft whose result was decided on queued, uncommitted state (including a validation
//! error, or nothing to change) is answered only once what it saw is committed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::{Mutex, broadcast, oneshot};
use uuid::Uuid;

use super::auth::Authorized;
use super::clock::SharedClock;
use super::error::Error;
use super::mailer::Mailer;
use crate::domain::model::{Change, Entity, Micros, Organization};
use crate::domain::state::OrgState;
use crate::store::{Commit, EventRecord, SecretOp, Store, StoreError};

/// How many committed events a slow watcher may fall behind before it re-reads from the store.
const FEED_CAPACITY: usize = 4096;

/// At most this many queued drafts are committed in one transaction.
const MAX_BATCH: usize = 256;

/// Scheduler turns the group committer waits for callers of its previous batch to queue again.
const GATHER_TURNS: usize = 64;

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

/// A validated draft waiting for (or in) a group commit.
#[derive(Debug)]
struct Pending {
    /// The sequence it was validated at (after every draft queued before it).
    expected: u64,
    actor: String,
    request_id: Option<String>,
    time: Micros,
    changes: Vec<Change>,
    secrets: Vec<SecretOp>,
}

impl Pending {
    fn commit(&self, org: Uuid) -> Commit<'_> {
        Commit {
            org,
            expected_seq: self.expected,
            create_org: false,
            actor: &self.actor,
            request_id: self.request_id.as_deref(),
            time: self.time,
            changes: &self.changes,
            secrets: &self.secrets,
        }
    }

    /// The sequence after its changes: what its caller is answered.
    fn end(&self) -> u64 {
        self.expected + self.changes.len() as u64
    }
}

/// What a queued draft's caller is told.
#[derive(Debug)]
enum Outcome {
    /// Committed; the sequence after its changes.
    Committed(u64),
    /// Nothing was written and the state it was validated against is gone: catch up and run
    /// the mutation again.
    Retry,
    /// Nothing was written.
    Failed(Error),
}

/// The drafts of one organization between validation and commit.
///
/// Locked after the state (never the other way round) and never across an `await`.
#[derive(Debug, Default)]
struct Queue {
    /// The state's sequence the queued drafts were validated on top of.
    base: u64,
    /// The batch the committer is writing, in order.
    committing: Vec<Arc<Pending>>,
    /// Drafts validated after `committing`, in order, with their callers.
    waiting: Vec<(Arc<Pending>, oneshot::Sender<Outcome>)>,
    /// True while a committer task runs.
    active: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.committing.is_empty() && self.waiting.is_empty()
    }

    /// Every queued draft, in order.
    fn pending(&self) -> Vec<Arc<Pending>> {
        self.committing
            .iter()
            .cloned()
            .chain(self.waiting.iter().map(|(p, _)| p.clone()))
            .collect()
    }

    /// Whether a queued draft carries `request_id`.
    fn has_request(&self, request_id: &str) -> bool {
        self.committing
            .iter()
            .chain(self.waiting.iter().map(|(p, _)| p))
            .any(|p| p.request_id.as_deref() == Some(request_id))
    }

    /// Tells every waiting draft to run again (what it was validated on is not committed).
    fn retry_waiting(&mut self) {
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Outcome::Retry);
        }
    }
}

/// One step of [`Core::mutate`] decided under the locks.
enum Step<T> {
    /// Answered without a commit.
    Done(Result<Committed<T>, Error>),
    /// Queued: the result, valid once the queue says it is committed.
    Queued(Result<T, Error>, oneshot::Receiver<Outcome>),
    /// Nothing was queued nor being committed: the caller commits its draft itself (the
    /// queue's `committing`), without a hop to another task.
    Lead(Result<T, Error>, Arc<Pending>),
    /// The state moved under the queued drafts: catch up first.
    CatchUp,
    /// A queued draft carries the same request id: its result is this request's.
    Twin,
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
            if let Some(state) = load_state(&*store, id).await? {
                orgs.insert(id, OrgHandle::new(state));
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
        match load_state(&*self.store, id).await? {
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
    /// (after a conflict with another replica, or when a draft queued before it failed), each
    /// time on fresh state.
    pub async fn mutate<T>(
        &self,
        auth: &Authorized,
        org: Uuid,
        request_id: Option<&str>,
        mut f: impl FnMut(&mut Draft<'_>) -> Result<T, Error>,
    ) -> Result<Committed<T>, Error> {
        let handle = self.org(org).await?;
        loop {
            let (value, outcome) = match self.draft(&handle, auth, request_id, &mut f) {
                Step::Done(result) => return result,
                Step::Queued(value, reply) => (value, reply.await),
                Step::Lead(value, pending) => (value, Ok(self.lead(&handle, org, pending).await)),
                Step::CatchUp => {
                    self.settle(&handle, org).await?;
                    continue;
                }
                Step::Twin => {
                    // Wait until the batch in flight is over; once the draft with the same
                    // key is committed (or failed), the caller answers with what it created
                    // (its replay brings the state up to that commit).
                    drop(handle.writer.lock().await);
                    if request_id.is_some_and(|rid| handle.queue().has_request(rid)) {
                        // Still waiting for its batch: let the committer take the lock.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    return Err(Error::DuplicateRequest);
                }
            };
            match outcome {
                Ok(Outcome::Committed(seq)) => return value.map(|value| Committed { value, seq }),
                Ok(Outcome::Retry) => self.settle(&handle, org).await?,
                Ok(Outcome::Failed(e)) => return Err(e),
                Err(_) => return Err(Error::Internal("the group commit stopped".into())),
            }
        }
    }

    /// Runs `f` on the state plus the queued drafts and queues its draft: behind the batch in
    /// flight, or, when nothing is queued nor committing, as the caller's own to commit.
    /// Nothing it applies outlives the state's write guard.
    fn draft<T>(
        &self,
        handle: &Arc<OrgHandle>,
        auth: &Authorized,
        request_id: Option<&str>,
        f: &mut impl FnMut(&mut Draft<'_>) -> Result<T, Error>,
    ) -> Step<T> {
        let now = self.now();
        let mut st = handle.write();
        let mut queue = handle.queue();
        let queued = !queue.is_empty();
        if !queued {
            queue.base = st.seq;
        } else if queue.base != st.seq {
            // Events were applied from elsewhere under the queued drafts: they will fail
            // their compare-and-set. Their changes must not be applied to this state.
            return Step::CatchUp;
        }
        if request_id.is_some_and(|rid| queue.has_request(rid)) {
            return Step::Twin;
        }
        let base = st.seq;
        let pending = queue.pending();
        for c in pending.iter().flat_map(|p| &p.changes) {
            st.apply(c);
        }
        let expected = pending.last().map_or(base, |p| p.end());
        st.seq = expected;
        let mut draft = Draft {
            state: &mut st,
            changes: Vec::new(),
            secrets: Vec::new(),
            now,
        };
        let value = f(&mut draft);
        let Draft {
            mut changes,
            mut secrets,
            ..
        } = draft;
        for c in changes
            .iter()
            .rev()
            .chain(pending.iter().rev().flat_map(|p| p.changes.iter().rev()))
        {
            st.apply(&c.inverse());
        }
        st.seq = base;
        if value.is_err() {
            changes.clear();
            secrets.clear();
        }
        if !queued && changes.is_empty() && secrets.is_empty() {
            return Step::Done(value.map(|value| Committed {
                value,
                seq: expected,
            }));
        }
        let pending = Arc::new(Pending {
            expected,
            actor: auth.actor().to_owned(),
            request_id: request_id.map(str::to_owned),
            time: now,
            changes,
            secrets,
        });
        if !queue.active {
            // No committer: nothing is queued either (a committer stops only when the queue
            // is empty).
            queue.active = true;
            queue.committing.push(pending.clone());
            return Step::Lead(value, pending);
        }
        // Even a draft that changes nothing waits when it was decided on queued drafts: its
        // answer holds only if they commit.
        let (reply, answer) = oneshot::channel();
        queue.waiting.push((pending, reply));
        Step::Queued(value, answer)
    }

    /// Commits the caller's own draft, alone, when no committer runs; whatever was queued
    /// behind it meanwhile goes to a committer task.
    async fn lead(&self, handle: &Arc<OrgHandle>, org: Uuid, pending: Arc<Pending>) -> Outcome {
        /// If the caller goes away before its commit is over, what was queued behind it runs
        /// again and the organization gets no committer stuck: a commit that did go through
        /// is found by the next commit's compare-and-set, which catches up.
        struct Abandoned<'h>(Option<&'h OrgHandle>);
        impl Drop for Abandoned<'_> {
            fn drop(&mut self) {
                if let Some(handle) = self.0 {
                    let mut queue = handle.queue();
                    queue.committing.clear();
                    queue.retry_waiting();
                    queue.active = false;
                }
            }
        }
        let mut abandoned = Abandoned(Some(handle));
        let writer = handle.writer.lock().await;
        let outcome = commit_batch(&*self.store, handle, org, &[pending])
            .await
            .pop()
            .unwrap_or_else(|| Outcome::Failed(Error::Internal("a batch without outcome".into())));
        {
            let mut queue = handle.queue();
            if queue.waiting.is_empty() {
                queue.active = false;
            } else {
                tokio::spawn(commit_queued(self.store.clone(), handle.clone(), org));
            }
        }
        abandoned.0 = None;
        drop(writer);
        outcome
    }

    /// Waits until no batch is being committed and catches up with the store.
    async fn settle(&self, handle: &OrgHandle, org: Uuid) -> Result<(), Error> {
        let _writer = handle.writer.lock().await;
        self.catch_up(handle, org).await
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

/// The group committer of one organization: commits what is queued, batch after batch, until
/// the queue is empty. A task of its own, so that a caller that goes away (a cancelled request)
/// cannot leave the others waiting.
async fn commit_queued(store: Arc<dyn Store>, handle: Arc<OrgHandle>, org: Uuid) {
    let _writer = handle.writer.lock().await;
    let mut previous = 0;
    loop {
        // Commit delay (PostgreSQL's `commit_delay` with `commit_siblings`): when the last batch
        // had several drafts, the callers it answered are about to queue again; give them a few
        // scheduler turns (no timer) to join this batch instead of forming small batches behind
        // it.
        if previous > 1 {
            for _ in 0..GATHER_TURNS {
                if handle.queue().waiting.len() >= previous {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        let (batch, replies): (Vec<_>, Vec<_>) = {
            let mut queue = handle.queue();
            if queue.waiting.is_empty() {
                queue.active = false;
                return;
            }
            let n = queue.waiting.len().min(MAX_BATCH);
            let taken = queue.waiting.drain(..n).unzip();
            queue.committing.clone_from(&taken.0);
            taken
        };
        previous = batch.len();
        let outcomes = commit_batch(&*store, &handle, org, &batch).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that went away is not waiting.
            let _ = reply.send(outcome);
        }
    }
}

/// Commits `batch` (the queue's `committing`) and says what each of its drafts gets. Applies
/// and publishes what was committed; on failure, the drafts queued behind run again.
async fn commit_batch(
    store: &dyn Store,
    handle: &OrgHandle,
    org: Uuid,
    batch: &[Arc<Pending>],
) -> Vec<Outcome> {
    let commits: Vec<Commit<'_>> = batch.iter().map(|p| p.commit(org)).collect();
    let result = store.commit_batch(&commits).await;
    let Err(error) = result else {
        applied(handle, org, batch);
        return batch.iter().map(|p| Outcome::Committed(p.end())).collect();
    };
    // A conflict or a duplicate request id: nothing of the batch was written (the store's
    // transaction is all or nothing). Any other error may have come after the commit.
    let definite = matches!(error, StoreError::Conflict | StoreError::DuplicateRequest);
    if batch.len() == 1 || matches!(error, StoreError::Conflict) {
        // A conflict is the whole batch's: another replica committed, every draft runs again
        // after catching up.
        let mut queue = handle.queue();
        queue.committing.clear();
        queue.retry_waiting();
        drop(queue);
        let first = failed(error, definite);
        return std::iter::once(first)
            .chain(batch[1..].iter().map(|_| Outcome::Retry))
            .collect();
    }
    // A duplicate request id or a database error: one draft at a time, so only the offending
    // one fails. The drafts after a failed one were validated on top of it: they run again.
    let mut outcomes = Vec::with_capacity(batch.len());
    for (i, pending) in batch.iter().enumerate() {
        match store.commit(pending.commit(org)).await {
            Ok(_) => {
                applied(handle, org, std::slice::from_ref(pending));
                outcomes.push(Outcome::Committed(pending.end()));
            }
            Err(e) => {
                // A conflict after an ambiguous error: the batch itself may be what is in the
                // way, and the drafts after this one with it.
                let unknown = !definite && matches!(e, StoreError::Conflict);
                outcomes.push(failed(e, definite));
                outcomes.extend(batch[i + 1..].iter().map(|_| {
                    if unknown {
                        failed(StoreError::Conflict, false)
                    } else {
                        Outcome::Retry
                    }
                }));
                let mut queue = handle.queue();
                queue.committing.clear();
                queue.retry_waiting();
                break;
            }
        }
    }
    outcomes
}

/// What the draft of a failed commit gets. `definite`: the batch it was in was certainly not
/// written, so a conflict now is another replica's doing (after an ambiguous error, the batch
/// itself may have been written: running the draft again could apply it twice).
fn failed(error: StoreError, definite: bool) -> Outcome {
    match error {
        StoreError::Conflict if definite => Outcome::Retry,
        StoreError::Conflict => Outcome::Failed(Error::Internal(
            "the commit failed and may or may not have been written".into(),
        )),
        // A concurrent request with the same key committed first: nothing was written; the
        // caller answers with what that request created (see `mutate`).
        StoreError::DuplicateRequest => Outcome::Failed(Error::DuplicateRequest),
        e => Outcome::Failed(e.into()),
    }
}

/// Applies committed drafts (the first ones of the queue's `committing`) to the state, then
/// publishes their events in order.
fn applied(handle: &OrgHandle, org: Uuid, drafts: &[Arc<Pending>]) {
    {
        let mut st = handle.write();
        let mut queue = handle.queue();
        for p in drafts {
            debug_assert_eq!(st.seq, p.expected, "drafts commit in queue order");
            for c in &p.changes {
                st.apply(c);
            }
            st.seq = p.end();
        }
        let done = drafts.len().min(queue.committing.len());
        queue.committing.drain(..done);
        queue.base = st.seq;
    }
    if handle.feed.receiver_count() == 0 {
        // Nobody is watching.
        return;
    }
    for p in drafts {
        for (seq, c) in (p.expected + 1..).zip(&p.changes) {
            let record = EventRecord {
                org,
                seq,
                actor: p.actor.clone(),
                action: c.action.clone(),
                target: c.target.clone(),
                before: c.before.clone(),
                after: c.after.clone(),
                affected_users: c.affected_users.clone(),
                request_id: p.request_id.clone(),
                time: p.time,
            };
            let _ = handle.feed.send(Arc::new(record));
        }
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

#[cfg(test)]
mod tests {
    //! The group commit through [`Core::mutate`], on SQLite and PostgreSQL. A [`Gated`] store
    //! holds each store write until the test lets it through, so what is queued behind a
    //! commit in flight is decided by the test, not by timing.

    use std::collections::BTreeSet;

    use async_trait::async_trait;
    use tokio::sync::{Semaphore, watch};

    use super::*;
    use crate::domain::model::{Micros, Organization, Principal, Stage, StagePurpose};
    use crate::domain::names::fmt;
    use crate::service::auth::Authorized;
    use crate::service::clock::SystemClock;
    use crate::store::contract_tests::{on_postgres, on_sqlite};
    use crate::store::{
        CredentialStore, Credentials, EventFilter, EventLog, InvitationToken, LoadedOrg,
        TokenRecord, TokenStore,
    };

    /// A store whose writes (`commit_batch`, hence `commit`) each wait for a permit; the
    /// sizes of the batches that arrived are published in order.
    #[derive(Debug)]
    struct Gated {
        inner: Arc<dyn Store>,
        permits: Semaphore,
        arrived: watch::Sender<Vec<usize>>,
    }

    impl Gated {
        fn new(inner: Arc<dyn Store>) -> Arc<Self> {
            Arc::new(Self {
                inner,
                permits: Semaphore::new(0),
                arrived: watch::Sender::new(Vec::new()),
            })
        }

        /// Lets `n` more writes through.
        fn allow(&self, n: usize) {
            self.permits.add_permits(n);
        }

        /// Waits until `n` writes have arrived; their batch sizes.
        async fn arrived(&self, n: usize) -> Vec<usize> {
            self.arrived
                .subscribe()
                .wait_for(|sizes| sizes.len() >= n)
                .await
                .unwrap()
                .clone()
        }
    }

    #[async_trait]
    impl EventLog for Gated {
        async fn organization_ids(&self) -> Result<Vec<Uuid>, StoreError> {
            self.inner.organization_ids().await
        }
        async fn load_organization(&self, org: Uuid) -> Result<Option<LoadedOrg>, StoreError> {
            self.inner.load_organization(org).await
        }
        async fn commit_batch(&self, commits: &[Commit<'_>]) -> Result<u64, StoreError> {
            self.arrived.send_modify(|sizes| sizes.push(commits.len()));
            self.permits.acquire().await.unwrap().forget();
            self.inner.commit_batch(commits).await
        }
        async fn events_after(
            &self,
            org: Uuid,
            after: u64,
            limit: usize,
        ) -> Result<Vec<EventRecord>, StoreError> {
            self.inner.events_after(org, after, limit).await
        }
        async fn list_events(
            &self,
            org: Uuid,
            filter: &EventFilter,
            after: u64,
            limit: usize,
        ) -> Result<Vec<EventRecord>, StoreError> {
            self.inner.list_events(org, filter, after, limit).await
        }
        async fn find_request(
            &self,
            org: Uuid,
            request_id: &str,
        ) -> Result<Option<String>, StoreError> {
            self.inner.find_request(org, request_id).await
        }
        async fn sequences(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
            self.inner.sequences().await
        }
    }

    #[async_trait]
    impl TokenStore for Gated {
        async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
            self.inner.find_token(hash).await
        }
        async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
            self.inner.insert_token(token).await
        }
        async fn revoke_token(&self, id: Uuid, at: Micros) -> Result<bool, StoreError> {
            self.inner.revoke_token(id, at).await
        }
        async fn list_tokens(
            &self,
            org: Uuid,
            principal: Principal,
        ) -> Result<Vec<TokenRecord>, StoreError> {
            self.inner.list_tokens(org, principal).await
        }
        async fn revoked_since(&self, since: Micros) -> Result<Vec<Uuid>, StoreError> {
            self.inner.revoked_since(since).await
        }
    }

    #[async_trait]
    impl CredentialStore for Gated {
        async fn find_invitation_token(
            &self,
            hash: &str,
        ) -> Result<Option<InvitationToken>, StoreError> {
            self.inner.find_invitation_token(hash).await
        }
        async fn credentials(&self, org: Uuid, user: Uuid) -> Result<Credentials, StoreError> {
            self.inner.credentials(org, user).await
        }
        async fn set_login_failures(
            &self,
            org: Uuid,
            user: Uuid,
            failed_logins: u32,
            locked_until: Option<Micros>,
        ) -> Result<(), StoreError> {
            self.inner
                .set_login_failures(org, user, failed_logins, locked_until)
                .await
        }
    }

    /// A core over `gated` with one organization (sequence 1), created through it.
    async fn core_with_org(gated: &Arc<Gated>) -> (Arc<Core>, Uuid, Authorized) {
        let mailbox = std::env::temp_dir().join(format!("core-tests-{}", Uuid::new_v4()));
        let core = Core::load(
            gated.clone(),
            Arc::new(SystemClock),
            Mailer::Mailbox(mailbox),
            crate::service::auth::TOKEN_CACHE_TTL,
        )
        .await
        .unwrap();
        let org = Uuid::new_v4();
        let auth = Authorized::system(Some(org), "operator".to_owned());
        let now = core.now();
        gated.allow(1);
        let created = core
            .create_org(
                &auth,
                Organization {
                    id: org,
                    display_name: "Acme".into(),
                    create_time: now,
                    update_time: now,
                    rev: 1,
                },
                |_| Ok(()),
            )
            .await
            .unwrap();
        assert_eq!(created.seq, 1);
        (Arc::new(core), org, auth)
    }

    fn stage_entity(key: &str) -> Entity {
        Entity::Stage(Stage {
            key: key.to_owned(),
            display_name: key.to_uppercase(),
            order: 0,
            purpose: StagePurpose::NonProduction,
            rev: 1,
        })
    }

    /// A mutation creating stage `key`, refused when it exists; returns the sequence its
    /// draft was validated at.
    fn create_stage(org: Uuid, key: &str) -> impl FnMut(&mut Draft<'_>) -> Result<u64, Error> {
        let key = key.to_owned();
        move |d| {
            if d.state().stages.contains_key(&key) {
                return Err(Error::exists("STAGE_EXISTS", format!("stage {key} exists")));
            }
            let seen = d.state().seq;
            d.change(
                "stage.created",
                fmt::stage(org, &key),
                None,
                Some(stage_entity(&key)),
                Vec::new(),
            );
            Ok(seen)
        }
    }

    type Call = tokio::task::JoinHandle<Result<Committed<u64>, Error>>;

    /// `create_stage(key)` in a task of its own, with an optional request id.
    fn spawn_create(
        core: &Arc<Core>,
        auth: &Authorized,
        org: Uuid,
        key: &str,
        request_id: Option<&str>,
    ) -> Call {
        let (core, auth, key) = (core.clone(), auth.clone(), key.to_owned());
        let request_id = request_id.map(str::to_owned);
        tokio::spawn(async move {
            core.mutate(&auth, org, request_id.as_deref(), create_stage(org, &key))
                .await
        })
    }

    /// Yields until `n` drafts wait behind the batch in flight (no timing involved: the
    /// spawned mutations run whenever this task yields).
    async fn until_waiting(core: &Core, org: Uuid, n: usize) {
        let handle = core.org_cached(org).unwrap();
        while handle.queue().waiting.len() < n {
            tokio::task::yield_now().await;
        }
    }

    /// The store's events are 1..=`seq` without a gap, the state is at `seq`, and the
    /// state reloaded from the store equals the state in memory.
    async fn assert_consistent(core: &Core, org: Uuid, seq: u64) -> Vec<EventRecord> {
        let events = core.store.events_after(org, 0, 10_000).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=seq).collect::<Vec<_>>()
        );
        let handle = core.org_cached(org).unwrap();
        let loaded = load_state(&*core.store, org).await.unwrap().unwrap();
        let st = handle.read();
        assert_eq!(st.seq, seq);
        assert_eq!(loaded.seq, seq);
        assert_eq!(
            st.stages.keys().collect::<Vec<_>>(),
            loaded.stages.keys().collect::<Vec<_>>()
        );
        assert!(handle.queue().is_empty());
        events
    }

    /// Receives `n` events from the feed: they must be consecutive from `from`.
    fn drain_feed(feed: &mut broadcast::Receiver<Arc<EventRecord>>, from: u64, n: u64) {
        for seq in from..from + n {
            assert_eq!(feed.try_recv().unwrap().seq, seq);
        }
        assert!(feed.try_recv().is_err(), "more events than commits");
    }

    async fn many_concurrent_mutations_are_all_acknowledged(store: Arc<dyn Store>) {
        let gated = Gated::new(store);
        let (core, org, auth) = core_with_org(&gated).await;
        gated.allow(100_000);
        let mut feed = core.org_cached(org).unwrap().subscribe();
        let calls: Vec<Call> = (0..64)
            .map(|i| spawn_create(&core, &auth, org, &format!("s{i}"), None))
            .collect();
        let mut seqs = BTreeSet::new();
        for call in calls {
            let c = call.await.unwrap().unwrap();
            // Each answer is the sequence right after its own change, validated just before.
            assert_eq!(c.seq, c.value + 1);
            assert!(seqs.insert(c.seq), "sequence {} answered twice", c.seq);
        }
        assert_eq!(seqs, (2..=65).collect());
        let events = assert_consistent(&core, org, 65).await;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.action == "stage.created")
                .count(),
            64
        );
        drain_feed(&mut feed, 2, 64);
        // One write per batch; the 64 drafts took at most 64 of them.
        let sizes = gated.arrived(1).await;
        assert_eq!(sizes.iter().skip(1).sum::<usize>(), 64);
    }

    async fn queued_drafts_see_each_other_and_commit_together(store: Arc<dyn Store>) {
        let gated = Gated::new(store);
        let (core, org, auth) = core_with_org(&gated).await;
        let handle = core.org_cached(org).unwrap();
        let mut feed = handle.subscribe();

        let first = spawn_create(&core, &auth, org, "a", None);
        gated.arrived(2).await;
        // In flight, not committed: readers do not see it.
        assert!(!handle.read().stages.contains_key("a"));
        // One after the other, so that the queue's order is known.
        let again = spawn_create(&core, &auth, org, "a", None);
        until_waiting(&core, org, 1).await;
        let b = spawn_create(&core, &auth, org, "b", None);
        until_waiting(&core, org, 2).await;
        let c = spawn_create(&core, &auth, org, "c", None);
        until_waiting(&core, org, 3).await;
        assert!(!handle.read().stages.contains_key("a"));
        assert_eq!(handle.read().seq, 1);
        // Refused because of a draft that is not committed yet: not answered before it is.
        assert!(!again.is_finished());

        gated.allow(2);
        assert_eq!(first.await.unwrap().unwrap().seq, 2);
        let refused = again.await.unwrap();
        assert!(
            matches!(refused, Err(Error::AlreadyExists { .. })),
            "{refused:?}"
        );
        // Validated on top of each other: b after a, c after b.
        let b = b.await.unwrap().unwrap();
        let c = c.await.unwrap().unwrap();
        assert_eq!((b.value, b.seq, c.value, c.seq), (2, 3, 3, 4));
        assert_eq!(gated.arrived(3).await, [1, 1, 3]);
        assert_consistent(&core, org, 4).await;
        drain_feed(&mut feed, 2, 3);
    }

    async fn conflict_inside_a_batch_runs_every_draft_again(store: Arc<dyn Store>) {
        let gated = Gated::new(store.clone());
        let (core, org, auth) = core_with_org(&gated).await;
        let mut feed = core.org_cached(org).unwrap().subscribe();

        let first = spawn_create(&core, &auth, org, "a", None);
        gated.arrived(2).await;
        let queued: Vec<Call> = ["b", "qa", "c", "d"]
            .iter()
            .map(|key| spawn_create(&core, &auth, org, key, None))
            .collect();
        until_waiting(&core, org, 4).await;
        gated.allow(1);
        assert_eq!(first.await.unwrap().unwrap().seq, 2);
        // The batch of four is at the store; another replica commits first (directly to the
        // store, at the same sequence), creating one of the stages.
        gated.arrived(3).await;
        let other = [Change {
            action: "stage.created".into(),
            target: fmt::stage(org, "qa"),
            before: None,
            after: Some(stage_entity("qa")),
            affected_users: Vec::new(),
        }];
        let seq = store
            .commit(Commit {
                org,
                expected_seq: 2,
                create_org: false,
                actor: "users/elsewhere",
                request_id: None,
                time: core.now(),
                changes: &other,
                secrets: &[],
            })
            .await
            .unwrap();
        assert_eq!(seq, 3);
        gated.allow(100);

        let mut acknowledged = BTreeSet::new();
        let mut refused = Vec::new();
        for (key, call) in ["b", "qa", "c", "d"].into_iter().zip(queued) {
            match call.await.unwrap() {
                Ok(c) => assert!(acknowledged.insert(c.seq)),
                Err(e) => refused.push((key, e)),
            }
        }
        // Ran again after catching up: the stage the other replica created is refused, the
        // rest committed after its event.
        assert!(
            matches!(refused.as_slice(), [("qa", Error::AlreadyExists { .. })]),
            "{refused:?}"
        );
        assert_eq!(acknowledged, (4..=6).collect());
        assert_eq!(gated.arrived(3).await[2], 4);
        let events = assert_consistent(&core, org, 6).await;
        assert_eq!(events[2].actor, "users/elsewhere");
        // The feed has every event once, in order, including the other replica's.
        drain_feed(&mut feed, 2, 5);
    }

    async fn duplicate_request_inside_a_batch_fails_only_its_draft(store: Arc<dyn Store>) {
        let gated = Gated::new(store);
        let (core, org, auth) = core_with_org(&gated).await;
        gated.allow(1);
        let used = spawn_create(&core, &auth, org, "used", Some("dup"));
        assert_eq!(used.await.unwrap().unwrap().seq, 2);
        let mut feed = core.org_cached(org).unwrap().subscribe();

        let first = spawn_create(&core, &auth, org, "a", None);
        gated.arrived(3).await;
        let calls: Vec<(&str, Call)> = [
            ("b", Some("r-b")),
            ("c", Some("dup")),
            ("d", Some("r-d")),
            ("e", None),
        ]
        .into_iter()
        .map(|(key, rid)| (key, spawn_create(&core, &auth, org, key, rid)))
        .collect();
        until_waiting(&core, org, 4).await;
        gated.allow(100);
        assert_eq!(first.await.unwrap().unwrap().seq, 3);

        let mut acknowledged = BTreeSet::new();
        for (key, call) in calls {
            match (key, call.await.unwrap()) {
                ("c", Err(Error::DuplicateRequest)) => {}
                ("c", other) => panic!("the reused request id: {other:?}"),
                (_, Ok(c)) => assert!(acknowledged.insert(c.seq)),
                (key, Err(e)) => panic!("{key}: {e:?}"),
            }
        }
        assert_eq!(acknowledged, (4..=6).collect());
        // The batch of four was refused, then committed one by one up to the offending
        // draft; the drafts after it ran again.
        let sizes = gated.arrived(5).await;
        assert_eq!(&sizes[2..5], [1, 4, 1]);
        let events = assert_consistent(&core, org, 6).await;
        assert!(
            !core
                .org_cached(org)
                .unwrap()
                .read()
                .stages
                .contains_key("c")
        );
        assert_eq!(
            core.store.find_request(org, "dup").await.unwrap(),
            Some(fmt::stage(org, "used"))
        );
        for (rid, key) in [("r-b", "b"), ("r-d", "d")] {
            assert_eq!(
                core.store.find_request(org, rid).await.unwrap(),
                Some(fmt::stage(org, key))
            );
            let event = events
                .iter()
                .find(|e| e.target == fmt::stage(org, key))
                .unwrap();
            assert_eq!(event.request_id.as_deref(), Some(rid));
        }
        drain_feed(&mut feed, 3, 4);
    }

    async fn a_caller_that_goes_away_mid_commit_blocks_nobody(store: Arc<dyn Store>) {
        let gated = Gated::new(store);
        let (core, org, auth) = core_with_org(&gated).await;
        // Commits its own draft; held at the store.
        let leader = spawn_create(&core, &auth, org, "gone", None);
        gated.arrived(2).await;
        let behind: Vec<Call> = ["b", "c"]
            .iter()
            .map(|key| spawn_create(&core, &auth, org, key, None))
            .collect();
        until_waiting(&core, org, 2).await;
        // The request is cancelled (the client hung up) before its commit got through.
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        gated.allow(100);
        // Validated on top of the abandoned draft, the others ran again without it.
        let mut seqs = BTreeSet::new();
        for call in behind {
            assert!(seqs.insert(call.await.unwrap().unwrap().seq));
        }
        assert_eq!(seqs, (2..=3).collect());
        assert_consistent(&core, org, 3).await;
        assert!(
            !core
                .org_cached(org)
                .unwrap()
                .read()
                .stages
                .contains_key("gone")
        );
        // And the organization still commits.
        let after = spawn_create(&core, &auth, org, "after", None);
        assert_eq!(after.await.unwrap().unwrap().seq, 4);
    }

    /// A request sent twice at once: the second draft is not queued behind the first (which
    /// carries its request id); it waits for the first's commit, catches up and returns
    /// `DuplicateRequest` (its caller then answers with the first's result). One commit.
    async fn a_twin_request_waits_for_the_first_and_commits_nothing(store: Arc<dyn Store>) {
        let gated = Gated::new(store);
        let (core, org, auth) = core_with_org(&gated).await;
        let first = spawn_create(&core, &auth, org, "a", Some("twin"));
        // The first request's commit is held at the gate (the organization's was write 1).
        assert_eq!(gated.arrived(2).await.len(), 2);
        let twin = spawn_create(&core, &auth, org, "b", Some("twin"));
        // On a current-thread runtime the twin runs its draft (no I/O before it blocks) while
        // the test yields: it reaches the writer lock the first commit holds.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(core.org_cached(org).unwrap().queue().waiting.is_empty());
        gated.allow(100);
        assert_eq!(first.await.unwrap().unwrap().seq, 2);
        assert!(matches!(twin.await.unwrap(), Err(Error::DuplicateRequest)));
        // No second write was attempted, and the state has the first's stage only.
        assert_eq!(gated.arrived(2).await.len(), 2);
        assert_consistent(&core, org, 2).await;
        let handle = core.org_cached(org).unwrap();
        assert!(handle.read().stages.contains_key("a"));
        assert!(!handle.read().stages.contains_key("b"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_twin_request_waits_for_the_first_and_commits_nothing_on_sqlite() {
        on_sqlite(a_twin_request_waits_for_the_first_and_commits_nothing).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_twin_request_waits_for_the_first_and_commits_nothing_on_postgres() {
        on_postgres(a_twin_request_waits_for_the_first_and_commits_nothing).await;
    }

    macro_rules! on_both {
        ($($case:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        super::on_sqlite(super::$case).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        super::on_postgres(super::$case).await;
                    }
                )*
            }
        };
    }

    on_both!(
        many_concurrent_mutations_are_all_acknowledged,
        queued_drafts_see_each_other_and_commit_together,
        conflict_inside_a_batch_runs_every_draft_again,
        duplicate_request_inside_a_batch_fails_only_its_draft,
        a_caller_that_goes_away_mid_commit_blocks_nobody,
    );
}
