//! The storage interface, one trait per concern, in domain types: companies, infrastructures,
//! members, sync cursors, Community accounts, support cases, audit events and the sync leases.
//! [`PortalStore`](super::PortalStore) gathers them for callers that hold the whole store.
//!
//! Every write of a company records its audit events in the same transaction (see
//! [`EventStore`]).

use async_trait::async_trait;
use uuid::Uuid;

use super::{Fence, Lease, LeaseView, MemberChange, StoreError, SyncCursor, SyncState};
use crate::domain::model::{
    Company, Email, Infrastructure, Micros, NewEvent, PortalEvent, SupportCase, TeamMember,
};

/// Customer companies.
#[async_trait]
pub trait CompanyStore: Send + Sync {
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
}

/// The infrastructures of a company, and the identity tokens of ODC ones.
#[async_trait]
pub trait InfrastructureStore: Send + Sync {
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
    /// Seals again, under the key ring's primary key, every stored identity token sealed
    /// under another key (or stored before sealing existed); the number re-sealed. Run at
    /// start-up, it completes a key rotation.
    async fn reseal_identity_tokens(&self) -> Result<usize, StoreError>;
}

/// Team members.
///
/// They are written through [`apply`](MemberStore::apply): a batch of member changes, their
/// audit events and (for the sync) the new cursor of an ODC infrastructure, in one
/// transaction, so a crash can never apply a change twice or skip one. Each upsert carries the
/// revision it was computed from; a member changed meanwhile makes the whole batch fail with
/// [`StoreError::Conflict`] and write nothing.
#[async_trait]
pub trait MemberStore: Send + Sync {
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
}

/// The sync state (cursor) of each ODC infrastructure. A new cursor is written by
/// [`MemberStore::apply`], with the changes it produced.
#[async_trait]
pub trait CursorStore: Send + Sync {
    /// The sync state of an infrastructure (default when never synced).
    async fn sync_state(&self, infrastructure: Uuid) -> Result<SyncState, StoreError>;
    /// Forgets the cursor (the next sync takes a snapshot).
    async fn reset_sync(&self, infrastructure: Uuid) -> Result<(), StoreError>;
}

/// Community accounts, by email.
#[async_trait]
pub trait CommunityStore: Send + Sync {
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
}

/// Support cases and the approved support contacts of each company.
#[async_trait]
pub trait CaseStore: Send + Sync {
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
}

/// The audit events of each company: numbered from 1 without gaps, written by the other
/// concerns' writes in their transactions, read here.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Audit events of a company with sequence greater than `after`, ascending, at most `limit`.
    async fn events(
        &self,
        company: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PortalEvent>, StoreError>;
}

/// The database itself: whether it answers now (the health probe).
#[async_trait]
pub trait DatabaseStore: Send + Sync {
    /// One trivial round trip (`SELECT 1`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The sync lease of each ODC infrastructure: which replica runs its sync. At most one replica
/// holds an infrastructure's lease at a time; it holds it until `expire_time` and renews it
/// before; another replica acquires it only once it has expired (or was released). Every
/// acquisition increments the fencing token, which the holder's writes carry
/// ([`SyncCursor::fence`]): a replica that lost the lease can no longer write. Times are the
/// callers' clocks (unix microseconds): replicas' clocks must agree to well within a ttl.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Acquires the lease of `infrastructure` for `holder` until `expire_time`, if it is free
    /// at `now` (never held, released, expired) or already `holder`'s; the fencing token is
    /// incremented either way. `None` when another replica holds it.
    async fn acquire_lease(
        &self,
        infrastructure: Uuid,
        holder: &str,
        now: Micros,
        expire_time: Micros,
    ) -> Result<Option<Lease>, StoreError>;
    /// Extends a lease `fence` still holds at `now` to `expire_time`, storing the holder's
    /// `report`; `false` (nothing written) when the lease was lost.
    async fn renew_lease(
        &self,
        infrastructure: Uuid,
        fence: &Fence,
        now: Micros,
        expire_time: Micros,
        report: &str,
    ) -> Result<bool, StoreError>;
    /// Releases a lease `fence` still holds (it expires now: another replica may take it at
    /// once); `false` when it was not held any more.
    async fn release_lease(&self, infrastructure: Uuid, fence: &Fence) -> Result<bool, StoreError>;
    /// The lease row of `infrastructure` (None: no replica ever held it).
    async fn lease(&self, infrastructure: Uuid) -> Result<Option<LeaseView>, StoreError>;
}
