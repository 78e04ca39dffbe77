//! Storage of the Customer Portal records: one trait in domain types, implemented for SQLite
//! ([`sqlite`]) and PostgreSQL ([`postgres`]) and pinned by one contract suite run on both.
//!
//! Team members are written through [`PortalStore::apply`]: a batch of member changes, their
//! audit events and (for the sync) the new cursor of an ODC infrastructure, in one transaction,
//! so a crash can never apply a change twice or skip one. Each upsert carries the revision it
//! was computed from; a member changed meanwhile makes the whole batch fail with
//! [`StoreError::Conflict`] and write nothing.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::model::{
    Company, Email, Infrastructure, Micros, NewEvent, PortalEvent, SupportCase, TeamMember,
};

pub mod postgres;
mod sql;
pub mod sqlite;

#[cfg(test)]
mod contract_tests;

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
}

/// Stored sync state of an ODC infrastructure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    /// Identity sequence the records reflect (0: never synced).
    pub cursor: u64,
    /// Last full snapshot.
    pub snapshot_time: Option<Micros>,
}

/// The storage interface.
#[async_trait]
pub trait PortalStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a company with its first admin and an audit event.
    async fn create_company(
        &self,
        company: &Company,
        first_admin: &TeamMember,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError>;
    /// A company.
    async fn company(&self, id: Uuid) -> Result<Option<Company>, StoreError>;
    /// Creates an infrastructure (with the identity token of an ODC one).
    async fn create_infrastructure(
        &self,
        infra: &Infrastructure,
        identity_token: Option<&str>,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError>;
    /// The infrastructures of a company, oldest first.
    async fn infrastructures(&self, company: Uuid) -> Result<Vec<Infrastructure>, StoreError>;
    /// Every ODC infrastructure with its identity token.
    async fn odc_infrastructures(&self) -> Result<Vec<(Infrastructure, String)>, StoreError>;
    /// Replaces the identity token of ODC infrastructure `infra` of `company` and records
    /// `event`, in one transaction. `false` (nothing written) when there is no such ODC
    /// infrastructure.
    async fn set_identity_token(
        &self,
        company: Uuid,
        infra: Uuid,
        token: &str,
        event: &NewEvent,
        time: Micros,
    ) -> Result<bool, StoreError>;
    /// The identity token of ODC infrastructure `infra`, `None` if it has none.
    async fn identity_token(&self, infra: Uuid) -> Result<Option<String>, StoreError>;
    /// Every team member of a company, by email.
    async fn members(&self, company: Uuid) -> Result<Vec<TeamMember>, StoreError>;
    /// One member.
    async fn member(&self, company: Uuid, id: Uuid) -> Result<Option<TeamMember>, StoreError>;
    /// One member by email.
    async fn member_by_email(
        &self,
        company: Uuid,
        email: &Email,
    ) -> Result<Option<TeamMember>, StoreError>;
    /// Applies member changes, their events and an optional sync cursor atomically.
    async fn apply(
        &self,
        company: Uuid,
        changes: &[MemberChange],
        events: &[NewEvent],
        cursor: Option<&SyncCursor>,
        time: Micros,
    ) -> Result<(), StoreError>;
    /// The sync state of an infrastructure (default when never synced).
    async fn sync_state(&self, infrastructure: Uuid) -> Result<SyncState, StoreError>;
    /// Forgets the cursor (the next sync takes a snapshot).
    async fn reset_sync(&self, infrastructure: Uuid) -> Result<(), StoreError>;
    /// Registers a Community account (idempotent).
    async fn register_community_account(
        &self,
        email: &Email,
        time: Micros,
    ) -> Result<(), StoreError>;
    /// Removes a Community account; false when there was none.
    async fn remove_community_account(&self, email: &Email) -> Result<bool, StoreError>;
    /// Which of `emails` have a Community account.
    async fn community_accounts(&self, emails: &[Email]) -> Result<Vec<Email>, StoreError>;
    /// Stores a new support case (and an event).
    async fn create_case(
        &self,
        case: &SupportCase,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError>;
    /// The cases of a company, oldest first.
    async fn cases(&self, company: Uuid) -> Result<Vec<SupportCase>, StoreError>;
    /// Approves a case and adds its creator to the company's contact list (one transaction).
    async fn approve_case(
        &self,
        company: Uuid,
        case: Uuid,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError>;
    /// The approved contacts of a company.
    async fn approved_contacts(&self, company: Uuid) -> Result<Vec<Email>, StoreError>;
    /// Removes a contact from every case's CC and from the contact list.
    async fn remove_contact(
        &self,
        company: Uuid,
        email: &Email,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError>;
    /// Audit events of a company with sequence greater than `after`, ascending, at most `limit`.
    async fn events(
        &self,
        company: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PortalEvent>, StoreError>;
}
