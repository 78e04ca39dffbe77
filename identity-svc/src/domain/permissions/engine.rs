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
//!
//! Only assignments in effect at the time asked (`now`) count: a time-bound grant (R35) counts
//! once its `became_effective` event is committed and until its end by the clock
//! ([`Assignment::effective_at`](crate::domain::model::Assignment::effective_at)).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::ops::Bound;

use uuid::Uuid;

use super::catalog::{self, CATALOG, PermIndex, PermissionDef};
use super::implication;
use crate::domain::model::{Micros, Principal, Role, ScopeKey};
use crate::domain::state::OrgState;

/// One reason a principal has a permission. It borrows from the state it was decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason<'a> {
    /// The role.
    pub role: &'a str,
    /// The assignment's scope.
    pub scope: ScopeKey,
    /// From the role's grant down to the permission asked.
    pub chain: &'static [&'static str],
    /// The grant's stages (`None`: every stage).
    pub stages: Option<&'a BTreeSet<String>>,
}

/// Why a check was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial<'a> {
    /// No such user or service account.
    NoPrincipal,
    /// A user that is not ACTIVE.
    Inactive,
    /// No assignment grants the permission there.
    NotGranted {
        /// The permission asked.
        permission: &'static str,
        /// The stage asked.
        stage: Option<&'a str>,
        /// The app asked.
        app: Option<Uuid>,
    },
}

impl Denial<'_> {
    /// The message shown to people, built without the formatting machinery (a denied check
    /// is the common answer, and this string is most of its cost).
    pub fn message(&self) -> String {
        match self {
            Denial::NoPrincipal => "principal does not exist".to_owned(),
            Denial::Inactive => "principal is not ACTIVE".to_owned(),
            Denial::NotGranted {
                permission,
                stage,
                app,
            } => {
                const GRANTS: &str = "no assignment grants ";
                const IN_STAGE: &str = " in stage ";
                const ON_APP: &str = " on app ";
                let mut m = String::with_capacity(
                    GRANTS.len()
                        + permission.len()
                        + stage.map_or(0, |s| IN_STAGE.len() + s.len())
                        + app.map_or(0, |_| ON_APP.len() + uuid::fmt::Hyphenated::LENGTH),
                );
                m.push_str(GRANTS);
                m.push_str(permission);
                if let Some(s) = stage {
                    m.push_str(IN_STAGE);
                    m.push_str(s);
                }
                if let Some(a) = app {
                    m.push_str(ON_APP);
                    m.push_str(a.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
                }
                m
            }
        }
    }
}

impl fmt::Display for Denial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Allowed or not.
    pub allowed: bool,
    /// Every qualifying assignment (empty when denied).
    pub reasons: Vec<Reason<'a>>,
    /// Why it was denied.
    pub denial: Option<Denial<'a>>,
}

/// Which stages a path must hold in.
#[derive(Debug, Clone, Copy)]
enum Stages<'s> {
    /// Any (every path, whatever its stages).
    Any,
    /// This stage (`None`: no stage named, which a stage-limited grant never satisfies).
    In(Option<&'s str>),
}

/// Paths from a role's grants to `target` (index `t`) that hold in `stages`, as (implication
/// chain, the grant's stages). Through an app-scope assignment (`via_app`) only app-scopable
/// grants of an app-scopable target count. No allocation; each grant key is compared only with
/// the few keys that imply the target.
fn paths<'r>(
    role: &'r Role,
    target: &'static PermissionDef,
    t: PermIndex,
    stages: Stages<'r>,
    via_app: bool,
) -> impl Iterator<Item = (&'static [&'static str], Option<&'r BTreeSet<String>>)> + 'r {
    let possible = !via_app || target.app_scopable;
    let all = possible && role.all_permissions;
    let grants: &'r [_] = if possible && !role.all_permissions {
        &role.grants
    } else {
        &[]
    };
    let whole = all.then(|| (implication::chain(t, t).unwrap_or_default(), None));
    // The (one to three) keys whose closure contains the target: a grant of any other key is
    // rejected on its length or by comparing with them, without hashing.
    let sources = implication::sources_of(t);
    whole
        .into_iter()
        .chain(grants.iter().filter_map(move |grant| {
            let s = sources.find(&grant.permission)?;
            if via_app && !CATALOG[s].app_scopable {
                return None;
            }
            let in_stage = match stages {
                Stages::Any => true,
                Stages::In(stage) => {
                    !target.stage_scopable
                        || match (&grant.stages, stage) {
                            (None, _) => true,
                            (Some(set), Some(s)) => set.contains(s),
                            (Some(_), None) => false,
                        }
                }
            };
            in_stage.then(|| {
                (
                    implication::chain(s, t).unwrap_or_default(),
                    grant.stages.as_ref(),
                )
            })
        }))
}

/// Whether an assignment at `scope` can count for a check on `app`: organization scope always,
/// app scope on that app (then through app-scopable grants only). `None`: it cannot.
fn via_app(scope: ScopeKey, app: Option<Uuid>) -> Option<bool> {
    match scope {
        ScopeKey::Organization => Some(false),
        ScopeKey::App(x) if Some(x) == app => Some(true),
        ScopeKey::App(_) => None,
    }
}

/// Decides whether `principal` has `perm` in `stage` on `app`. The inputs are assumed valid
/// (known permission; a stage when the permission is stage-scopable).
pub fn decide<'a>(
    state: &'a OrgState,
    principal: Principal,
    perm: &'static PermissionDef,
    stage: Option<&'a str>,
    app: Option<Uuid>,
    now: Micros,
) -> Decision<'a> {
    if !state.is_active(principal) {
        return denied(if state.principal_exists(principal) {
            Denial::Inactive
        } else {
            Denial::NoPrincipal
        });
    }
    let t = catalog::index_of(perm);
    let mut reasons = Vec::new();
    if let Some(assignments) = state.assignments.get(&principal) {
        for (scope, a) in assignments {
            let Some(via_app) = via_app(*scope, app) else {
                continue;
            };
            if !a.effective_at(now) {
                continue;
            }
            let Some(role) = state.roles.get(&a.role) else {
                continue;
            };
            for (chain, stages) in paths(role, perm, t, Stages::In(stage), via_app) {
                reasons.push(Reason {
                    role: &a.role,
                    scope: *scope,
                    chain,
                    stages,
                });
            }
        }
    }
    if reasons.is_empty() {
        return denied(Denial::NotGranted {
            permission: perm.key,
            stage,
            app,
        });
    }
    Decision {
        allowed: true,
        reasons,
        denial: None,
    }
}

fn denied(why: Denial<'_>) -> Decision<'_> {
    Decision {
        allowed: false,
        reasons: Vec::new(),
        denial: Some(why),
    }
}

/// `decide(..).allowed` without building the reasons.
fn allows(
    state: &OrgState,
    principal: Principal,
    perm: &'static PermissionDef,
    stage: Option<&str>,
    app: Option<Uuid>,
    now: Micros,
) -> bool {
    if !state.is_active(principal) {
        return false;
    }
    let t = catalog::index_of(perm);
    let Some(assignments) = state.assignments.get(&principal) else {
        return false;
    };
    for (scope, a) in assignments {
        let Some(via_app) = via_app(*scope, app) else {
            continue;
        };
        if a.effective_at(now)
            && let Some(role) = state.roles.get(&a.role)
            && paths(role, perm, t, Stages::In(stage), via_app)
                .next()
                .is_some()
        {
            return true;
        }
    }
    false
}

/// Shorthand for internal authorization: does `principal` have `key` in `stage` on `app`?
pub fn has(
    state: &OrgState,
    principal: Principal,
    key: &str,
    stage: Option<&str>,
    app: Option<Uuid>,
    now: Micros,
) -> bool {
    catalog::get(key).is_some_and(|def| {
        // A stage-scopable permission asked without a stage cannot be granted.
        (!def.stage_scopable || stage.is_some()) && allows(state, principal, def, stage, app, now)
    })
}

/// Whether some assignment of an ACTIVE `principal` (at organization scope or on any app)
/// grants `key` through a path that holds in `stages`.
fn has_somewhere(
    state: &OrgState,
    principal: Principal,
    key: &str,
    stages: Stages<'_>,
    now: Micros,
) -> bool {
    let Some(def) = catalog::get(key) else {
        return false;
    };
    if !state.is_active(principal) {
        return false;
    }
    let t = catalog::index_of(def);
    let Some(assignments) = state.assignments.get(&principal) else {
        return false;
    };
    for (scope, a) in assignments {
        let via_app = matches!(scope, ScopeKey::App(_));
        if a.effective_at(now)
            && let Some(role) = state.roles.get(&a.role)
            && paths(role, def, t, stages, via_app).next().is_some()
        {
            return true;
        }
    }
    false
}

/// Whether `principal` has `key` in at least one stage of the organization (or, for a
/// permission that is not stage-scopable, at all), at organization scope or on any app.
/// The same as a `key` entry in [`effective`], without computing the rest.
pub fn has_in_any_stage(state: &OrgState, principal: Principal, key: &str, now: Micros) -> bool {
    has_somewhere(state, principal, key, Stages::Any, now)
}

/// One permission a principal has somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective<'a> {
    /// The key.
    pub permission: &'static str,
    /// Organization or app.
    pub scope: ScopeKey,
    /// `None`: every stage (or not stage-scopable).
    pub stages: Option<BTreeSet<String>>,
    /// The sources.
    pub reasons: Vec<Reason<'a>>,
}

/// Everything a principal may do, by key then scope. Empty for an inactive principal.
pub fn effective<'a>(state: &'a OrgState, principal: Principal, now: Micros) -> Vec<Effective<'a>> {
    if !state.is_active(principal) {
        return Vec::new();
    }
    let mut out: BTreeMap<(&'static str, ScopeKey), Effective<'a>> = BTreeMap::new();
    let Some(assignments) = state.assignments.get(&principal) else {
        return Vec::new();
    };
    for (scope, a) in assignments {
        let via_app = matches!(scope, ScopeKey::App(_));
        if !a.effective_at(now) {
            continue;
        }
        let Some(role) = state.roles.get(&a.role) else {
            continue;
        };
        let mut add = |def: &'static PermissionDef,
                       chain: &'static [&'static str],
                       stages: Option<&'a BTreeSet<String>>| {
            let stages = if def.stage_scopable { stages } else { None };
            let e = out.entry((def.key, *scope)).or_insert_with(|| Effective {
                permission: def.key,
                scope: *scope,
                stages: Some(BTreeSet::new()),
                reasons: Vec::new(),
            });
            e.stages = match (e.stages.take(), stages) {
                (None, _) | (_, None) => None,
                (Some(mut a), Some(b)) => {
                    a.extend(b.iter().cloned());
                    Some(a)
                }
            };
            e.reasons.push(Reason {
                role: &a.role,
                scope: *scope,
                chain,
                stages,
            });
        };
        if role.all_permissions {
            for (t, def) in CATALOG.iter().enumerate() {
                if !via_app || def.app_scopable {
                    add(def, implication::chain(t, t).unwrap_or_default(), None);
                }
            }
            continue;
        }
        // Grant by grant, each grant's closure: for one (key, scope) the reasons come in grant
        // order, as a walk of the catalog then the grants would give them.
        for grant in &role.grants {
            let Some(s) = catalog::index(&grant.permission) else {
                continue;
            };
            if via_app && !CATALOG[s].app_scopable {
                continue;
            }
            for (reached, chain) in implication::closure_at(s) {
                let Some(def) = catalog::get(reached) else {
                    continue;
                };
                if via_app && !def.app_scopable {
                    continue;
                }
                add(def, chain, grant.stages.as_ref());
            }
        }
    }
    out.into_values().collect()
}

/// For [`holders`]: which assignments of a role can count for the query. A principal has the
/// permission exactly when it is ACTIVE and holds such a role at such a scope.
#[derive(Debug, Clone, Copy)]
struct Qualifies {
    /// At organization scope.
    org: bool,
    /// At app scope on the app asked.
    app: Option<Uuid>,
}

impl Qualifies {
    fn scope(self, scope: ScopeKey) -> bool {
        match scope {
            ScopeKey::Organization => self.org,
            ScopeKey::App(a) => self.app == Some(a),
        }
    }
}

/// One role's holders from the page cursor on, restricted to the qualifying scopes.
struct Holders<'a> {
    range: std::collections::btree_set::Range<'a, (Principal, ScopeKey)>,
    qualifies: Qualifies,
}

impl Holders<'_> {
    fn next_principal(&mut self) -> Option<Principal> {
        self.range
            .by_ref()
            .find(|(_, scope)| self.qualifies.scope(*scope))
            .map(|(p, _)| *p)
    }
}

/// Every principal that has `perm` in `stage` on `app`, ordered by principal, starting after
/// `after`, at most `limit`. Returns the page and whether more may follow.
///
/// Only principals holding a role that can grant `perm` here are examined: the holders of
/// those roles (at organization scope, or at app scope on `app`) are merged in principal order
/// from the cursor on, and `decide` runs on each candidate until `limit` + 1 are allowed.
pub fn holders<'a>(
    state: &'a OrgState,
    perm: &'static PermissionDef,
    stage: Option<&'a str>,
    app: Option<Uuid>,
    after: Option<Principal>,
    limit: usize,
    now: Micros,
) -> (Vec<(Principal, Vec<Reason<'a>>)>, bool) {
    let t = catalog::index_of(perm);
    let app_ok = app.filter(|_| perm.app_scopable);
    let mut sources: Vec<Holders<'a>> = Vec::new();
    for (id, role) in &state.roles {
        let grants = |via_app| {
            paths(role, perm, t, Stages::In(stage), via_app)
                .next()
                .is_some()
        };
        let qualifies = Qualifies {
            org: grants(false),
            app: app_ok.filter(|_| grants(true)),
        };
        if !qualifies.org && qualifies.app.is_none() {
            continue;
        }
        let Some(set) = state.role_holders.get(id.as_str()) else {
            continue;
        };
        let range = match after {
            // Every scope of `after` sorts at or after (after, Organization): skipped below.
            Some(p) => set.range((
                Bound::Included((p, ScopeKey::Organization)),
                Bound::Unbounded,
            )),
            None => set.range(..),
        };
        sources.push(Holders { range, qualifies });
    }
    // k-way merge: the smallest next principal of every role's holders.
    let mut heap: BinaryHeap<Reverse<(Principal, usize)>> = BinaryHeap::new();
    for (i, h) in sources.iter_mut().enumerate() {
        if let Some(p) = next_after(h, after) {
            heap.push(Reverse((p, i)));
        }
    }
    let mut out = Vec::new();
    let mut last: Option<Principal> = None;
    while let Some(Reverse((p, i))) = heap.pop() {
        if let Some(next) = next_after(&mut sources[i], after) {
            heap.push(Reverse((next, i)));
        }
        if last == Some(p) {
            continue;
        }
        last = Some(p);
        let d = decide(state, p, perm, stage, app, now);
        if d.allowed {
            if out.len() == limit {
                return (out, true);
            }
            out.push((p, d.reasons));
        }
    }
    (out, false)
}

/// The next qualifying principal of one role's holders that sorts after the cursor.
fn next_after(h: &mut Holders<'_>, after: Option<Principal>) -> Option<Principal> {
    loop {
        let p = h.next_principal()?;
        if after.is_none_or(|a| p > a) {
            return Some(p);
        }
    }
}

/// Whether `principal` has `key` in `stage` at organization scope or on at least one app.
pub fn has_anywhere_in_stage(
    state: &OrgState,
    principal: Principal,
    key: &str,
    stage: &str,
    now: Micros,
) -> bool {
    has_somewhere(state, principal, key, Stages::In(Some(stage)), now)
}

#[cfg(test)]
mod tests;
