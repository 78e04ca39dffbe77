//! Resuming after a failure: what a worker keeps between runs (the mirror at its cursor and
//! the members), putting it right after a failed write, and the answers of identity that
//! mean the cursor cannot be resumed.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::reconcile::Members;
use super::{RunError, Syncer};
use crate::domain::mapping::Mirror;
use crate::domain::model::Infrastructure;

/// What a worker keeps between runs, so that a run after a failure resumes the feed from its
/// cursor instead of taking a snapshot.
#[derive(Debug)]
pub(super) struct Followed {
    /// Identity's users, roles and assignments as of `cursor`.
    pub(super) mirror: Mirror,
    /// The company's members as stored (unless `reload`).
    pub(super) members: Members,
    /// The identity sequence the mirror reflects.
    pub(super) cursor: u64,
    /// Users whose records may not match the mirror yet (a batch whose write failed): their
    /// records are derived and written, with `cursor`, before the feed is followed again.
    pub(super) pending: BTreeSet<Uuid>,
    /// A write failed: the members may not be as stored; read them again first.
    pub(super) reload: bool,
}

impl Syncer {
    /// Before resuming: reads the members again after a failed write, and writes the records
    /// of the users a failed batch left pending.
    pub(super) async fn settle(
        &self,
        infra: &Infrastructure,
        f: &mut Followed,
    ) -> Result<(), RunError> {
        if f.reload {
            f.members = Members::new(infra.company, self.store.members(infra.company).await?);
            f.reload = false;
        }
        if !f.pending.is_empty() {
            self.write_pending(infra, f).await?;
        }
        Ok(())
    }

    /// Writes the records of the pending users and the cursor `f` has reached, in one batch.
    /// If that fails the users stay pending and the members are read again before the next
    /// attempt (the batch may have been half-applied to `f.members`).
    pub(super) async fn write_pending(
        &self,
        infra: &Infrastructure,
        f: &mut Followed,
    ) -> Result<(), RunError> {
        let pending = std::mem::take(&mut f.pending);
        let written = self
            .reconcile(
                infra,
                &f.mirror,
                &mut f.members,
                &pending,
                f.cursor,
                u64::MAX,
                None,
            )
            .await;
        if written.is_err() {
            f.pending = pending;
            f.reload = true;
        }
        written
    }
}

/// Identity's last sequence, from the `x-consistency-token` header of a WatchChanges response.
pub(super) fn head_of(md: &tonic::metadata::MetadataMap) -> Option<u64> {
    md.get("x-consistency-token")?.to_str().ok()?.parse().ok()
}

/// Identity says the events after the cursor are gone (no longer retained), or that the cursor
/// is ahead of its last event (its data was replaced): only a snapshot can go on.
pub(super) fn cursor_gone(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    match status.code() {
        tonic::Code::OutOfRange => true,
        tonic::Code::FailedPrecondition => status
            .get_details_error_info()
            .is_some_and(|i| i.reason == "CURSOR_EXPIRED"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt as _;

    #[test]
    fn only_a_cursor_identity_no_longer_holds_asks_for_a_snapshot() {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_error_info(
            "CURSOR_EXPIRED",
            "identity.odc",
            std::collections::HashMap::new(),
        );
        let expired = tonic::Status::with_error_details(
            tonic::Code::FailedPrecondition,
            "no longer retained",
            details,
        );
        assert!(cursor_gone(&expired));
        assert!(cursor_gone(&tonic::Status::out_of_range("ahead")));
        assert!(!cursor_gone(&tonic::Status::failed_precondition("other")));
        assert!(!cursor_gone(&tonic::Status::unavailable("down")));
        assert!(!cursor_gone(&tonic::Status::unauthenticated("revoked")));
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(head_of(&md), None);
        md.insert("x-consistency-token", 42.into());
        assert_eq!(head_of(&md), Some(42));
    }
}
