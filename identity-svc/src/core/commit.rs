//! The write path: a mutation runs on a [`Draft`] of an organization's state and is committed
//! with compare-and-set + its events in one store transaction.
//!
//! Write path (group commit): take the state's write guard → apply the changes of the
//! mutations already validated but not committed yet (the organization's queue) → run the
//! mutation against that as a [`Draft`] (changes are applied as they are made so later steps see
//! earlier ones) → undo everything before the guard is released → queue the draft. A draft
//! that finds nothing queued nor committing is committed by its own caller (no hop to another
//! task on the sequential path); what is queued behind it goes to a committer task per
//! organization. Holding the writer lock, the committer commits what is queued in **one**
//! store transaction (`Store::commit_batch`: one compare-and-set of the organization's
//! sequence, consecutive event numbers, each draft's own request id), then applies the changes
//! for real, publishes the events in order and answers each caller with the sequence after its
//! own changes. So concurrent mutations of one organization share a transaction and an fsync,
//! and each is validated against the state after the ones queued before it. Readers never see
//! an uncommitted change.
//!
//! Failures acknowledge nothing that is not written: a batch that loses a race with another
//! replica ([`StoreError::Conflict`](super::StoreError::Conflict)) is not written at all, and every draft in it or queued
//! behind it runs again after catching up from the event log; a batch refused for any other
//! reason (a duplicate request id, a database error) is committed again draft by draft, so only
//! the offending draft fails, and the drafts after it run again (they were validated on top of
//! it). A draft whose result was decided on queued, uncommitted state (including a validation
//! error, or nothing to change) is answered only once what it saw is committed.
//!
//! Every write takes a [`Proof`]: an [`Authorized`], or a proof the session module makes for
//! the public RPCs that write (AcceptInvitation).

use std::sync::Arc;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::queue::{Outcome, Pending, commit_batch, commit_queued};
use super::sealed::Sealed;
use super::store::{Commit, SecretOp};
use super::{Core, OrgHandle};
use crate::auth::Authorized;
use crate::domain::model::{Change, Entity, Micros, Organization};
use crate::domain::state::OrgState;
use crate::error::{Error, Own};

/// What a write is made with: the proof that it is allowed. Sealed: [`Authorized`] (made only by
/// `auth`) and the proofs of [`sessions`](super::sessions) are the only ones.
pub trait Proof: Sealed + Send + Sync {
    /// Audit name of who writes (the events' actor).
    fn actor(&self) -> &str;
}

impl Sealed for Authorized {}

impl Proof for Authorized {
    fn actor(&self) -> &str {
        Authorized::actor(self)
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

impl Core {
    /// Creates an organization: `seed` makes its initial entities on an empty state.
    #[tracing::instrument(name = "commit", skip_all, fields(organization = %org.id))]
    pub async fn create_org<T>(
        &self,
        auth: &Authorized,
        org: Organization,
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
            .storage
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
    #[tracing::instrument(name = "commit", skip_all, fields(organization = %org))]
    pub async fn mutate<T>(
        &self,
        auth: &impl Proof,
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
                    return Err(Error::Own(Own::DuplicateRequest));
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
        auth: &impl Proof,
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
            span: tracing::Span::current(),
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
        let outcome = commit_batch(&self.storage, handle, org, &[pending])
            .await
            .pop()
            .unwrap_or_else(|| Outcome::Failed(Error::Internal("a batch without outcome".into())));
        {
            let mut queue = handle.queue();
            if queue.waiting.is_empty() {
                queue.active = false;
            } else {
                tokio::spawn(commit_queued(self.storage.clone(), handle.clone(), org));
            }
        }
        abandoned.0 = None;
        drop(writer);
        outcome
    }

    /// Waits until no batch is being committed and catches up with the store.
    pub(super) async fn settle(&self, handle: &OrgHandle, org: Uuid) -> Result<(), Error> {
        let _writer = handle.writer.lock().await;
        self.catch_up(handle, org).await
    }

    /// Applies the events other replicas committed since the state's sequence.
    pub(super) async fn catch_up(&self, handle: &OrgHandle, org: Uuid) -> Result<(), Error> {
        loop {
            let from = handle.read().seq;
            let events = self.storage.store.events_after(org, from, 1000).await?;
            if events.is_empty() {
                return Ok(());
            }
            let mut st = handle.write();
            let mut applied = 0u64;
            for e in events {
                if e.seq == st.seq + 1 {
                    st.apply(&e.change());
                    st.seq = e.seq;
                    applied += 1;
                    // Published under the state lock: watchers get every event once, in order.
                    let _ = handle.feed.send(Arc::new(e));
                }
            }
            metrics::counter!(super::replicas::FOLLOWER_EVENTS_APPLIED_TOTAL).increment(applied);
        }
    }
}

#[cfg(test)]
mod tests;
