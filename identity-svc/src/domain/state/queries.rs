//! The questions asked of an organization's state that are not one index lookup: stage order,
//! membership, whether a principal is active, who a role change affects.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OrgState;
use crate::domain::model::{Principal, Stage, UserState};

impl OrgState {
    /// Stages in order.
    pub fn ordered_stages(&self) -> Vec<&Stage> {
        let mut v: Vec<&Stage> = self.stages.values().collect();
        v.sort_by_key(|s| s.order);
        v
    }

    /// Whether the user holds an organization role at any scope.
    pub fn is_member(&self, user: Uuid) -> bool {
        self.assignments.contains_key(&Principal::User(user))
    }

    /// Whether the user holds an end-user role directly or belongs to a group (decision: group
    /// membership alone makes a user an end-user).
    pub fn is_end_user(&self, user: Uuid) -> bool {
        self.end_user_grants.contains_key(&user) || self.user_groups.contains_key(&user)
    }

    /// Whether the user is an end-user in `stage`: a direct grant there or a group of it.
    pub fn is_end_user_in(&self, user: Uuid, stage: &str) -> bool {
        self.end_user_grants
            .get(&user)
            .is_some_and(|g| g.iter().any(|(_, s)| s == stage))
            || self.user_groups.get(&user).is_some_and(|gs| {
                gs.iter()
                    .any(|g| self.groups.get(g).is_some_and(|g| g.stage == stage))
            })
    }

    /// Whether a principal exists and may act (users must be ACTIVE).
    pub fn is_active(&self, p: Principal) -> bool {
        match p {
            Principal::User(u) => self
                .users
                .get(&u)
                .is_some_and(|u| u.state == UserState::Active),
            Principal::ServiceAccount(s) => self.service_accounts.contains_key(&s),
        }
    }

    /// Whether a principal exists.
    pub fn principal_exists(&self, p: Principal) -> bool {
        match p {
            Principal::User(u) => self.users.contains_key(&u),
            Principal::ServiceAccount(s) => self.service_accounts.contains_key(&s),
        }
    }

    /// Every user affected by a change to role `role` (its user holders).
    pub fn role_user_holders(&self, role: &str) -> Vec<Uuid> {
        self.role_holders
            .get(role)
            .map(|s| {
                let set: BTreeSet<Uuid> = s
                    .iter()
                    .filter_map(|(p, _)| match p {
                        Principal::User(u) => Some(*u),
                        Principal::ServiceAccount(_) => None,
                    })
                    .collect();
                set.into_iter().collect()
            })
            .unwrap_or_default()
    }
}
