//! Read access to the store and the live sync status, for anyone (admission, lists, answers).

use uuid::Uuid;

use crate::domain::facts::CompanyFacts;
use crate::domain::model::{Company, Email, Infrastructure, PortalEvent, SupportCase, TeamMember};
use crate::store::{PortalStore, StoreError, SyncState};
use crate::sync::{StatusView, Syncer};

/// Read-only access to the store and the sync status.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    store: &'a dyn PortalStore,
    syncer: &'a Syncer,
}

impl<'a> Reads<'a> {
    pub(super) fn new(store: &'a dyn PortalStore, syncer: &'a Syncer) -> Self {
        Self { store, syncer }
    }

    /// A company.
    pub async fn company(&self, id: Uuid) -> Result<Option<Company>, StoreError> {
        self.store.company(id).await
    }
    /// The infrastructures of a company, oldest first.
    pub async fn infrastructures(&self, company: Uuid) -> Result<Vec<Infrastructure>, StoreError> {
        self.store.infrastructures(company).await
    }
    /// The team members of a company, by email.
    pub async fn members(&self, company: Uuid) -> Result<Vec<TeamMember>, StoreError> {
        self.store.members(company).await
    }
    /// One team member.
    pub async fn member(&self, company: Uuid, id: Uuid) -> Result<Option<TeamMember>, StoreError> {
        self.store.member(company, id).await
    }
    /// One team member by email.
    pub async fn member_by_email(
        &self,
        company: Uuid,
        email: &Email,
    ) -> Result<Option<TeamMember>, StoreError> {
        self.store.member_by_email(company, email).await
    }
    /// Which of `emails` have a Community account.
    pub async fn community_accounts(&self, emails: &[Email]) -> Result<Vec<Email>, StoreError> {
        self.store.community_accounts(emails).await
    }
    /// The support cases of a company, oldest first.
    pub async fn cases(&self, company: Uuid) -> Result<Vec<SupportCase>, StoreError> {
        self.store.cases(company).await
    }
    /// The approved contacts of a company.
    pub async fn approved_contacts(&self, company: Uuid) -> Result<Vec<Email>, StoreError> {
        self.store.approved_contacts(company).await
    }
    /// Audit events after `after`, at most `limit`.
    pub async fn events(
        &self,
        company: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PortalEvent>, StoreError> {
        self.store.events(company, after, limit).await
    }
    /// The stored sync state of an infrastructure.
    pub async fn sync_state(&self, infrastructure: Uuid) -> Result<SyncState, StoreError> {
        self.store.sync_state(infrastructure).await
    }
    /// The sync status of an infrastructure: the live view on the replica that runs its
    /// sync, what the database says on the others.
    pub async fn sync_status(&self, infrastructure: Uuid) -> Result<StatusView, StoreError> {
        self.syncer.status_of(infrastructure).await
    }
    /// Everything the access rules need to know of a company.
    pub async fn facts(&self, company: Uuid) -> Result<CompanyFacts, StoreError> {
        Ok(CompanyFacts {
            members: self.store.members(company).await?,
            infrastructures: self.store.infrastructures(company).await?,
            cases: self.store.cases(company).await?,
            approved_contacts: self.store.approved_contacts(company).await?,
        })
    }
}
