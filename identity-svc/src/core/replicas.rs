//! The read path across replicas: several identity replicas on one database each keep their
//! own in-memory state, and apply the events the others commit (the follower, consistency
//! tokens).

use std::sync::Arc;

use shared::traces::Traces;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{Core, OrgHandle};
use crate::domain::model::Micros;
use crate::error::{Error, Own};

/// Gauge of the events this replica was behind the store at the start of its last follower
/// pass (summed over organizations; an organization it has not loaded counts all its events).
pub(crate) const FOLLOWER_LAG_EVENTS: &str = "identity_follower_lag_events";
/// Gauge of the Unix time (seconds) of the last follower pass that succeeded.
pub(crate) const FOLLOWER_LAST_SUCCESS: &str = "identity_follower_last_success_timestamp_seconds";
/// Counter of the events this replica applied from the store (committed by other replicas).
pub(crate) const FOLLOWER_EVENTS_APPLIED_TOTAL: &str = "identity_follower_events_applied_total";

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
    /// behind and loads the ones created elsewhere, then ends the streams holding a revoked
    /// token. Returns how many organizations moved.
    pub async fn follow_once(&self) -> Result<usize, Error> {
        self.follow_once_traced(&Traces::off()).await
    }

    /// [`Core::follow_once`], recording each organization it catches up as a
    /// `follower_catch_up` span of a trace of its own (see `follow_orgs`).
    pub async fn follow_once_traced(&self, traces: &Traces) -> Result<usize, Error> {
        // Revocation times come from each replica's clock: look back far enough to cover skew.
        const CLOCK_SKEW: Micros = 60_000_000;
        let now = self.now();
        let since = *self
            .revocations_scanned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let revoked = self
            .storage
            .tokens
            .forget_revoked_since(since - CLOCK_SKEW)
            .await?;
        *self
            .revocations_scanned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        let moved = self.follow_orgs(traces).await;
        // After the events: a stream whose principal was deactivated or deleted elsewhere is
        // ended by the state change, with that reason; the tokens revoked alone end theirs
        // now.
        self.storage.tokens.held().revoked(revoked);
        if moved.is_ok() {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            metrics::gauge!(FOLLOWER_LAST_SUCCESS).set(unix.as_secs_f64());
        }
        moved
    }

    /// Catches up the organizations that are behind the store and loads the ones created
    /// elsewhere; returns how many moved.
    async fn follow_orgs(&self, traces: &Traces) -> Result<usize, Error> {
        let mut moved = 0;
        let sequences = self.storage.store.sequences().await?;
        let behind: u64 = sequences
            .iter()
            .map(|&(org, seq)| {
                let applied = self.org_cached(org).map_or(0, |h| h.read().seq);
                seq.saturating_sub(applied)
            })
            .sum();
        #[allow(clippy::cast_precision_loss)] // a lag beyond 2^53 events is not a concern
        let behind = behind as f64;
        metrics::gauge!(FOLLOWER_LAG_EVENTS).set(behind);
        for (org, seq) in sequences {
            let cached = self.org_cached(org);
            let applied = cached.as_ref().map(|h| h.read().seq);
            if applied.is_some_and(|a| a >= seq) {
                continue;
            }
            // A span only for an organization that moved: an idle pass records nothing.
            let span = tracing::info_span!(
                "follower_catch_up",
                organization = %org,
                from = applied.unwrap_or(0),
                to = seq,
                loaded = applied.is_none(),
            );
            traces.root(&span);
            self.follow_org(org, cached).instrument(span).await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Applies one organization's events committed elsewhere to its `cached` handle, or loads
    /// it if this replica has not yet.
    async fn follow_org(&self, org: Uuid, cached: Option<Arc<OrgHandle>>) -> Result<(), Error> {
        match cached {
            Some(handle) => self.refresh(&handle, org).await,
            None => self.org(org).await.map(drop),
        }
    }

    /// Every organization in the store, by id: the ones other replicas created too, whether or
    /// not this replica has loaded them.
    pub async fn stored_org_ids(&self) -> Result<Vec<Uuid>, Error> {
        let mut ids: Vec<Uuid> = self
            .storage
            .store
            .sequences()
            .await?
            .into_iter()
            .map(|(org, _)| org)
            .collect();
        ids.sort_unstable();
        Ok(ids)
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
                return Err(Error::Own(Own::Unavailable(format!(
                    "this replica has not applied consistency token {seq} within {} ms; retry",
                    deadline.as_millis()
                ))));
            }
        }
        let applied = handle.read().seq;
        if applied >= seq {
            Ok(())
        } else {
            Err(Error::Own(Own::OutOfRange(format!(
                "consistency token {seq} is ahead of this organization's last event ({applied})"
            ))))
        }
    }
}

#[cfg(test)]
mod tests;
