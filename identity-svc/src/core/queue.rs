//! The drafts of an organization between validation and commit ([`Queue`]), and the group
//! committer that writes them in batches: one store transaction per batch, then the changes
//! applied to the state and the events published in order (see [`commit`](super::commit)).

use std::sync::Arc;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::store::{Commit, EventRecord, SecretOp, StoreError};
use super::{OrgHandle, Storage};
use crate::domain::model::{Change, Micros};
use crate::error::{Error, Own};

/// At most this many queued drafts are committed in one transaction.
const MAX_BATCH: usize = 256;

/// Histogram of the drafts committed per store transaction (1 on the sequential path).
pub(crate) const COMMIT_BATCH_SIZE: &str = "identity_commit_batch_size";
/// Histogram of a batch's store transaction, in seconds, labelled `outcome` (`ok`, `error`).
pub(crate) const COMMIT_DURATION_SECONDS: &str = "identity_commit_duration_seconds";

/// Scheduler turns the group committer waits for callers of its previous batch to queue again.
const GATHER_TURNS: usize = 64;

/// A validated draft waiting for (or in) a group commit.
#[derive(Debug)]
pub(super) struct Pending {
    /// The sequence it was validated at (after every draft queued before it).
    pub(super) expected: u64,
    pub(super) actor: String,
    pub(super) request_id: Option<String>,
    pub(super) time: Micros,
    pub(super) changes: Vec<Change>,
    pub(super) secrets: Vec<SecretOp>,
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
    pub(super) fn end(&self) -> u64 {
        self.expected + self.changes.len() as u64
    }
}

/// What a queued draft's caller is told.
#[derive(Debug)]
pub(super) enum Outcome {
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
pub(super) struct Queue {
    /// The state's sequence the queued drafts were validated on top of.
    pub(super) base: u64,
    /// The batch the committer is writing, in order.
    pub(super) committing: Vec<Arc<Pending>>,
    /// Drafts validated after `committing`, in order, with their callers.
    pub(super) waiting: Vec<(Arc<Pending>, oneshot::Sender<Outcome>)>,
    /// True while a committer task runs.
    pub(super) active: bool,
}

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.committing.is_empty() && self.waiting.is_empty()
    }

    /// Every queued draft, in order.
    pub(super) fn pending(&self) -> Vec<Arc<Pending>> {
        self.committing
            .iter()
            .cloned()
            .chain(self.waiting.iter().map(|(p, _)| p.clone()))
            .collect()
    }

    /// Whether a queued draft carries `request_id`.
    pub(super) fn has_request(&self, request_id: &str) -> bool {
        self.committing
            .iter()
            .chain(self.waiting.iter().map(|(p, _)| p))
            .any(|p| p.request_id.as_deref() == Some(request_id))
    }

    /// Tells every waiting draft to run again (what it was validated on is not committed).
    pub(super) fn retry_waiting(&mut self) {
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Outcome::Retry);
        }
    }
}

/// The group committer of one organization: commits what is queued, batch after batch, until
/// the queue is empty. A task of its own, so that a caller that goes away (a cancelled request)
/// cannot leave the others waiting.
pub(super) async fn commit_queued(storage: Arc<Storage>, handle: Arc<OrgHandle>, org: Uuid) {
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
        let outcomes = commit_batch(&storage, &handle, org, &batch).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A caller that went away is not waiting.
            let _ = reply.send(outcome);
        }
    }
}

/// Commits `batch` (the queue's `committing`) and says what each of its drafts gets. Applies
/// and publishes what was committed; on failure, the drafts queued behind run again.
pub(super) async fn commit_batch(
    storage: &Storage,
    handle: &OrgHandle,
    org: Uuid,
    batch: &[Arc<Pending>],
) -> Vec<Outcome> {
    let commits: Vec<Commit<'_>> = batch.iter().map(|p| p.commit(org)).collect();
    let started = std::time::Instant::now();
    let result = storage.commit_batch(&commits).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    #[allow(clippy::cast_precision_loss)] // at most MAX_BATCH drafts
    let size = batch.len() as f64;
    metrics::histogram!(COMMIT_BATCH_SIZE).record(size);
    metrics::histogram!(COMMIT_DURATION_SECONDS, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
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
        match storage.commit(pending.commit(org)).await {
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
        StoreError::Conflict => Outcome::Failed(Error::Own(Own::OutcomeUnknown(
            "the database failed during the commit, which may or may not have been written; \
             retry with the same request_id"
                .into(),
        ))),
        // A concurrent request with the same key committed first: nothing was written; the
        // caller answers with what that request created (see `mutate`).
        StoreError::DuplicateRequest => Outcome::Failed(Error::Own(Own::DuplicateRequest)),
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
