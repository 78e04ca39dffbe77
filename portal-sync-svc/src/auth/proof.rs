//! Admission and the proof of authorization: an [`Entry`] is a caller admitted by the table
//! rule of an RPC; an [`Authorized`], which only this file makes, proves the caller passed every
//! check of the RPC. Every write of the store takes one ([`crate::rules`]).

use uuid::Uuid;

use super::AuthError;
use super::authenticate::Caller;
use super::levels::{Gate, Need};
use super::rules::{Rule, rule};
use crate::domain::facts::CompanyFacts;
use crate::domain::model::Email;

/// Audit actor of operator calls.
pub const OPERATOR_ACTOR: &str = "operator";
/// Audit actor of service calls made for no one in particular.
pub const SERVICE_ACTOR: &str = "service";

/// A caller admitted by the table rule of an RPC, before the request's own needs.
#[derive(Debug, Clone)]
pub struct Entry {
    caller: Caller,
    rule: Rule,
    company: Option<Uuid>,
}

/// Proof that the caller passed every check of the RPC. Only this module makes one.
#[derive(Debug, Clone)]
pub struct Authorized {
    actor: String,
    person: Option<Email>,
    company: Option<Uuid>,
}

impl Authorized {
    /// Audit name of the caller: the person's email, `operator` or `service`.
    pub fn actor(&self) -> &str {
        &self.actor
    }
    /// The person acted for, if any.
    pub fn person(&self) -> Option<&Email> {
        self.person.as_ref()
    }
    /// The company the call is about, if any.
    pub fn company(&self) -> Option<Uuid> {
        self.company
    }
}

impl Entry {
    /// Applies the table rule of `method` to an authenticated caller. `company` is the company
    /// the request is about, and `facts` its records (needed for person rules; `None` when the
    /// company does not exist, which a person is refused like any company they have no level
    /// in).
    pub fn admit(
        method: &str,
        caller: Caller,
        company: Option<Uuid>,
        facts: Option<&CompanyFacts>,
    ) -> Result<Self, AuthError> {
        let rule =
            rule(method).ok_or_else(|| AuthError::Internal(format!("no rule for {method}")))?;
        if let (Caller::Person(who), Some(gate)) = (&caller, rule.gate()) {
            let Some(facts) = facts else {
                return Err(AuthError::PermissionDenied(
                    "the person acted for has no access to this company".into(),
                ));
            };
            if gate != Gate::Anyone && facts.levels(who).is_empty() {
                return Err(AuthError::PermissionDenied(
                    "the person acted for has no access to this company".into(),
                ));
            }
            if !gate.holds(facts, who) {
                return Err(AuthError::PermissionDenied(format!(
                    "this call needs {}",
                    gate.describe()
                )));
            }
        }
        Ok(Self {
            caller,
            rule,
            company,
        })
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The person acted for, if any.
    pub fn person(&self) -> Option<&Email> {
        match &self.caller {
            Caller::Person(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the caller is the operator.
    pub fn is_operator(&self) -> bool {
        self.caller == Caller::Operator
    }

    /// The proof, for rules that need nothing beyond the table. Refused (INTERNAL) for a
    /// contextual rule, whose needs must be stated.
    pub fn authorized(&self) -> Result<Authorized, AuthError> {
        if let Rule::Contextual(..) = self.rule {
            return Err(AuthError::Internal(
                "contextual rule used without its needs".into(),
            ));
        }
        Ok(self.proof())
    }

    /// Checks the request's own needs and gives the proof. The operator and a service acting
    /// for no one pass only [`Need::Nothing`].
    pub fn require(&self, facts: &CompanyFacts, need: &Need) -> Result<Authorized, AuthError> {
        let ok = match &self.caller {
            Caller::Person(who) => need.holds(facts, who),
            Caller::Operator | Caller::Service => *need == Need::Nothing,
        };
        if ok {
            Ok(self.proof())
        } else {
            Err(AuthError::PermissionDenied(format!(
                "this call needs {}",
                need.describe()
            )))
        }
    }

    /// Whether the caller would pass `need` (to filter what a list shows).
    pub fn would(&self, facts: &CompanyFacts, need: &Need) -> bool {
        match &self.caller {
            Caller::Person(who) => need.holds(facts, who),
            _ => false,
        }
    }

    fn proof(&self) -> Authorized {
        let (actor, person) = match &self.caller {
            Caller::Operator => (OPERATOR_ACTOR.to_owned(), None),
            Caller::Service => (SERVICE_ACTOR.to_owned(), None),
            Caller::Person(e) => (e.as_str().to_owned(), Some(e.clone())),
        };
        Authorized {
            actor,
            person,
            company: self.company,
        }
    }
}
