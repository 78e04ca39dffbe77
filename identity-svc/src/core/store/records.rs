//! The records the store reads and writes, in domain types: a [`Commit`] and its credential
//! changes ([`SecretOp`]), the committed [`EventRecord`]s and their audit [`EventFilter`], an
//! organization as loaded ([`LoadedOrg`]), bearer and invitation tokens, credentials.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::model::{Change, Entity, Micros, Principal};

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
    /// Queues an invitation message in the outbox (the delivery worker sends it).
    QueueMail(super::OutboxMail),
    /// Drops the undelivered messages of a user's earlier invitations (their secret no longer
    /// works: a resend, a deletion).
    CancelMail {
        /// The user.
        user: Uuid,
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
    /// Last event sequence.
    pub seq: u64,
    /// Every current entity.
    pub entities: Vec<Entity>,
}
