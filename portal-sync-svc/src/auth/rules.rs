//! "Who may call what": the RPC → requirement table, one entry per RPC of `portal.v1` (a test
//! walks the descriptors). The table rule is checked before the request is read; the
//! request-dependent needs of a contextual rule are stated by the portal rules
//! ([`crate::rules`]) through [`super::proof::Entry::require`].

use super::levels::Gate;
use crate::domain::capabilities::Capability;

/// What an RPC requires before its request is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The operator token.
    Operator,
    /// A service token (no person).
    Service,
    /// The operator token or a service token (no person).
    OperatorOrService,
    /// The operator token, or a service token acting for a person who passes the gate.
    OperatorOrPerson(Gate),
    /// A service token acting for a person who passes the gate.
    Person(Gate),
    /// A service token acting for a person who passes the gate; the handler then states the
    /// request's exact needs (the text says what) through [`Entry::require`](super::proof::Entry::require).
    Contextual(Gate, &'static str),
}

impl Rule {
    pub(super) fn operator_may(self) -> bool {
        matches!(
            self,
            Rule::Operator | Rule::OperatorOrService | Rule::OperatorOrPerson(_)
        )
    }

    pub(super) fn wants_person(self) -> bool {
        matches!(
            self,
            Rule::OperatorOrPerson(_) | Rule::Person(_) | Rule::Contextual(..)
        )
    }

    pub(super) fn gate(self) -> Option<Gate> {
        match self {
            Rule::OperatorOrPerson(g) | Rule::Person(g) | Rule::Contextual(g, _) => Some(g),
            _ => None,
        }
    }
}

/// The RPC → requirement table: one entry per RPC of `portal.v1`.
pub static RULES: &[(&str, Rule)] = &[
    ("portal.v1.Companies/CreateCompany", Rule::Operator),
    (
        "portal.v1.Companies/GetCompany",
        Rule::OperatorOrPerson(Gate::Member),
    ),
    ("portal.v1.Companies/CreateInfrastructure", Rule::Operator),
    ("portal.v1.Companies/SetIdentityToken", Rule::Operator),
    (
        "portal.v1.Companies/ListInfrastructures",
        Rule::OperatorOrPerson(Gate::Member),
    ),
    (
        "portal.v1.TeamMembers/ListTeamMembers",
        Rule::Person(Gate::AnyAdmin),
    ),
    (
        "portal.v1.TeamMembers/GetTeamMember",
        Rule::Contextual(
            Gate::Member,
            "the member themselves, a company admin, or an infrastructure admin of one of the \
             member's infrastructures (company admins are visible to every infrastructure admin)",
        ),
    ),
    (
        "portal.v1.TeamMembers/AddTeamMember",
        Rule::Contextual(
            Gate::Capability(Capability::ManageUsers),
            "a company admin; or, for company permission MEMBER and at least one infrastructure \
             named, an infrastructure admin of every infrastructure named",
        ),
    ),
    (
        "portal.v1.TeamMembers/UpdateTeamMember",
        Rule::Contextual(
            Gate::Capability(Capability::ManageUsers),
            "a company admin; or, for a member who is not a company admin, an infrastructure \
             admin of every infrastructure whose access changes (and of one of the member's \
             infrastructures for display name and team role)",
        ),
    ),
    (
        "portal.v1.TeamMembers/RemoveTeamMember",
        Rule::Contextual(
            Gate::Capability(Capability::ManageUsers),
            "a company admin; or, for a member who is not a company admin, an infrastructure \
             admin of every infrastructure the member has",
        ),
    ),
    (
        "portal.v1.TeamMembers/AssignCompanyAdmin",
        Rule::Person(Gate::Capability(Capability::ManageCompanyAdmins)),
    ),
    (
        "portal.v1.TeamMembers/RemoveCompanyAdmin",
        Rule::Person(Gate::Capability(Capability::ManageCompanyAdmins)),
    ),
    (
        "portal.v1.TeamMembers/SetSecurityContact",
        Rule::Person(Gate::Capability(Capability::ManageSecurityContact)),
    ),
    (
        "portal.v1.TeamMembers/ClearSecurityContact",
        Rule::Person(Gate::Capability(Capability::ManageSecurityContact)),
    ),
    (
        "portal.v1.CommunityAccounts/RegisterCommunityAccount",
        Rule::OperatorOrService,
    ),
    (
        "portal.v1.CommunityAccounts/RemoveCommunityAccount",
        Rule::OperatorOrService,
    ),
    (
        "portal.v1.Support/CreateSupportCase",
        Rule::Contextual(
            Gate::Anyone,
            "a team member needs REGISTER_SUPPORT_CASES on the infrastructure; anyone else may \
             open a case, held for approval unless they are an approved contact",
        ),
    ),
    (
        "portal.v1.Support/ListSupportCases",
        Rule::Person(Gate::AnyLevel),
    ),
    (
        "portal.v1.Support/ApproveSupportCase",
        Rule::Contextual(
            Gate::Capability(Capability::ApproveUnauthorizedCases),
            "APPROVE_UNAUTHORIZED_CASES on the case's infrastructure",
        ),
    ),
    (
        "portal.v1.Support/ListSupportContacts",
        Rule::Person(Gate::AnyAdmin),
    ),
    (
        "portal.v1.Support/RemoveSupportContact",
        Rule::Person(Gate::Capability(Capability::RemoveContacts)),
    ),
    ("portal.v1.Capabilities/CheckCapability", Rule::Service),
    (
        "portal.v1.Capabilities/ListNotificationRecipients",
        Rule::Service,
    ),
    ("portal.v1.Sync/GetSyncStatus", Rule::OperatorOrService),
    ("portal.v1.Sync/Resync", Rule::Operator),
    (
        "portal.v1.Sync/ListPortalEvents",
        Rule::OperatorOrPerson(Gate::CompanyAdmin),
    ),
];

/// The rule of an RPC (`portal.v1.Service/Method`).
pub fn rule(method: &str) -> Option<Rule> {
    RULES.iter().find(|(m, _)| *m == method).map(|(_, r)| *r)
}
