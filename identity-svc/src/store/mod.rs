//! Storage: one trait in domain types, implemented for SQLite ([`sqlite`]) and PostgreSQL
//! ([`postgres`]) and pinned by one contract test suite run on both.
//!
//! Model: the database keeps, per organization, the current entities (one row per entity,
//! its JSON document keyed by kind and key), the gap-free sequence of change events, and the
//! credential tables (password hashes, token hashes) that never leave the store. Validation
//! happens in memory against the organization's state at sequence N; [`Store::commit`] then
//! writes the changed entities **and** their events in one transaction, but only if the
//! organization is still at N (a compare-and-set on its sequence row, which also orders
//! commits). A writer that lost the race gets [`StoreError::Conflict`], catches up and retries.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::model::{Change, Entity, Micros, Principal};

pub mod postgres;
mod sql;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod contract_tests;

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

/// A credential-table change committed together with entity changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOp {
    /// Sets (or replaces) a user's password hash.
    SetPassword {
        /// The user.
        user: Uuid,
        /// PHC string (argon2id).
        hash: String,
    },
    /// Stores an invitation token hash.
    PutInvitationToken {
        /// SHA-256 hex of the token.
        hash: String,
        /// The invitation.
        invitation: Uuid,
        /// The invited user.
        user: Uuid,
        /// When it stops working.
        expire_time: Micros,
    },
    /// Removes every invitation token of a user (resend, acceptance, deletion).
    DeleteInvitationTokens {
        /// The user.
        user: Uuid,
    },
    /// Stores a bearer token.
    PutToken(TokenRecord),
    /// Revokes every token of a principal.
    RevokeTokensOf {
        /// The principal.
        principal: Principal,
        /// Revocation time.
        at: Micros,
    },
    /// Revokes one token.
    RevokeToken {
        /// Token id.
        id: Uuid,
        /// Revocation time.
        at: Micros,
    },
    /// Removes a user's credentials (deletion).
    DeleteCredentials {
        /// The user.
        user: Uuid,
    },
}

/// Kinds of bearer tokens kept in the store (operator tokens come from configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// From Users.Login.
    Session,
    /// From ServiceAccounts.CreateServiceAccountToken.
    ServiceAccount,
}

/// A stored bearer token (its hash, never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Id.
    pub id: Uuid,
    /// SHA-256 hex of the secret.
    pub hash: String,
    /// Kind.
    pub kind: TokenKind,
    /// Organization.
    pub org: Uuid,
    /// Who it authenticates.
    pub principal: Principal,
    /// Issued.
    pub create_time: Micros,
    /// Expires.
    pub expire_time: Micros,
    /// Revoked, if so.
    pub revoke_time: Option<Micros>,
}

/// A stored invitation token (its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationToken {
    /// Organization.
    pub org: Uuid,
    /// Invitation id.
    pub invitation: Uuid,
    /// The invited user.
    pub user: Uuid,
    /// When it stops working.
    pub expire_time: Micros,
}

/// A user's password credentials and login-failure counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// PHC string, if a password is set.
    pub password_hash: Option<String>,
    /// Consecutive failed logins.
    pub failed_logins: u32,
    /// Locked until this time, if locked.
    pub locked_until: Option<Micros>,
}

/// One committed change event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Organization.
    pub org: Uuid,
    /// Position in the organization's sequence, from 1.
    pub seq: u64,
    /// Principal name, `operator` or `system`.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// Resource name.
    pub target: String,
    /// The entity before.
    pub before: Option<Entity>,
    /// The entity after.
    pub after: Option<Entity>,
    /// Users whose access may differ.
    pub affected_users: Vec<Uuid>,
    /// The request's idempotency key.
    pub request_id: Option<String>,
    /// Commit time.
    pub time: Micros,
}

impl EventRecord {
    /// The change this event records.
    pub fn change(&self) -> Change {
        Change {
            action: self.action.clone(),
            target: self.target.clone(),
            before: self.before.clone(),
            after: self.after.clone(),
            affected_users: self.affected_users.clone(),
        }
    }
}

/// Filters of the audit listing; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Actor equals.
    pub actor: Option<String>,
    /// Target equals.
    pub target: Option<String>,
    /// Action equals.
    pub action: Option<String>,
    /// Time at or after.
    pub start_time: Option<Micros>,
    /// Time before.
    pub end_time: Option<Micros>,
}

/// One atomic write.
#[derive(Debug, Clone)]
pub struct Commit<'a> {
    /// Organization.
    pub org: Uuid,
    /// The sequence the changes were validated against; 0 with `create_org` for a new one.
    pub expected_seq: u64,
    /// True when this commit creates the organization.
    pub create_org: bool,
    /// Who.
    pub actor: &'a str,
    /// Idempotency key, remembered with the target of the first change.
    pub request_id: Option<&'a str>,
    /// Commit time.
    pub time: Micros,
    /// Entity changes; change `i` becomes event `expected_seq + 1 + i`.
    pub changes: &'a [Change],
    /// Credential changes.
    pub secrets: &'a [SecretOp],
}

/// An organization as loaded at start-up.
#[derive(Debug, Clone)]
pub struct LoadedOrg {
    /// Id.
    // Read only by the contract tests (and the benchmark): dead to the lint once the store is
    // private to the core.
    #[cfg_attr(not(feature = "store-access"), allow(dead_code))]
    pub org: Uuid,
    /// Last event sequence.
    pub seq: u64,
    /// Every current entity.
    pub entities: Vec<Entity>,
}

/// The storage interface.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
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
    /// Every organization with its last committed event sequence, in one statement: what a
    /// replica compares with its own state to know which organizations to catch up.
    async fn sequences(&self) -> Result<Vec<(Uuid, u64)>, StoreError>;
    /// Ids of the bearer tokens revoked at or after `since` (by their revocation time): what a
    /// replica evicts from its token cache when another replica revoked them.
    async fn revoked_since(&self, since: Micros) -> Result<Vec<Uuid>, StoreError>;
}
