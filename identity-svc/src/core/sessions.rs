//! Sessions: authenticating a bearer token, Login (with the waits after repeated wrong
//! passwords of [`super::lockout`], its hashing on the bounded [`super::hashing`] pool),
//! Logout, and the entry of AcceptInvitation.
//!
//! Login and AcceptInvitation are public RPCs: no [`Authorized`] exists for them. Their writes
//! take proofs only this module makes instead: a `NewSession` (the only way to store a token
//! outside of a commit), a `LoginAttempt` (the failure counters of a known user) and an
//! `Invitee` (the [`Proof`] the invitation's acceptance is committed with).

use std::net::IpAddr;

use shared::email::Email;
use shared::secrets::{TokenEncoding, constant_time_eq, hash_token, new_token};
use uuid::Uuid;

use super::Core;
use super::commit::{Committed, Draft, Proof};
use super::lockout::{self, Failures};
use super::oidc::{Expectation, IdTokenClaims};
use super::sealed::Sealed;
use super::store::{Credentials, InvitationToken, TokenKind, TokenRecord};
use crate::auth::{self, Authorized, Caller};
use crate::domain::model::{Micros, Principal, UserState};
use crate::domain::names;
use crate::error::{Error, LOCKED_OUT, Own};

/// A session lasts 12 hours.
pub const SESSION_TTL: Micros = 12 * 3_600_000_000;

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

/// An identity provider vouching for the person of a verified ID token: the [`Proof`] an
/// external sign-in is committed with (the sign-in is public). Only this module makes one.
#[derive(Debug)]
pub(super) struct Vouched {
    actor: String,
}

impl Sealed for Vouched {}

impl Proof for Vouched {
    fn actor(&self) -> &str {
        &self.actor
    }
}

impl Proof for Invitee {
    fn actor(&self) -> &str {
        &self.actor
    }
}

/// Which failure counters a login is held by (see [`super::lockout`]).
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// An address the account logged in from: its own counters.
    Familiar(IpAddr, Failures),
    /// Any other address: the account's counters (from the store).
    Account(Option<IpAddr>, Failures),
}

impl Gate {
    fn failures(self) -> Failures {
        match self {
            Gate::Familiar(_, f) | Gate::Account(_, f) => f,
        }
    }
}

/// The refusal of a login during a wait of `micros`.
fn locked_out(micros: Micros) -> Error {
    let wait = std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    metrics::counter!(lockout::THROTTLED_TOTAL, "reason" => lockout::ACCOUNT_WAIT).increment(1);
    Error::Own(Own::Throttled {
        reason: LOCKED_OUT,
        message: format!(
            "too many wrong passwords; the account waits {} more seconds before the next try \
             from this address",
            wait.as_secs().max(1)
        ),
        retry_after: wait,
    })
}

impl Core {
    /// Checks a password on the hashing pool. Unknown users (`hash` is `None`) cost the same
    /// time, so timing does not reveal which emails exist. RESOURCE_EXHAUSTED when the pool is
    /// full.
    async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool, Error> {
        self.hashing
            .run(move || {
                if let Some(h) = hash {
                    auth::verify_password(&password, &h)
                } else {
                    let dummy = DUMMY_HASH.get_or_init(|| {
                        auth::hash_password("not a real password").unwrap_or_default()
                    });
                    let _ = auth::verify_password(&password, dummy);
                    false
                }
            })
            .await
    }

    /// Hashes a password (argon2id) on the hashing pool; RESOURCE_EXHAUSTED when it is full.
    pub async fn hash_password(&self, password: String) -> Result<String, Error> {
        self.hashing
            .run(move || auth::hash_password(&password))
            .await?
    }

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
        // An organization created through another replica since this one last looked is loaded
        // now: a valid token must not wait for the follower.
        let handle = match self.org(record.org).await {
            Ok(handle) => handle,
            Err(Error::NotFound(_)) => return Err(bad()),
            Err(e) => return Err(e),
        };
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

    /// Users.Login: checks the password of `email` in `org` and opens a session. `client` is
    /// the caller's address. Wrong passwords are counted, and past the policy's threshold make
    /// the account wait before the next check ([`super::lockout`]): per account for unfamiliar
    /// addresses, per address for the ones the user logged in from. Unknown emails, wrong
    /// passwords and users that are not ACTIVE get the same answer.
    pub async fn login(
        &self,
        org: Uuid,
        email: &Email,
        password: String,
        client: Option<IpAddr>,
    ) -> Result<Session, Error> {
        let refused = || Error::Unauthenticated("wrong email or password".into());
        let Some(attempt) = self.login_attempt(org, email).await else {
            self.verify_password(password, None).await?;
            return Err(refused());
        };
        let creds = self.storage.store.credentials(org, attempt.user).await?;
        let gate = self.gate(&attempt, &creds, client);
        if let Some(wait) = self.lockout.remaining(gate.failures(), attempt.now) {
            return Err(locked_out(wait));
        }
        let ok = self
            .verify_password(password, creds.password_hash.clone())
            .await?;
        self.count_login(&attempt, gate, ok).await?;
        if !ok || attempt.state != UserState::Active {
            return Err(refused());
        }
        self.open_session(org, attempt.user, attempt.now).await
    }

    /// Opens a 12-hour session of `user` (Login and external sign-in, once they let them in).
    async fn open_session(&self, org: Uuid, user: Uuid, now: Micros) -> Result<Session, Error> {
        let secret = new_token(auth::SESSION_PREFIX, TokenEncoding::Base64Url);
        let session = NewSession {
            record: TokenRecord {
                id: Uuid::now_v7(),
                hash: hash_token(&secret),
                kind: TokenKind::Session,
                org,
                principal: Principal::User(user),
                create_time: now,
                expire_time: now + SESSION_TTL,
                revoke_time: None,
            },
        };
        self.storage.tokens.insert(&session).await?;
        Ok(Session {
            secret,
            user,
            expire_time: session.record.expire_time,
        })
    }

    /// The counters a login from `client` is held by: its own if the address is familiar to
    /// the account, else the account's.
    fn gate(&self, attempt: &LoginAttempt, creds: &Credentials, client: Option<IpAddr>) -> Gate {
        if let Some(ip) = client
            && let Some(f) = self
                .familiar
                .get(&self.lockout, attempt.user, ip, attempt.now)
        {
            return Gate::Familiar(ip, f);
        }
        let stored = Failures {
            count: creds.failed_logins,
            until: creds.locked_until,
        };
        Gate::Account(client, self.lockout.current(stored, attempt.now))
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

    /// Records the outcome of a password check in the counters of `gate`: a success resets
    /// them (and makes the address familiar), a failure adds one and may begin a wait.
    async fn count_login(&self, attempt: &LoginAttempt, gate: Gate, ok: bool) -> Result<(), Error> {
        let policy = &self.lockout;
        match (gate, ok) {
            (Gate::Familiar(ip, _), true) => {
                self.familiar
                    .succeeded(policy, attempt.user, ip, attempt.now);
            }
            (Gate::Familiar(ip, f), false) => {
                let (after, waits) = policy.failed(f, attempt.now);
                self.familiar.set_failures(attempt.user, ip, after);
                if waits {
                    metrics::counter!(lockout::LOCKOUTS_TOTAL, "scope" => "familiar_address")
                        .increment(1);
                }
            }
            (Gate::Account(client, f), true) => {
                if f != Failures::default() {
                    self.set_failures(attempt, Failures::default()).await?;
                }
                if let Some(ip) = client {
                    self.familiar
                        .succeeded(policy, attempt.user, ip, attempt.now);
                }
            }
            (Gate::Account(_, f), false) => {
                let (after, waits) = policy.failed(f, attempt.now);
                self.set_failures(attempt, after).await?;
                if waits {
                    metrics::counter!(lockout::LOCKOUTS_TOTAL, "scope" => "account").increment(1);
                }
            }
        }
        Ok(())
    }

    /// Writes the account's failure counters.
    async fn set_failures(&self, attempt: &LoginAttempt, f: Failures) -> Result<(), Error> {
        self.storage
            .store
            .set_login_failures(attempt.org, attempt.user, f.count, f.until)
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
        let hash = self.hash_password(password).await?;
        let invitee = Invitee {
            actor: names::fmt::user(token.org, token.user),
        };
        let committed = self
            .mutate(&invitee, token.org, None, |d| accept(d, &token, &hash))
            .await?;
        Ok((token.org, committed))
    }

    /// IdentityProviders.SignInWithIdentityProvider: verifies `id_token` as a token of
    /// provider `provider` of `org` (no state lock is held while the provider's keys are
    /// fetched), commits `admit` (who the person is: given the verified claims, it returns the
    /// user to sign in) as the provider, and opens a session of that user.
    pub async fn sign_in_with_provider<T>(
        &self,
        org: Uuid,
        provider: Uuid,
        id_token: &str,
        nonce: Option<String>,
        mut admit: impl FnMut(&mut Draft<'_>, &IdTokenClaims) -> Result<(Uuid, T), Error>,
    ) -> Result<(Session, Committed<T>), Error> {
        let unknown = || {
            Error::Own(Own::SignInRefused {
                reason: "UNKNOWN_IDENTITY_PROVIDER",
                message: format!(
                    "{} is not an identity provider",
                    names::fmt::identity_provider(org, provider)
                ),
            })
        };
        let handle = self.org(org).await.map_err(|_| unknown())?;
        let expect = {
            let st = handle.read();
            let p = st.identity_providers.get(&provider).ok_or_else(unknown)?;
            Expectation {
                issuer: p.issuer.clone(),
                audiences: std::iter::once(p.client_id.clone())
                    .chain(p.allowed_audiences.iter().cloned())
                    .collect(),
                nonce,
            }
        };
        let claims = self.oidc.verify(id_token, &expect, self.now()).await?;
        let vouched = Vouched {
            actor: names::fmt::identity_provider(org, provider),
        };
        let committed = self
            .mutate(&vouched, org, None, |d| admit(d, &claims))
            .await?;
        let (user, value) = committed.value;
        let session = self.open_session(org, user, self.now()).await?;
        Ok((
            session,
            Committed {
                value,
                seq: committed.seq,
            },
        ))
    }
}
