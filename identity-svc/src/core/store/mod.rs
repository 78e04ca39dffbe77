//! Storage: the interface the core reads and writes through, in domain types, split by concern
//! into [`EventLog`] (organizations, commits, change events, idempotency keys), [`TokenStore`]
//! (bearer tokens), [`CredentialStore`] (passwords, login failures, invitation tokens) and
//! [`MailOutbox`] (the invitation mail the delivery worker sends); [`Store`] is all four. One
//! SQL implementation ([`SqlStore`], in `sql/`) serves SQLite ([`sqlite`]) and PostgreSQL
//! ([`postgres`]), pinned by one contract suite run on both (`contract_tests/`).
//!
//! Model: the database keeps, per organization, the current entities (one row per entity,
//! its JSON document keyed by kind and key), the gap-free sequence of change events, and the
//! credential tables (password hashes, token hashes) that never leave the store. Validation
//! happens in memory against the organization's state at sequence N; [`EventLog::commit`] then
//! writes the changed entities **and** their events in one transaction, but only if the
//! organization is still at N (a compare-and-set on its sequence row, which also orders
//! commits). A writer that lost the race gets [`StoreError::Conflict`], catches up and retries.
//!
//! This file owns the interface (the traits and [`StoreError`]); the records are in
//! `records.rs`, the SQL in `sql/`. The store imports nothing of the crate but `domain`.

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::model::{Entity, Micros, Principal};

mod outbox;
pub mod postgres;
mod records;
mod sql;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod contract_tests;

pub use outbox::{
    ClaimedMail, Delivery, DeliveryState, MailOutbox, OutboxMail, OutboxStats, Retry,
};
pub use records::{
    Commit, Credentials, EventFilter, EventRecord, InvitationToken, LoadedOrg, SecretOp, TokenKind,
    TokenRecord,
};
pub use sql::SqlStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The organization moved past the expected sequence (or already exists): catch up, retry.
    #[error("concurrent change: the organization is no longer at the expected sequence")]
    Conflict,
    /// The idempotency key was already used by a committed request (nothing was written).
    #[error("the request_id was already used")]
    DuplicateRequest,
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

/// The whole storage interface: what the core holds (`Arc<dyn Store>`). Every type that
/// implements the four parts is a `Store`.
pub trait Store: EventLog + TokenStore + CredentialStore + MailOutbox {}

impl<T: EventLog + TokenStore + CredentialStore + MailOutbox + ?Sized> Store for T {}

/// Organizations, their entities and the log of their change events: the commit path, the
/// start-up load, the feed, the audit listing and idempotency keys.
#[async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug + 'static {
    /// Ids of every organization.
    async fn organization_ids(&self) -> Result<Vec<Uuid>, StoreError>;
    /// One organization's entities and sequence, `None` if unknown.
    async fn load_organization(&self, org: Uuid) -> Result<Option<LoadedOrg>, StoreError>;
    /// The same read, streamed: each entity goes to `sink` as it is decoded, so the start-up
    /// load never holds every entity of an organization at once besides the state it builds
    /// (a `Vec` of 450k entities was a third of the start-up peak at 100k users). Returns the
    /// sequence the entities are at, `None` (and `sink` not called) if the organization is
    /// unknown. Entities come in the order `load_organization` returns them.
    async fn load_organization_into(
        &self,
        org: Uuid,
        sink: &mut (dyn FnMut(Entity) + Send),
    ) -> Result<Option<u64>, StoreError> {
        let Some(loaded) = self.load_organization(org).await? else {
            return Ok(None);
        };
        for e in loaded.entities {
            sink(e);
        }
        Ok(Some(loaded.seq))
    }
    /// Writes a commit atomically and returns the new sequence.
    async fn commit(&self, commit: Commit<'_>) -> Result<u64, StoreError> {
        self.commit_batch(std::slice::from_ref(&commit)).await
    }
    /// Writes consecutive commits of one organization in **one** transaction (group commit)
    /// and returns the sequence after the last one.
    ///
    /// `commits[0].expected_seq` is compared-and-set once for the whole batch; every further
    /// commit must continue where the previous one ends (`expected_seq` = the previous one's
    /// `expected_seq` + its number of changes), and only the first may create the
    /// organization. Each commit keeps its own actor, time and request id (remembered with
    /// the target of its first change), so the events are exactly those the commits would
    /// have written one after the other. All or nothing: on [`StoreError::Conflict`],
    /// [`StoreError::DuplicateRequest`] (which does not say which commit's key was used) or
    /// any other error, nothing is written. An empty slice is refused.
    async fn commit_batch(&self, commits: &[Commit<'_>]) -> Result<u64, StoreError>;
    /// Events with sequence greater than `after`, ascending, at most `limit`.
    async fn events_after(
        &self,
        org: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Events matching `filter` with sequence greater than `after`, ascending, at most `limit`.
    async fn list_events(
        &self,
        org: Uuid,
        filter: &EventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The target remembered for an idempotency key.
    async fn find_request(&self, org: Uuid, request_id: &str)
    -> Result<Option<String>, StoreError>;
    /// Every organization with its last committed event sequence, in one statement: what a
    /// replica compares with its own state to know which organizations to catch up.
    async fn sequences(&self) -> Result<Vec<(Uuid, u64)>, StoreError>;
    /// One trivial round trip (`SELECT 1`): whether the database answers now (health).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Bearer tokens (their hashes): sessions and service-account tokens. Tokens written or
/// revoked together with entity changes go through [`EventLog::commit`] as [`SecretOp`]s.
#[async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug + 'static {
    /// A bearer token by hash.
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Stores a session token outside of any entity change.
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Revokes one token; false when it did not exist or was already revoked.
    async fn revoke_token(&self, id: Uuid, at: Micros) -> Result<bool, StoreError>;
    /// Tokens of a principal, newest first.
    async fn list_tokens(
        &self,
        org: Uuid,
        principal: Principal,
    ) -> Result<Vec<TokenRecord>, StoreError>;
    /// Ids of the bearer tokens revoked at or after `since` (by their revocation time): what a
    /// replica evicts from its token cache when another replica revoked them.
    async fn revoked_since(&self, since: Micros) -> Result<Vec<Uuid>, StoreError>;
}

/// Users' credentials: password hashes and login-failure counters, and invitation tokens.
/// Passwords and invitation tokens are written by commits ([`SecretOp`]); the login-failure
/// counters directly.
#[async_trait]
pub trait CredentialStore: Send + Sync + std::fmt::Debug + 'static {
    /// An invitation token by hash.
    async fn find_invitation_token(
        &self,
        hash: &str,
    ) -> Result<Option<InvitationToken>, StoreError>;
    /// A user's credentials (default when none are stored).
    async fn credentials(&self, org: Uuid, user: Uuid) -> Result<Credentials, StoreError>;
    /// Records the login-failure counters.
    async fn set_login_failures(
        &self,
        org: Uuid,
        user: Uuid,
        failed_logins: u32,
        locked_until: Option<Micros>,
    ) -> Result<(), StoreError>;
}
