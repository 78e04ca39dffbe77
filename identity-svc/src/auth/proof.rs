//! Who is calling ([`Caller`]), the admission by an RPC's table rule ([`Entry`]) and the proof
//! of authorization ([`Authorized`]).
//!
//! Mutations need an [`Authorized`], which only [`Entry::require`] (and [`Entry::authorized`]
//! for rules that need nothing more) can make, so a handler that skipped the check does not
//! compile. This module does not import the core or the store: the core imports it.

use uuid::Uuid;

use super::rules::{Need, Rule, rule};
use crate::domain::model::{Micros, Principal};
use crate::domain::names;
use crate::domain::permissions::engine;
use crate::domain::state::OrgState;
use crate::error::Error;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (only for public RPCs).
    Anonymous,
    /// The platform operator.
    Operator,
    /// A user or service account of an organization.
    Principal {
        /// The organization.
        org: Uuid,
        /// The principal.
        principal: Principal,
        /// The session or service-account token used.
        token: Uuid,
        /// When that token stops working (a stream re-checks it for its whole life).
        expire_time: Micros,
    },
}

/// A caller admitted by the table rule of an RPC, before the request's own needs are checked.
#[derive(Debug, Clone)]
pub struct Entry {
    caller: Caller,
    org: Option<Uuid>,
    rule: Rule,
    actor: String,
    /// When the call was admitted: the time its permission checks are made at.
    now: Micros,
}

/// Proof that the caller passed every check of the RPC. Only this module makes one: its fields
/// are private and it has no public constructor.
#[derive(Debug, Clone)]
pub struct Authorized {
    actor: String,
    principal: Option<Principal>,
    org: Option<Uuid>,
    session: Option<Uuid>,
}

impl Authorized {
    /// Audit name of the caller: a principal's resource name, `operator` or `anonymous`.
    pub fn actor(&self) -> &str {
        &self.actor
    }
    /// The calling principal, if any.
    pub fn principal(&self) -> Option<Principal> {
        self.principal
    }
    /// The organization the call is about, if any.
    pub fn org(&self) -> Option<Uuid> {
        self.org
    }
    /// The session token the caller authenticated with, if it is a user's session (what
    /// Logout revokes).
    pub fn session(&self) -> Option<Uuid> {
        self.session
    }
}

/// Audit name of a principal.
pub fn principal_name(org: Uuid, p: Principal) -> String {
    match p {
        Principal::User(u) => names::fmt::user(org, u),
        Principal::ServiceAccount(s) => names::fmt::service_account(org, s),
    }
}

impl Entry {
    /// Applies the table rule of `method` to `caller` for organization `org` at time `now`
    /// (the time every check of the call is made at). `state` is the organization's state
    /// (needed for permission rules).
    pub fn admit(
        method: &str,
        caller: &Caller,
        org: Option<Uuid>,
        state: Option<&OrgState>,
        now: Micros,
    ) -> Result<Self, Error> {
        let rule = rule(method)
            .ok_or_else(|| Error::Internal(format!("no authorization rule for {method}")))?;
        let actor = match caller {
            Caller::Anonymous => "anonymous".to_owned(),
            Caller::Operator => "operator".to_owned(),
            Caller::Principal { org, principal, .. } => principal_name(*org, *principal),
        };
        let entry = Self {
            caller: caller.clone(),
            org,
            rule,
            actor,
            now,
        };
        match (rule, caller) {
            (Rule::Public, _) => Ok(entry),
            (_, Caller::Anonymous) => Err(Error::Unauthenticated(
                "this call needs a bearer token".into(),
            )),
            (Rule::Authenticated, _)
            | (Rule::Operator | Rule::OperatorOrPrincipal, Caller::Operator) => Ok(entry),
            (Rule::Operator, Caller::Principal { .. }) => Err(Error::PermissionDenied(
                "this call is for the platform operator".into(),
            )),
            (_, Caller::Operator) => Err(Error::PermissionDenied(
                "the operator manages organizations, not their content".into(),
            )),
            (
                _,
                Caller::Principal {
                    org: own,
                    principal,
                    ..
                },
            ) => {
                if org != Some(*own) {
                    return Err(Error::PermissionDenied(
                        "the caller is not a principal of that organization".into(),
                    ));
                }
                if let Rule::Permission(key) = rule {
                    let st = state.ok_or_else(|| Error::Internal("state missing".into()))?;
                    if !engine::has(st, *principal, key, None, None, now) {
                        return Err(Error::PermissionDenied(format!("this call needs {key}")));
                    }
                }
                Ok(entry)
            }
        }
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The calling principal, if any.
    pub fn principal(&self) -> Option<Principal> {
        match self.caller {
            Caller::Principal { principal, .. } => Some(principal),
            _ => None,
        }
    }

    /// Rules that need nothing beyond the table: the proof at once. Refused (INTERNAL) for a
    /// contextual rule, whose needs must be stated.
    pub fn authorized(&self) -> Result<Authorized, Error> {
        if let Rule::Contextual(_) = self.rule {
            return Err(Error::Internal(
                "contextual rule used without its needs".into(),
            ));
        }
        Ok(self.proof())
    }

    /// Checks the request's own needs (contextual rules) and gives the proof.
    pub fn require(&self, state: &OrgState, need: &Need) -> Result<Authorized, Error> {
        match self.caller {
            Caller::Principal { principal, .. } => {
                if need.holds(state, principal, self.now) {
                    Ok(self.proof())
                } else {
                    Err(Error::PermissionDenied(format!(
                        "this call needs {}",
                        need.describe()
                    )))
                }
            }
            Caller::Operator | Caller::Anonymous => {
                if *need == Need::Nothing {
                    Ok(self.proof())
                } else {
                    Err(Error::PermissionDenied(format!(
                        "this call needs {}",
                        need.describe()
                    )))
                }
            }
        }
    }

    /// Whether the caller would pass `need` (for filtering lists).
    pub fn would(&self, state: &OrgState, need: &Need) -> bool {
        self.would_at(state, need, self.now)
    }

    /// Whether the caller would pass `need` at time `now` (a stream re-checking its access
    /// long after it was admitted).
    pub fn would_at(&self, state: &OrgState, need: &Need, now: Micros) -> bool {
        match self.caller {
            Caller::Principal { principal, .. } => need.holds(state, principal, now),
            _ => false,
        }
    }

    /// The time the call was admitted at, which its checks are made at.
    pub fn now(&self) -> Micros {
        self.now
    }

    fn proof(&self) -> Authorized {
        Authorized {
            actor: self.actor.clone(),
            principal: self.principal(),
            org: self.org,
            session: match self.caller {
                Caller::Principal {
                    principal: Principal::User(_),
                    token,
                    ..
                } => Some(token),
                _ => None,
            },
        }
    }
}
