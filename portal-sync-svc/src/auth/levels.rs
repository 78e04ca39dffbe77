//! The access levels a person must hold: the [`Gate`] of a table rule (checked on entry) and
//! the [`Need`] of a request (stated by a portal rule), both decided on the company's facts.

use uuid::Uuid;

use crate::domain::capabilities::Capability;
use crate::domain::facts::{CompanyFacts, Level};
use crate::domain::model::Email;

/// The least a person must be in the company to enter an RPC at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Anyone named (no level needed: e.g. an unknown requester opening a case).
    Anyone,
    /// A team member or a support contact.
    AnyLevel,
    /// A team member.
    Member,
    /// A company admin or an infrastructure admin of some infrastructure.
    AnyAdmin,
    /// A company admin.
    CompanyAdmin,
    /// The capability on at least one infrastructure (or company-wide).
    Capability(Capability),
}

impl Gate {
    pub(super) fn holds(self, facts: &CompanyFacts, who: &Email) -> bool {
        match self {
            Gate::Anyone => true,
            Gate::AnyLevel => !facts.levels(who).is_empty(),
            Gate::Member => facts.member(who).is_some(),
            Gate::AnyAdmin => facts
                .levels(who)
                .iter()
                .any(|l| matches!(l, Level::CompanyAdmin | Level::InfrastructureAdmin(_))),
            Gate::CompanyAdmin => facts.is_company_admin(who),
            Gate::Capability(c) => facts.check(who, c, None).allowed(),
        }
    }

    pub(super) fn describe(self) -> String {
        match self {
            Gate::Anyone => "a named person".into(),
            Gate::AnyLevel => "a team member or support contact of the company".into(),
            Gate::Member => "a team member of the company".into(),
            Gate::AnyAdmin => "a company admin or an infrastructure admin".into(),
            Gate::CompanyAdmin => "a company admin".into(),
            Gate::Capability(c) => format!("the capability {c:?}"),
        }
    }
}

/// A request-dependent need, stated by a handler of a contextual rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing beyond the table rule.
    Nothing,
    /// Being this person.
    Is(Email),
    /// Being a company admin.
    CompanyAdmin,
    /// Being an infrastructure admin of this infrastructure.
    InfrastructureAdmin(Uuid),
    /// Being an infrastructure admin of every one of these (false when there are none).
    InfrastructureAdminOfEvery(Vec<Uuid>),
    /// Holding a capability (on an infrastructure).
    Capability(Capability, Option<Uuid>),
    /// Every one.
    All(Vec<Need>),
    /// At least one.
    Any(Vec<Need>),
}

impl Need {
    pub(super) fn holds(&self, facts: &CompanyFacts, who: &Email) -> bool {
        match self {
            Need::Nothing => true,
            Need::Is(e) => e == who,
            Need::CompanyAdmin => facts.is_company_admin(who),
            Need::InfrastructureAdmin(i) => facts.is_infrastructure_admin(who, *i),
            Need::InfrastructureAdminOfEvery(v) => {
                !v.is_empty() && v.iter().all(|i| facts.is_infrastructure_admin(who, *i))
            }
            Need::Capability(c, i) => facts.check(who, *c, *i).allowed(),
            Need::All(v) => v.iter().all(|n| n.holds(facts, who)),
            Need::Any(v) => v.iter().any(|n| n.holds(facts, who)),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Need::Nothing => "nothing".into(),
            Need::Is(_) => "being that person".into(),
            Need::CompanyAdmin => "a company admin".into(),
            Need::InfrastructureAdmin(_) => "an infrastructure admin of the infrastructure".into(),
            Need::InfrastructureAdminOfEvery(_) => {
                "an infrastructure admin of every infrastructure concerned".into()
            }
            Need::Capability(c, Some(_)) => format!("{c:?} on the infrastructure"),
            Need::Capability(c, None) => format!("{c:?}"),
            Need::All(v) => v
                .iter()
                .map(Need::describe)
                .collect::<Vec<_>>()
                .join(" and "),
            Need::Any(v) => format!(
                "one of: {}",
                v.iter().map(Need::describe).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}
