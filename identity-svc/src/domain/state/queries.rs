//! The questions asked of an organization's state that are not one index lookup: stage order,
//! membership, whether a principal is active, who a role change affects, a page of role
//! assignments, the users, the groups and a group's members in order, how a user holds an
//! end-user role.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::OrgState;
use crate::domain::model::{Assignment, Group, Principal, ScopeKey, Stage, User, UserState};

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

    /// The groups (of `stage` when given) that `visible` lets through, as (lowercased name, id,
    /// group) in that order, those after `after` (a lowercased name and id) when given.
    pub fn groups_by_name<'a>(
        &'a self,
        stage: Option<&str>,
        after: Option<(&str, Uuid)>,
        mut visible: impl FnMut(&'a Group) -> bool,
    ) -> Vec<(String, Uuid, &'a Group)> {
        let mut rows: Vec<(String, Uuid, &Group)> = self
            .groups
            .values()
            .filter(|g| stage.is_none_or(|s| s == g.stage))
            .filter(|g| visible(g))
            .map(|g| (g.display_name.to_lowercase(), g.id, g))
            .filter(|(name, id, _)| after.is_none_or(|(n, i)| (name.as_str(), *id) > (n, i)))
            .collect();
        rows.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
        rows
    }

    /// The users in (email, id) order, a user without an email sorting first as `""`: those
    /// whose email starts with `prefix` (lower-case; the users without one only when it is
    /// empty), after `after` (the last row's email, `""` for none, and id) when given.
    pub fn users_in_email_order<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<(&str, Uuid)>,
    ) -> impl Iterator<Item = &'a User> + use<'a> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let without = match after {
            _ if !prefix.is_empty() => None,
            None => Some(self.users_without_email.range(..)),
            Some(("", id)) => Some(self.users_without_email.range((Excluded(id), Unbounded))),
            Some(_) => None,
        };
        // Emails are unique: the rows after (email, id) are those after the email.
        let start = match after {
            Some((e, _)) if e >= prefix => Excluded(e),
            _ => Included(prefix),
        };
        let with = self
            .users_by_email
            .range::<str, _>((start, Unbounded))
            .take_while(move |(e, _)| e.starts_with(prefix))
            .map(|(_, id)| id);
        without
            .into_iter()
            .flatten()
            .chain(with)
            .filter_map(|id| self.users.get(id))
    }

    /// The members of group `g` as (email, id) in that order (`""` for a member without an
    /// email), those after `after` when given.
    pub fn members_by_email(&self, g: Uuid, after: Option<(&str, Uuid)>) -> Vec<(&str, Uuid)> {
        let mut rows: Vec<(&str, Uuid)> = self
            .group_members
            .get(&g)
            .into_iter()
            .flatten()
            .filter_map(|u| self.users.get(u))
            .map(|u| (u.email_str(), u.id))
            .filter(|row| after.is_none_or(|a| *row > a))
            .collect();
        rows.sort_unstable();
        rows
    }

    /// A page of the role assignments in (principal, scope) order after `after`, only those of
    /// `p` and of `role` when given; and whether more follow.
    pub fn assignments_page(
        &self,
        p: Option<Principal>,
        role: Option<&str>,
        after: Option<(Principal, ScopeKey)>,
        size: usize,
    ) -> (Vec<&Assignment>, bool) {
        let mut out = Vec::new();
        let mut more = false;
        'outer: for (principal, by_scope) in &self.assignments {
            if p.is_some_and(|p| p != *principal) {
                continue;
            }
            for (scope, x) in by_scope {
                if after.is_some_and(|a| (*principal, *scope) <= a)
                    || role.is_some_and(|r| r != x.role)
                {
                    continue;
                }
                if out.len() == size {
                    more = true;
                    break 'outer;
                }
                out.push(x);
            }
        }
        (out, more)
    }

    /// How `user` holds end-user role `role` in `stage`: directly, through which of their groups
    /// (of that stage), and whether the user is ACTIVE.
    pub fn end_user_role_holding(&self, user: Uuid, role: Uuid, stage: &str) -> EndUserRoleHolding {
        let direct = self
            .end_user_grants
            .get(&user)
            .is_some_and(|g| g.contains(&(role, stage.to_owned())));
        let groups = self
            .user_groups
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|g| {
                self.groups.get(g).is_some_and(|g| g.stage == stage)
                    && self.group_roles.get(g).is_some_and(|r| r.contains(&role))
            })
            .copied()
            .collect();
        EndUserRoleHolding {
            direct,
            groups,
            active: self.is_active(Principal::User(user)),
        }
    }
}

/// How a user holds an end-user role in a stage (see [`OrgState::end_user_role_holding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUserRoleHolding {
    /// Through a direct grant.
    pub direct: bool,
    /// The user's groups of the stage that hold the role.
    pub groups: Vec<Uuid>,
    /// Whether the user is ACTIVE.
    pub active: bool,
}

impl EndUserRoleHolding {
    /// Whether the user has the role: ACTIVE, and holding it directly or through a group.
    pub fn has_role(&self) -> bool {
        self.active && (self.direct || !self.groups.is_empty())
    }
}
