//! Sessions: authenticating a bearer token, Login (with the lockout after repeated wrong
//! passwords), Logout, and the entry of AcceptInvitation.
//!
//! Login and AcceptInvitation are public RPCs: no [`Authorized`] exists for them. Their writes
//! take proofs only this module makes instead: a `NewSession` (the only way to store a token
//! outside of a commit), a `LoginAttempt` (the failure counters of a known user) and an
//! `Invitee` (the [`Proof`] the invitation's acceptance is committed with).

use shared::email::Email;
use shared::secrets::{TokenEncoding, constant_time_eq, hash_token, new_token};
use uuid::Uuid;

use super::Core;
use super::commit::{Committed, Draft, Proof};
use super::sealed::Sealed;
use super::store::{Credentials, InvitationToken, TokenKind, TokenRecord};
use crate::auth::{self, Authorized, Caller};
use crate::domain::model::{Micros, Principal, UserState};
use crate::domain::names;
use crate::error::{Error, Own};

/// A session lasts 12 hours.
pub const SESSION_TTL: Micros = 12 * 3_600_000_000;
/// Consecutive wrong passwords before a lockout.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// How long a lockout lasts: 15 minutes.
pub const LOCKOUT: Micros = 15 * 60 * 1_000_000;

/// A real argon2id hash, verified against for unknown emails so they cost the same time.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A session opened by Login.
#[derive(Debug)]
pub struct Session {
    /// The bearer token (returned once; the store keeps its hash).
    pub secret: String,
    /// The user logged in.
    pub user: Uuid,
    /// When the token stops working.
    pub expire_time: Micros,
}

/// A login of a known user of an organization: what its failure counters are written with.
/// Only this module makes one.
#[derive(Debug)]
pub(super) struct LoginAttempt {
    org: Uuid,
    user: Uuid,
    state: UserState,
    now: Micros,
}

/// A session token for a login whose password matched an ACTIVE user: the only way to store a
/// token outside of a commit ([`TokenCache::insert`](super::token_cache::TokenCache::insert)).
/// Only this module makes one.
#[derive(Debug)]
pub(super) struct NewSession {
    record: TokenRecord,
}

impl NewSession {
    /// The token record to store.
    pub(super) fn record(&self) -> &TokenRecord {
        &self.record
    }
}

/// The invited user accepting a valid invitation token: the [`Proof`] the acceptance is
/// committed with (AcceptInvitation is public). Only this module makes one.
#[derive(Debug)]
pub(super) struct Invitee {
    actor: String,
}

impl Sealed for Invitee {}

impl Proof for Invitee {
    fn actor(&self) -> &str {
        &self.actor
    }
}

/// Checks a password off the async runtime. Unknown users (`hash` is `None`) cost the same
/// time, so timing does not reveal which emails exist.
async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        if let Some(h) = hash {
            auth::verify_password(&password, &h)
        } else {
            let dummy = DUMMY_HASH
                .get_or_init(|| auth::hash_password("not a real password").unwrap_or_default());
            let _ = auth::verify_password(&password, dummy);
            false
        }
    })
    .await
    .unwrap_or(false)
}

impl Core {
    /// Resolves a bearer token to a caller. `operator_hashes` are the hashes of the configured
    /// operator tokens. Expired, revoked or unknown tokens, and tokens of principals that are
    /// no longer ACTIVE, are UNAUTHENTICATED.
    pub async fn authenticate(
        &self,
        operator_hashes: &[String],
        bearer: Option<&str>,
    ) -> Result<Caller, Error> {
        let Some(token) = bearer else {
            return Ok(Caller::Anonymous);
        };
        let hash = hash_token(token);
        if operator_hashes
            .iter()
            .any(|h| constant_time_eq(h.as_bytes(), hash.as_bytes()))
        {
            return Ok(Caller::Operator);
        }
        let bad = || Error::Unauthenticated("the bearer token is not valid".into());
        let record = self.storage.tokens.find(&hash).await?.ok_or_else(bad)?;
        if record.revoke_time.is_some() || record.expire_time <= self.now() {
            return Err(bad());
        }
        let handle = self.org_cached(record.org).ok_or_else(bad)?;
        if !handle.read().is_active(record.principal) {
            return Err(bad());
        }
        Ok(Caller::Principal {
            org: record.org,
            principal: record.principal,
            token: record.id,
            expire_time: record.expire_time,
        })
    }

    /// Users.Login: checks the password of `email` in `org` and opens a session. Wrong
    /// passwords are counted; [`MAX_FAILED_LOGINS`] in a row lock the account for
    /// [`LOCKOUT`]. Unknown emails, wrong passwords and users that are not ACTIVE get the same
    /// answer.
    pub async fn login(
        &self,
        org: Uuid,
        email: &Email,
        password: String,
    ) -> Result<Session, Error> {
        let refused = || Error::Unauthenticated("wrong email or password".into());
        let Some(attempt) = self.login_attempt(org, email).await else {
            verify_password(password, None).await;
            return Err(refused());
        };
        let creds = self.storage.store.credentials(org, attempt.user).await?;
        if creds.locked_until.is_some_and(|t| t > attempt.now) {
            return Err(Error::Own(Own::ResourceExhausted(
                "too many failed logins; the account is locked for 15 minutes".into(),
            )));
        }
        let ok = verify_password(password, creds.password_hash.clone()).await;
        self.count_login(&attempt, &creds, ok).await?;
        if !ok || attempt.state != UserState::Active {
            return Err(refused());
        }
        let secret = new_token(auth::SESSION_PREFIX, TokenEncoding::Base64Url);
        let session = NewSession {
            record: TokenRecord {
                id: Uuid::now_v7(),
                hash: hash_token(&secret),
                kind: TokenKind::Session,
                org,
                principal: Principal::User(attempt.user),
                create_time: attempt.now,
                expire_time: attempt.now + SESSION_TTL,
                revoke_time: None,
            },
        };
        self.storage.tokens.insert(&session).await?;
        Ok(Session {
            secret,
            user: attempt.user,
            expire_time: session.record.expire_time,
        })
    }

    /// The user of `email` in `org`, if both exist.
    async fn login_attempt(&self, org: Uuid, email: &Email) -> Option<LoginAttempt> {
        let handle = self.org(org).await.ok()?;
        let st = handle.read();
        let user = st
            .users_by_email
            .get(email.as_str())
            .and_then(|id| st.users.get(id))?;
        Some(LoginAttempt {
            org,
            user: user.id,
            state: user.state,
            now: self.now(),
        })
    }

    /// Records the outcome of a password check in the failure counters: one more failure
    /// (locking the account at [`MAX_FAILED_LOGINS`]), or back to none after a success.
    async fn count_login(
        &self,
        attempt: &LoginAttempt,
        creds: &Credentials,
        ok: bool,
    ) -> Result<(), Error> {
        let (failed, locked) = if ok {
            if creds.failed_logins == 0 && creds.locked_until.is_none() {
                return Ok(());
            }
            (0, None)
        } else if creds.failed_logins + 1 >= MAX_FAILED_LOGINS {
            (0, Some(attempt.now + LOCKOUT))
        } else {
            (creds.failed_logins + 1, None)
        };
        self.storage
            .store
            .set_login_failures(attempt.org, attempt.user, failed, locked)
            .await?;
        Ok(())
    }

    /// Users.Logout: revokes the session token the caller authenticated with.
    pub async fn logout(&self, auth: &Authorized) -> Result<(), Error> {
        let Some(token) = auth.session() else {
            return Err(Error::precondition(
                "NOT_A_SESSION",
                "only a session token can log out",
            ));
        };
        self.storage.tokens.revoke(auth, token, self.now()).await?;
        Ok(())
    }

    /// Users.AcceptInvitation: finds the invitation of `secret`, hashes `password` and commits
    /// `accept` (the acceptance: given the invitation and the password hash) as the invited
    /// user. Returns the organization and what `accept` returned.
    pub async fn accept_invitation<T>(
        &self,
        secret: &str,
        password: String,
        mut accept: impl FnMut(&mut Draft<'_>, &InvitationToken, &str) -> Result<T, Error>,
    ) -> Result<(Uuid, Committed<T>), Error> {
        let invalid = || {
            Error::Unauthenticated(
                "the invitation is not valid (unknown, used, superseded or expired)".into(),
            )
        };
        let token = self
            .storage
            .store
            .find_invitation_token(&hash_token(secret))
            .await?
            .ok_or_else(invalid)?;
        if token.expire_time <= self.now() {
            return Err(invalid());
        }
        let hash = auth::hash_password_blocking(password).await?;
        let invitee = Invitee {
            actor: names::fmt::user(token.org, token.user),
        };
        let committed = self
            .mutate(&invitee, token.org, None, |d| accept(d, &token, &hash))
            .await?;
        Ok((token.org, committed))
    }
}
