//! Storage of the Customer Portal records: one trait per concern in domain types
//! ([`CompanyStore`], [`InfrastructureStore`], [`MemberStore`], [`CursorStore`],
//! [`CommunityStore`], [`CaseStore`], [`EventStore`], [`DatabaseStore`], [`LeaseStore`] (the
//! sync leases of several replicas), in `traits.rs`),
//! gathered by [`PortalStore`]; implemented once in SQL (`sql/`, one file per concern) for SQLite
//! ([`sqlite`]) and PostgreSQL ([`postgres`]), and pinned by one contract suite run on both
//! (`contract_tests/`, one file per concern).
//!
//! This file owns the vocabulary every concern shares: [`StoreError`], [`MemberChange`],
//! [`SyncCursor`], [`SyncState`], [`Fence`], [`Lease`], [`LeaseView`].
//!
//! Team members are written through [`MemberStore::apply`]: a batch of member changes, their
//! audit events and (for the sync) the new cursor of an ODC infrastructure, in one transaction,
//! so a crash can never apply a change twice or skip one. Each upsert carries the revision it
//! was computed from; a member changed meanwhile makes the whole batch fail with
//! [`StoreError::Conflict`] and write nothing.

use uuid::Uuid;

use crate::domain::model::{Micros, TeamMember};

pub mod postgres;
mod sql;
pub mod sqlite;
mod traits;

pub use sql::SqlStore;
pub use traits::{
    CaseStore, CommunityStore, CompanyStore, CursorStore, DatabaseStore, EventStore,
    InfrastructureStore, LeaseStore, MemberStore,
};

#[cfg(test)]
mod contract_tests;

/// A fixed key ring for tests that do not look at sealing itself.
#[cfg(test)]
pub(crate) fn test_keyring() -> std::sync::Arc<shared::sealing::Keyring> {
    // 32 bytes of 0x07 in base64.
    let text = "test BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
    std::sync::Arc::new(shared::sealing::Keyring::parse(text).unwrap())
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A concurrent change: a member's revision moved, or a unique key (company + email) is
    /// taken. Nothing was written.
    #[error("concurrent change or duplicate")]
    Conflict,
    /// A referenced row does not exist.
    #[error("not found")]
    NotFound,
    /// A stored document could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A sealed secret (an identity token) could not be opened with the key file's keys.
    #[error("the stored identity token cannot be opened: {0}")]
    Sealing(#[from] shared::sealing::SealingError),
    /// A sync write whose [`Fence`] no longer holds: the infrastructure's lease was taken by
    /// another replica (or expired). Nothing was written.
    #[error("this replica no longer holds the infrastructure's sync lease")]
    Fenced,
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One change of a team member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Insert (`expected_rev` None) or replace the member whose stored `rev` is `expected_rev`.
    /// The stored row gets `member.rev` (callers pass `expected_rev + 1`).
    Upsert {
        /// The new state.
        member: TeamMember,
        /// The revision it was computed from; None for a new member.
        expected_rev: Option<u64>,
    },
    /// Delete a member whose stored `rev` is `expected_rev`.
    Delete {
        /// Company.
        company: Uuid,
        /// Member.
        id: Uuid,
        /// The revision it was computed from.
        expected_rev: u64,
    },
}

/// The cursor of an ODC infrastructure's sync, written with the changes it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCursor {
    /// The infrastructure.
    pub infrastructure: Uuid,
    /// Identity change-event sequence the records now reflect.
    pub cursor: u64,
    /// Set when this batch comes from a full snapshot.
    pub snapshot_time: Option<Micros>,
    /// The sync lease the writer holds: when set, the batch is written only if the lease row
    /// still has this holder and token and has not expired at the batch's time, checked in
    /// the batch's transaction; otherwise [`StoreError::Fenced`] and nothing is written.
    pub fence: Option<Fence>,
}

/// A replica's claim to write an infrastructure's sync: its id and the fencing token of its
/// lease (see [`LeaseStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The replica id.
    pub holder: String,
    /// The fencing token the replica got when it acquired the lease.
    pub token: u64,
}

/// Stored sync state of an ODC infrastructure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    /// Identity sequence the records reflect (0: never synced).
    pub cursor: u64,
    /// Last full snapshot.
    pub snapshot_time: Option<Micros>,
}

/// A lease this replica holds (what [`LeaseStore::acquire_lease`] answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder and fencing token, for the sync's writes.
    pub fence: Fence,
    /// When the lease lapses unless renewed (the holder's clock).
    pub expire_time: Micros,
}

/// An infrastructure's lease row as stored, whoever holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The replica that acquired it last.
    pub holder: String,
    /// Its fencing token (the number of acquisitions so far).
    pub token: u64,
    /// When it lapses (0 after a graceful release); held only while in the future.
    pub expire_time: Micros,
    /// The holder's last report of the sync (a document of the sync's, opaque to the store).
    pub report: Option<String>,
}

impl LeaseView {
    /// Whether some replica holds the lease at `now`.
    pub fn held_at(&self, now: Micros) -> bool {
        self.expire_time > now
    }
}

/// The whole storage interface: every concern's trait. Implemented by every type that
/// implements them all, so callers hold an `Arc<dyn PortalStore>` and call any store method on
/// it.
pub trait PortalStore:
    CompanyStore
    + InfrastructureStore
    + MemberStore
    + CursorStore
    + CommunityStore
    + CaseStore
    + EventStore
    + DatabaseStore
    + LeaseStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
}

impl<S> PortalStore for S where
    S: CompanyStore
        + InfrastructureStore
        + MemberStore
        + CursorStore
        + CommunityStore
        + CaseStore
        + EventStore
        + DatabaseStore
        + LeaseStore
        + Send
        + Sync
        + std::fmt::Debug
        + 'static
{
}
