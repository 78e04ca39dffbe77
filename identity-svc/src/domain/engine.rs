//! The permission engine: `has(principal, permission, stage?, app?)` with its explanation,
//! everything a principal may do, and everyone who may do something.
//!
//! The rule (DOMAIN.md): a principal has P (in stage S, on app A) when it is ACTIVE and some
//! assignment qualifies — organization scope always; app scope only when the check names that
//! app and P is app-scopable — and the role's grants, closed under implication, contain P in S
//! (or in every stage). Implied permissions inherit the stages of the grant that implies them;
//! an implied permission that is not stage-scopable is granted whatever the stages of the grant.
//! Through an app-scope assignment only grants of app-scopable permissions count, and only their
//! app-scopable implications. The answer is the union over assignments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use uuid::Uuid;

use super::catalog::{self, PermissionDef};
use super::model::{Principal, Role, ScopeKey};
use super::state::OrgState;

/// One reason a principal has a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The role.
    pub role: String,
    /// The assignment's scope.
    pub scope: ScopeKey,
    /// From the role's grant down to the permission asked.
    pub chain: Vec<&'static str>,
    /// The grant's stages (`None`: every stage).
    pub stages: Option<BTreeSet<String>>,
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// Every qualifying assignment (empty when denied).
    pub reasons: Vec<Reason>,
    /// Why it was denied.
    pub denial: Option<String>,
}

/// Paths from a role's grants to `target` that hold in `stage`.
fn role_paths(
    role: &Role,
    target: &PermissionDef,
    stage: Option<&str>,
    via_app: bool,
) -> Vec<(Vec<&'static str>, Option<BTreeSet<String>>)> {
    if via_app && !target.app_scopable {
        return Vec::new();
    }
    if role.all_permissions {
        return vec![(vec![target.key], None)];
    }
    let mut out = Vec::new();
    for grant in &role.grants {
        let Some(def) = catalog::get(&grant.permission) else {
            continue;
        };
        if via_app && !def.app_scopable {
            continue;
        }
        let Some((_, chain)) = catalog::closure(def.key)
            .iter()
            .find(|(k, _)| *k == target.key)
        else {
            continue;
        };
        let in_stage = !target.stage_scopable
            || match (&grant.stages, stage) {
                (None, _) => true,
                (Some(set), Some(s)) => set.contains(s),
                (Some(_), None) => false,
            };
        if in_stage {
            out.push((chain.clone(), grant.stages.clone()));
        }
    }
    out
}

/// Decides whether `principal` has `perm` in `stage` on `app`. The inputs are assumed valid
/// (known permission; a stage when the permission is stage-scopable).
pub fn decide(
    state: &OrgState,
    principal: Principal,
    perm: &PermissionDef,
    stage: Option<&str>,
    app: Option<Uuid>,
) -> Decision {
    if !state.principal_exists(principal) {
        return denied("principal does not exist".into());
    }
    if !state.is_active(principal) {
        return denied("principal is not ACTIVE".into());
    }
    let mut reasons = Vec::new();
    if let Some(assignments) = state.assignments.get(&principal) {
        for (scope, a) in assignments {
            let via_app = match scope {
                ScopeKey::Organization => false,
                ScopeKey::App(x) if Some(*x) == app => true,
                ScopeKey::App(_) => continue,
            };
            let Some(role) = state.roles.get(&a.role) else {
                continue;
            };
            for (chain, stages) in role_paths(role, perm, stage, via_app) {
                reasons.push(Reason {
                    role: a.role.clone(),
                    scope: *scope,
                    chain,
                    stages,
                });
            }
        }
    }
    if reasons.is_empty() {
        let mut why = format!("no assignment grants {}", perm.key);
        if let Some(s) = stage {
            let _ = write!(why, " in stage {s}");
        }
        if let Some(a) = app {
            let _ = write!(why, " on app {a}");
        }
        return denied(why);
    }
    Decision {
        allowed: true,
        reasons,
        denial: None,
    }
}

fn denied(why: String) -> Decision {
    Decision {
        allowed: false,
        reasons: Vec::new(),
        denial: Some(why),
    }
}

/// Shorthand for internal authorization: does `principal` have `key` in `stage` on `app`?
pub fn has(
    state: &OrgState,
    principal: Principal,
    key: &str,
    stage: Option<&str>,
    app: Option<Uuid>,
) -> bool {
    catalog::get(key).is_some_and(|def| {
        // A stage-scopable permission asked without a stage cannot be granted.
        (!def.stage_scopable || stage.is_some())
            && decide(state, principal, def, stage, app).allowed
    })
}

/// Whether `principal` has `key` in at least one stage of the organization (or, for a
/// permission that is not stage-scopable, at all), at organization scope or on any app.
pub fn has_in_any_stage(state: &OrgState, principal: Principal, key: &str) -> bool {
    effective(state, principal)
        .iter()
        .any(|e| e.permission == key)
}

/// One permission a principal has somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The key.
    pub permission: &'static str,
    /// Organization or app.
    pub scope: ScopeKey,
    /// `None`: every stage (or not stage-scopable).
    pub stages: Option<BTreeSet<String>>,
    /// The sources.
    pub reasons: Vec<Reason>,
}

/// Everything a principal may do, by key then scope. Empty for an inactive principal.
pub fn effective(state: &OrgState, principal: Principal) -> Vec<Effective> {
    if !state.is_active(principal) {
        return Vec::new();
    }
    let mut out: BTreeMap<(&'static str, ScopeKey), Effective> = BTreeMap::new();
    let Some(assignments) = state.assignments.get(&principal) else {
        return Vec::new();
    };
    for (scope, a) in assignments {
        let via_app = matches!(scope, ScopeKey::App(_));
        let Some(role) = state.roles.get(&a.role) else {
            continue;
        };
        for def in catalog::CATALOG {
            for (chain, stages) in role_paths_all_stages(role, def, via_app) {
                let stages = if def.stage_scopable { stages } else { None };
                let e = out.entry((def.key, *scope)).or_insert_with(|| Effective {
                    permission: def.key,
                    scope: *scope,
                    stages: Some(BTreeSet::new()),
                    reasons: Vec::new(),
                });
                e.stages = match (e.stages.take(), &stages) {
                    (None, _) | (_, None) => None,
                    (Some(mut a), Some(b)) => {
                        a.extend(b.iter().cloned());
                        Some(a)
                    }
                };
                e.reasons.push(Reason {
                    role: a.role.clone(),
                    scope: *scope,
                    chain,
                    stages,
                });
            }
        }
    }
    out.into_values().collect()
}

/// Like `role_paths` but without a stage filter: every path, with its stages.
fn role_paths_all_stages(
    role: &Role,
    target: &PermissionDef,
    via_app: bool,
) -> Vec<(Vec<&'static str>, Option<BTreeSet<String>>)> {
    if via_app && !target.app_scopable {
        return Vec::new();
    }
    if role.all_permissions {
        return vec![(vec![target.key], None)];
    }
    let mut out = Vec::new();
    for grant in &role.grants {
        let Some(def) = catalog::get(&grant.permission) else {
            continue;
        };
        if via_app && !def.app_scopable {
            continue;
        }
        if let Some((_, chain)) = catalog::closure(def.key)
            .iter()
            .find(|(k, _)| *k == target.key)
        {
            out.push((chain.clone(), grant.stages.clone()));
        }
    }
    out
}

/// Every principal that has `perm` in `stage` on `app`, ordered by principal, starting after
/// `after`, at most `limit`. Returns the page and whether more may follow.
pub fn holders(
    state: &OrgState,
    perm: &PermissionDef,
    stage: Option<&str>,
    app: Option<Uuid>,
    after: Option<Principal>,
    limit: usize,
) -> (Vec<(Principal, Vec<Reason>)>, bool) {
    let mut out = Vec::new();
    let range = match after {
        Some(p) => state
            .assignments
            .range((std::ops::Bound::Excluded(p), std::ops::Bound::Unbounded)),
        None => state.assignments.range(..),
    };
    for (principal, _) in range {
        let d = decide(state, *principal, perm, stage, app);
        if d.allowed {
            if out.len() == limit {
                return (out, true);
            }
            out.push((*principal, d.reasons));
        }
    }
    (out, false)
}

/// Whether `principal` has `key` in `stage` at organization scope or on at least one app.
pub fn has_anywhere_in_stage(
    state: &OrgState,
    principal: Principal,
    key: &str,
    stage: &str,
) -> bool {
    effective(state, principal)
        .iter()
        .any(|e| e.permission == key && e.stages.as_ref().is_none_or(|s| s.contains(stage)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use uuid::Uuid;

    use super::*;
    use crate::domain::email::Email;
    use crate::domain::model::{
        Assignment, Grant, Organization, Stage, StagePurpose, User, UserState,
    };
    use crate::domain::state::OrgState;

    fn org() -> OrgState {
        let mut st = OrgState::new(Organization {
            id: Uuid::new_v4(),
            display_name: "o".into(),
            create_time: 0,
            update_time: 0,
            rev: 1,
        });
        for (i, (k, p)) in [
            ("development", StagePurpose::Development),
            ("qa", StagePurpose::NonProduction),
            ("production", StagePurpose::Production),
        ]
        .into_iter()
        .enumerate()
        {
            st.insert(crate::domain::model::Entity::Stage(Stage {
                key: k.into(),
                display_name: k.into(),
                order: u32::try_from(i).unwrap(),
                purpose: p,
                rev: 1,
            }));
        }
        for r in crate::service::ops::built_in_roles(0) {
            st.insert(crate::domain::model::Entity::Role(r));
        }
        st
    }

    fn user(st: &mut OrgState, state: UserState) -> Principal {
        let id = Uuid::new_v4();
        st.insert(crate::domain::model::Entity::User(User {
            id,
            email: Email::parse(&format!("{id}@x.com")).unwrap(),
            display_name: String::new(),
            state,
            registered: true,
            create_time: 0,
            update_time: 0,
            rev: 1,
        }));
        Principal::User(id)
    }

    fn role(st: &mut OrgState, grants: Vec<Grant>) -> String {
        let id = Uuid::new_v4().to_string();
        st.insert(crate::domain::model::Entity::Role(Role {
            id: id.clone(),
            display_name: id.clone(),
            description: String::new(),
            built_in: false,
            all_permissions: false,
            grants,
            create_time: 0,
            update_time: 0,
            rev: 1,
        }));
        id
    }

    fn assign(st: &mut OrgState, p: Principal, role: &str, scope: ScopeKey) {
        st.insert(crate::domain::model::Entity::Assignment(Assignment {
            principal: p,
            scope,
            role: role.into(),
            create_time: 0,
        }));
    }

    fn in_stage(st: &OrgState, p: Principal, stage: &str) -> BTreeSet<&'static str> {
        effective(st, p)
            .into_iter()
            .filter(|e| e.stages.as_ref().is_none_or(|s| s.contains(stage)))
            .map(|e| e.permission)
            .collect()
    }

    #[test]
    fn change_in_development_gives_exactly_change_debug_deploy_there_and_nothing_elsewhere() {
        let mut st = org();
        let r = role(
            &mut st,
            vec![Grant {
                permission: "asset.change".into(),
                stages: Some(BTreeSet::from(["development".into()])),
            }],
        );
        let u = user(&mut st, UserState::Active);
        assign(&mut st, u, &r, ScopeKey::Organization);
        assert_eq!(
            in_stage(&st, u, "development"),
            BTreeSet::from(["asset.change", "asset.debug", "release.deploy_assets"])
        );
        assert!(in_stage(&st, u, "qa").is_empty());
        assert!(in_stage(&st, u, "production").is_empty());
        let d = decide(
            &st,
            u,
            catalog::get("asset.debug").unwrap(),
            Some("development"),
            None,
        );
        assert_eq!(d.reasons[0].chain, vec!["asset.change", "asset.debug"]);
    }

    #[test]
    fn app_scope_adds_only_app_scopable_permissions_on_that_app() {
        let mut st = org();
        let u = user(&mut st, UserState::Active);
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        assign(&mut st, u, "developer", ScopeKey::Organization);
        assign(&mut st, u, "administrator", ScopeKey::App(a));
        let edit = catalog::get("config.edit_asset").unwrap();
        assert!(decide(&st, u, edit, Some("production"), Some(a)).allowed);
        assert!(!decide(&st, u, edit, Some("production"), Some(b)).allowed);
        assert!(!has(&st, u, "users.manage", None, Some(a)));
    }

    #[test]
    fn inactive_principals_have_nothing() {
        let mut st = org();
        let u = user(&mut st, UserState::Inactive);
        assign(&mut st, u, "administrator", ScopeKey::Organization);
        assert!(!has(&st, u, "users.manage", None, None));
        assert!(effective(&st, u).is_empty());
    }
}
