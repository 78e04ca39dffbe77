//! The ODC sync contract (seed 004 and DOMAIN.md): which Customer Portal permission an ODC
//! user's organization-scope role gives on the ODC infrastructure.
//!
//! * built-in Administrator → infrastructure admin; built-in Developer → member;
//! * a custom role with "View all support cases" → infrastructure admin; with only "Open
//!   support cases" → member; with neither → no record;
//! * app-scope assignments do not count (decision: Support permissions are organization-only);
//! * a time-bound grant (R35) counts only while identity says it is ACTIVE: outside its period
//!   it yields no record, and identity's boundary events make the record appear and disappear
//!   (`sync/identity.rs` reads the state);
//! * INACTIVE or deleted users have no record; INVITED users are synced.
//! * a record carries the identity user's display name (see `Members::set` for when it is
//!   written to the member).

use std::collections::HashMap;

use uuid::Uuid;

use super::model::{Email, InfraPermission};

/// The permission key that makes an infrastructure admin.
pub const VIEW_ALL_CASES: &str = "support.view_all_cases";
/// The permission key that makes a member.
pub const OPEN_CASES: &str = "support.open_cases";

/// What the mapping needs to know of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleKind {
    /// Built-in Administrator.
    Administrator,
    /// Built-in Developer.
    Developer,
    /// A custom role and its permission keys.
    Custom(Vec<String>),
}

impl RoleKind {
    /// The portal permission the role gives, if any.
    pub fn level(&self) -> Option<InfraPermission> {
        match self {
            RoleKind::Administrator => Some(InfraPermission::Admin),
            RoleKind::Developer => Some(InfraPermission::Member),
            RoleKind::Custom(perms) => {
                if perms.iter().any(|p| p == VIEW_ALL_CASES) {
                    Some(InfraPermission::Admin)
                } else if perms.iter().any(|p| p == OPEN_CASES) {
                    Some(InfraPermission::Member)
                } else {
                    None
                }
            }
        }
    }
}

/// Identity user state as far as the mapping is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    /// Invited, not accepted yet (synced).
    Invited,
    /// Active (synced).
    Active,
    /// Deactivated (no record).
    Inactive,
}

/// What the mapping reads of an identity user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorUser {
    /// The user's email.
    pub email: Email,
    /// The user's state.
    pub state: UserState,
    /// The user's display name.
    pub display_name: String,
}

/// The record an identity user should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The member's email.
    pub email: Email,
    /// The permission on the infrastructure.
    pub permission: InfraPermission,
    /// The identity user's display name.
    pub display_name: String,
}

/// A mirror of what the mapping reads from one identity organization.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    /// Users by id.
    pub users: HashMap<Uuid, MirrorUser>,
    /// Roles by id.
    pub roles: HashMap<String, RoleKind>,
    /// Organization-scope role of each user.
    pub org_roles: HashMap<Uuid, String>,
}

impl Mirror {
    /// The record a user should have, or none.
    pub fn derive(&self, user: Uuid) -> Option<Desired> {
        let u = self.users.get(&user)?;
        if u.state == UserState::Inactive {
            return None;
        }
        let permission = self.roles.get(self.org_roles.get(&user)?)?.level()?;
        Some(Desired {
            email: u.email.clone(),
            permission,
            display_name: u.display_name.clone(),
        })
    }

    /// Users holding `role` at organization scope.
    pub fn holders(&self, role: &str) -> Vec<Uuid> {
        self.org_roles
            .iter()
            .filter(|(_, r)| r.as_str() == role)
            .map(|(u, _)| *u)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(role: RoleKind, state: UserState) -> (Mirror, Uuid) {
        let u = Uuid::new_v4();
        let mut m = Mirror::default();
        m.users.insert(
            u,
            MirrorUser {
                email: Email::parse("a@x.com").unwrap(),
                state,
                display_name: "Ada".into(),
            },
        );
        m.roles.insert("r".into(), role);
        m.org_roles.insert(u, "r".into());
        (m, u)
    }

    #[test]
    fn built_in_and_custom_roles_map_per_the_seed() {
        let cases = [
            (RoleKind::Administrator, Some(InfraPermission::Admin)),
            (RoleKind::Developer, Some(InfraPermission::Member)),
            (
                RoleKind::Custom(vec![VIEW_ALL_CASES.into(), OPEN_CASES.into()]),
                Some(InfraPermission::Admin),
            ),
            (
                RoleKind::Custom(vec![VIEW_ALL_CASES.into()]),
                Some(InfraPermission::Admin),
            ),
            (
                RoleKind::Custom(vec![OPEN_CASES.into(), "asset.open".into()]),
                Some(InfraPermission::Member),
            ),
            (RoleKind::Custom(vec!["asset.open".into()]), None),
        ];
        for (role, want) in cases {
            let (m, u) = mirror(role.clone(), UserState::Active);
            assert_eq!(m.derive(u).map(|d| d.permission), want, "{role:?}");
        }
    }

    #[test]
    fn inactive_users_have_no_record_and_invited_users_do() {
        let (m, u) = mirror(RoleKind::Administrator, UserState::Inactive);
        assert_eq!(m.derive(u), None);
        let (m, u) = mirror(RoleKind::Administrator, UserState::Invited);
        assert!(m.derive(u).is_some());
    }

    #[test]
    fn users_without_an_organization_role_have_no_record() {
        let (mut m, u) = mirror(RoleKind::Administrator, UserState::Active);
        m.org_roles.clear();
        assert_eq!(m.derive(u), None);
    }
}
