//! Access for the life of a stream: a `WatchChanges` stream keeps delivering only while its
//! caller would still be let in.
//!
//! A stream is opened with a principal's token. From then on [`StreamAccess::check`] re-checks,
//! in memory, what authentication and the RPC's rule checked at the start: the principal still
//! exists and is ACTIVE (the organization's state), the token is neither revoked
//! ([`HeldTokens`]) nor expired (the service's clock), and the principal still holds the
//! permission the call needs. The feed runs the check before every event it sends and whenever
//! [`StreamAccess::changed`] says the access may have changed:
//!
//! * the organization's state changed (a deactivation, a deletion, a role unassigned): every
//!   committed event reaches the watcher through the organization's live feed, on every
//!   replica (the follower applies other replicas' events and publishes them the same way);
//! * the token was revoked (Logout, RevokeServiceAccountToken: no event): the token cache tells
//!   [`HeldTokens`], on this replica at once and on the others through the follower, which
//!   learns every revocation from the store each follow interval;
//! * the clock moved past the token's expiry: checked every [`ACCESS_TICK`].
//!
//! Operator streams have no token to lose and are never ended by this module.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use super::{OrgHandle, SharedClock};
use crate::auth::{Caller, Entry, Need};
use crate::domain::model::{Micros, Principal, UserState};
use crate::error::{Error, Own};

/// How often an open stream re-checks its access without being woken: the bound on noticing
/// that its token expired (by the service's clock).
pub const ACCESS_TICK: Duration = Duration::from_millis(200);

/// How long a revocation is remembered for a stream that was being opened when it happened
/// (its token was checked before, its hold registered after).
const RECENT: Duration = Duration::from_mins(2);
/// At most this many recent revocations are remembered.
const RECENT_CAPACITY: usize = 100_000;

/// The tokens open streams hold, each with a flag that a revocation raises; and the tokens
/// revoked lately, for streams registering their hold just after.
///
/// Told by the token cache of every revocation of one token (on this replica, and those the
/// follower finds in the store). A principal's tokens revoked with its deactivation or deletion
/// need no telling: the state change itself ends its streams.
#[derive(Debug, Default)]
pub(super) struct HeldTokens {
    inner: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// The revocation flag of each token some stream holds.
    flags: HashMap<Uuid, watch::Sender<bool>>,
    /// Tokens revoked lately, with when this replica learnt it, oldest first.
    recent: VecDeque<(Uuid, Instant)>,
    /// The same, by token.
    recent_ids: HashMap<Uuid, Instant>,
}

impl HeldTokens {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises the flags of `ids`: the streams holding them end.
    pub(super) fn revoked(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut held = self.lock();
        let now = Instant::now();
        for id in ids {
            if let Some(flag) = held.flags.get(&id) {
                flag.send_replace(true);
            }
            if held.recent_ids.insert(id, now).is_none() {
                held.recent.push_back((id, now));
            }
        }
        while let Some(&(id, at)) = held.recent.front() {
            if at.elapsed() < RECENT && held.recent.len() <= RECENT_CAPACITY {
                break;
            }
            held.recent.pop_front();
            held.recent_ids.remove(&id);
        }
    }

    /// Registers a stream's hold of token `id`: its flag, raised already if it was revoked
    /// lately.
    fn hold(self: &Arc<Self>, id: Uuid) -> watch::Receiver<bool> {
        let mut held = self.lock();
        let revoked = held.recent_ids.contains_key(&id);
        let flag = held
            .flags
            .entry(id)
            .or_insert_with(|| watch::channel(revoked).0);
        if revoked {
            flag.send_replace(true);
        }
        flag.subscribe()
    }

    /// Drops the flag of `id` when its holder releasing it (whose receiver is still alive)
    /// is the last one.
    fn release(&self, id: Uuid) {
        let mut held = self.lock();
        if held.flags.get(&id).is_some_and(|f| f.receiver_count() <= 1) {
            held.flags.remove(&id);
        }
    }
}

/// A stream's hold of its token.
#[derive(Debug)]
struct TokenHold {
    principal: Principal,
    id: Uuid,
    expire_time: Micros,
    /// Raised when the token is revoked.
    revoked: watch::Receiver<bool>,
    held: Arc<HeldTokens>,
}

impl Drop for TokenHold {
    fn drop(&mut self) {
        self.held.release(self.id);
    }
}

/// The access of one open stream (see the module docs).
#[derive(Debug)]
pub(super) struct StreamAccess {
    handle: Arc<OrgHandle>,
    entry: Entry,
    need: Need,
    clock: SharedClock,
    /// `None` for the operator, whose access does not end.
    token: Option<TokenHold>,
    tick: tokio::time::Interval,
}

impl StreamAccess {
    /// The access of a stream opened by `entry`'s caller in the organization of `handle`,
    /// which needs `need` for its whole life.
    pub(super) fn new(
        entry: Entry,
        need: Need,
        handle: Arc<OrgHandle>,
        clock: SharedClock,
        held: &Arc<HeldTokens>,
    ) -> Result<Self, Error> {
        let token = match *entry.caller() {
            Caller::Principal {
                principal,
                token,
                expire_time,
                ..
            } => Some(TokenHold {
                principal,
                id: token,
                expire_time,
                revoked: held.hold(token),
                held: Arc::clone(held),
            }),
            Caller::Operator => None,
            Caller::Anonymous => {
                return Err(Error::Internal("a stream needs a caller".into()));
            }
        };
        let mut tick = tokio::time::interval(ACCESS_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            handle,
            entry,
            need,
            clock,
            token,
            tick,
        })
    }

    /// Completes when the access may have changed without an event of the organization: the
    /// token was revoked, or a tick went by (expiry). Cancel-safe.
    pub(super) async fn changed(&mut self) {
        let Some(token) = &mut self.token else {
            return std::future::pending().await;
        };
        tokio::select! {
            r = token.revoked.changed() => {
                if r.is_err() {
                    // No flag any more (cannot happen while held): the tick still checks.
                    self.tick.tick().await;
                }
            }
            _ = self.tick.tick() => {}
        }
    }

    /// Whether the caller would still be let in: the error that ends the stream if not. In
    /// memory; the principal's state is checked first, so a deactivation or deletion (which
    /// also revokes the principal's tokens) is reported as what it is.
    pub(super) fn check(&self) -> Result<(), Error> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let st = self.handle.read();
        let gone = match token.principal {
            Principal::User(u) => match st.users.get(&u) {
                None => Some(("USER_DELETED", "the watching user was deleted")),
                Some(user) if user.state != UserState::Active => {
                    Some(("USER_DEACTIVATED", "the watching user is no longer active"))
                }
                Some(_) => None,
            },
            Principal::ServiceAccount(s) => (!st.service_accounts.contains_key(&s)).then_some((
                "SERVICE_ACCOUNT_DELETED",
                "the watching service account was deleted",
            )),
        };
        let ended = gone.or_else(|| {
            if *token.revoked.borrow() {
                Some(match token.principal {
                    Principal::User(_) => ("SESSION_LOGGED_OUT", "the session was logged out"),
                    Principal::ServiceAccount(_) => {
                        ("TOKEN_REVOKED", "the service-account token was revoked")
                    }
                })
            } else if token.expire_time <= self.clock.now() {
                Some(("TOKEN_EXPIRED", "the bearer token expired"))
            } else {
                None
            }
        });
        if let Some((reason, why)) = ended {
            return Err(Error::Own(Own::AccessEnded {
                reason,
                message: format!("{why}: the stream ended; watch again with a valid token"),
                denied: false,
            }));
        }
        if !self.entry.would_at(&st, &self.need, self.clock.now()) {
            return Err(Error::Own(Own::AccessEnded {
                reason: "PERMISSION_LOST",
                message: format!(
                    "the watching principal no longer has {}: the stream ended",
                    self.need.describe()
                ),
                denied: true,
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_raises_the_flags_of_its_holders_and_is_remembered_for_late_ones() {
        let held = Arc::new(HeldTokens::default());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = held.hold(a);
        let second = held.hold(a);
        let other = held.hold(b);
        held.revoked([a]);
        assert!(*first.borrow() && *second.borrow());
        assert!(!*other.borrow());
        // A stream registering after the revocation starts revoked.
        assert!(*held.hold(a).borrow());
        // The last holder's release drops the flag.
        held.release(b);
        assert!(!held.lock().flags.contains_key(&b));
        held.release(a);
        assert!(held.lock().flags.contains_key(&a));
    }
}
