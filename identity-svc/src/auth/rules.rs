//! The authorization rules: the RPC → requirement table ([`RULES`]: "who may call AssignRole")
//! and the needs a handler states for a contextual rule ([`Need`]).
//!
//! Every RPC has exactly one entry in [`RULES`]; a test walks the service descriptors and fails
//! when an RPC has none. Pure: no store, no core.

use std::fmt::Write as _;

use uuid::Uuid;

use crate::domain::model::{Micros, Principal};
use crate::domain::permissions::catalog::keys;
use crate::domain::permissions::engine;
use crate::domain::state::OrgState;

/// What an RPC requires before its request is even read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No token (the request carries its own credential).
    Public,
    /// An operator token.
    Operator,
    /// Any authenticated caller.
    Authenticated,
    /// An operator token, or any ACTIVE principal of the organization named.
    OperatorOrPrincipal,
    /// Any ACTIVE principal of the organization named.
    Principal,
    /// A permission that is not limited to stages, at organization scope.
    Permission(&'static str),
    /// Depends on the request (stage, app, target); the text says what. The handler states the
    /// exact needs through [`Entry::require`](super::Entry::require).
    Contextual(&'static str),
}

/// The RPC → requirement table: one entry per RPC of the identity API.
pub static RULES: &[(&str, Rule)] = &[
    (
        "identity.v1.Organizations/CreateOrganization",
        Rule::Operator,
    ),
    (
        "identity.v1.Organizations/GetOrganization",
        Rule::OperatorOrPrincipal,
    ),
    (
        "identity.v1.Organizations/ListOrganizations",
        Rule::Operator,
    ),
    (
        "identity.v1.Organizations/UpdateOrganization",
        Rule::Permission(keys::ORG_MANAGE),
    ),
    ("identity.v1.Stages/ListStages", Rule::Principal),
    (
        "identity.v1.Stages/CreateStage",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Stages/UpdateStage",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Stages/ReorderStages",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Stages/DeleteStage",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Apps/CreateApp",
        Rule::Permission(keys::ASSET_CREATE),
    ),
    ("identity.v1.Apps/GetApp", Rule::Principal),
    ("identity.v1.Apps/ListApps", Rule::Principal),
    (
        "identity.v1.Apps/DeleteApp",
        Rule::Contextual("asset.delete on the app in every stage"),
    ),
    (
        "identity.v1.Apps/CreateEndUserRole",
        Rule::Contextual("asset.change on the app in development"),
    ),
    ("identity.v1.Apps/ListEndUserRoles", Rule::Principal),
    (
        "identity.v1.Apps/DeleteEndUserRole",
        Rule::Contextual("asset.change on the app in development"),
    ),
    (
        "identity.v1.Users/InviteUser",
        Rule::Contextual("per access carried; users.manage when none"),
    ),
    (
        "identity.v1.Users/ResendInvitation",
        Rule::Contextual(
            "users.manage, users.manage_member_access or end_users.manage_access in any stage",
        ),
    ),
    ("identity.v1.Users/AcceptInvitation", Rule::Public),
    (
        "identity.v1.Users/CreateUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    (
        "identity.v1.Users/GetUser",
        Rule::Contextual(
            "self, users.manage, users.view_members for members, end_users.view for end-users",
        ),
    ),
    (
        "identity.v1.Users/ListUsers",
        Rule::Contextual("by facet: users.view_members, end_users.view, users.manage"),
    ),
    (
        "identity.v1.Users/UpdateUser",
        Rule::Contextual("users.manage or self; users.manage to set an email"),
    ),
    (
        "identity.v1.Users/ActivateUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    (
        "identity.v1.Users/DeactivateUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    (
        "identity.v1.Users/DeleteUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    ("identity.v1.Users/Login", Rule::Public),
    ("identity.v1.Users/Logout", Rule::Authenticated),
    ("identity.v1.Roles/ListPermissions", Rule::Authenticated),
    ("identity.v1.Roles/ListRoles", Rule::Principal),
    ("identity.v1.Roles/GetRole", Rule::Principal),
    (
        "identity.v1.Roles/CreateRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Roles/UpdateRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Roles/DuplicateRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Roles/DeleteRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Access/AssignRole",
        Rule::Permission(keys::USERS_MANAGE_MEMBER_ACCESS),
    ),
    (
        "identity.v1.Access/RevokeRole",
        Rule::Permission(keys::USERS_MANAGE_MEMBER_ACCESS),
    ),
    (
        "identity.v1.Access/ListRoleAssignments",
        Rule::Contextual("users.view_members, or only own assignments"),
    ),
    (
        "identity.v1.Access/GrantEndUserRole",
        Rule::Contextual("end_users.manage_access in the stage on the app"),
    ),
    (
        "identity.v1.Access/RevokeEndUserRole",
        Rule::Contextual("end_users.manage_access in the stage on the app"),
    ),
    (
        "identity.v1.Access/CheckPermission",
        Rule::Contextual("self; users.view_members or a service account for others"),
    ),
    (
        "identity.v1.Access/ListEffectivePermissions",
        Rule::Contextual("self; users.view_members or a service account for others"),
    ),
    (
        "identity.v1.Access/ListPermissionHolders",
        Rule::Contextual("users.view_members or a service account"),
    ),
    (
        "identity.v1.Access/CheckEndUserRole",
        Rule::Contextual("self, or end_users.view in the stage on the app"),
    ),
    ("identity.v1.Access/Noop", Rule::Principal),
    (
        "identity.v1.Groups/CreateGroup",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/GetGroup",
        Rule::Contextual("end_users.view or end_users.manage_groups in the group's stage"),
    ),
    ("identity.v1.Groups/ListGroups", Rule::Principal),
    (
        "identity.v1.Groups/UpdateGroup",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/DeleteGroup",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/AddGroupMembers",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/RemoveGroupMembers",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/AddGroupRoles",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/RemoveGroupRoles",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/ListGroupMembers",
        Rule::Contextual("end_users.view or end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.ServiceAccounts/CreateServiceAccount",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/ListServiceAccounts",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/DeleteServiceAccount",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/CreateServiceAccountToken",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/ListServiceAccountTokens",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/RevokeServiceAccountToken",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.IdentityProviders/CreateIdentityProvider",
        Rule::Permission(keys::AUTH_MANAGE),
    ),
    (
        "identity.v1.IdentityProviders/GetIdentityProvider",
        Rule::Permission(keys::AUTH_MANAGE),
    ),
    (
        "identity.v1.IdentityProviders/ListIdentityProviders",
        Rule::Permission(keys::AUTH_MANAGE),
    ),
    (
        "identity.v1.IdentityProviders/UpdateIdentityProvider",
        Rule::Permission(keys::AUTH_MANAGE),
    ),
    (
        "identity.v1.IdentityProviders/DeleteIdentityProvider",
        Rule::Permission(keys::AUTH_MANAGE),
    ),
    (
        "identity.v1.IdentityProviders/SignInWithIdentityProvider",
        Rule::Public,
    ),
    (
        "identity.v1.Audit/ListChangeEvents",
        Rule::Permission(keys::ORG_VIEW_AUDIT_TRAIL),
    ),
    (
        "identity.v1.Audit/WatchChanges",
        Rule::Permission(keys::ORG_VIEW_AUDIT_TRAIL),
    ),
    (
        "identity.v1.Audit/GetSnapshot",
        Rule::Permission(keys::ORG_VIEW_AUDIT_TRAIL),
    ),
];

/// The rule of an RPC (`package.Service/Method`).
pub fn rule(method: &str) -> Option<Rule> {
    RULES.iter().find(|(m, _)| *m == method).map(|(_, r)| *r)
}

/// A need stated by a handler for a contextual rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing beyond the table rule.
    Nothing,
    /// A permission, in a stage and/or on an app when given.
    Perm(&'static str, Option<String>, Option<Uuid>),
    /// A permission in at least one stage (or app) of the organization.
    PermAnywhere(&'static str),
    /// The caller is this principal.
    Is(Principal),
    /// The caller is a service account.
    ServiceAccount,
    /// Every one.
    All(Vec<Need>),
    /// At least one.
    Any(Vec<Need>),
}

impl Need {
    /// Whether `who` meets the need in `st` at time `now` (time-bound grants count inside
    /// their period only).
    pub(super) fn holds(&self, st: &OrgState, who: Principal, now: Micros) -> bool {
        match self {
            Need::Nothing => true,
            Need::Perm(key, stage, app) => engine::has(st, who, key, stage.as_deref(), *app, now),
            Need::PermAnywhere(key) => engine::has_in_any_stage(st, who, key, now),
            Need::Is(p) => *p == who,
            Need::ServiceAccount => matches!(who, Principal::ServiceAccount(_)),
            Need::All(v) => v.iter().all(|n| n.holds(st, who, now)),
            Need::Any(v) => v.iter().any(|n| n.holds(st, who, now)),
        }
    }

    /// The need in words, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Need::Nothing => "nothing".into(),
            Need::Perm(k, s, a) => {
                let mut t = (*k).to_owned();
                if let Some(s) = s {
                    let _ = write!(t, " in stage {s}");
                }
                if let Some(a) = a {
                    let _ = write!(t, " on app {a}");
                }
                t
            }
            Need::PermAnywhere(k) => format!("{k} in some stage"),
            Need::Is(_) => "being that principal".into(),
            Need::ServiceAccount => "being a service account".into(),
            Need::All(v) => v
                .iter()
                .map(Need::describe)
                .collect::<Vec<_>>()
                .join(" and "),
            Need::Any(v) => {
                format!(
                    "one of: {}",
                    v.iter().map(Need::describe).collect::<Vec<_>>().join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
