//! Who holds what: assigning and revoking roles (one role per principal and scope; the last
//! ACTIVE Administrator stays), end-user grants, and the validation of a role's grants.

use std::collections::BTreeSet;

use shared::violations::Violations;
use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{
    Assignment, EndUserGrant, Entity, Grant, GrantPeriod, GrantPhase, Micros, Principal, ScopeKey,
    UserState,
};
use crate::domain::names::{ADMINISTRATOR, fmt};
use crate::domain::permissions::catalog;
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::rules::lookups::{
    app, end_user_role, org_id, principal, principal_user, role, stage, user,
};

/// Validates a role's grants against the catalog and the stages.
pub fn validate_grants(st: &OrgState, grants: &[Grant], field: &str) -> Result<(), Error> {
    let mut v = Violations::new();
    if grants.is_empty() {
        v.add(field, "a role needs at least one permission");
    }
    let mut seen = BTreeSet::new();
    for (i, g) in grants.iter().enumerate() {
        let f = format!("{field}[{i}]");
        match catalog::get(&g.permission) {
            None => v.add(
                format!("{f}.permission"),
                format!("unknown permission {:?}", g.permission),
            ),
            Some(def) => {
                if !seen.insert(def.key) {
                    v.add(
                        format!("{f}.permission"),
                        format!("{} is granted twice", def.key),
                    );
                }
                if let Some(stages) = &g.stages {
                    if !def.stage_scopable {
                        v.add(
                            format!("{f}.stages"),
                            format!("{} cannot be limited to stages", def.key),
                        );
                    } else if stages.is_empty() {
                        v.add(format!("{f}.stages"), "an empty stage set grants nothing");
                    }
                    for s in stages {
                        if !st.stages.contains_key(s) {
                            v.add(format!("{f}.stages"), format!("unknown stage {s}"));
                        }
                    }
                }
            }
        }
    }
    Ok(v.finish()?)
}

/// The ACTIVE users holding Administrator at organization scope for good: a grant with an end
/// (or not started yet) does not keep the organization administered, so it does not count.
fn active_org_admins(st: &OrgState) -> Vec<Uuid> {
    st.role_holders
        .get(ADMINISTRATOR)
        .map(|s| {
            s.iter()
                .filter_map(|(p, scope)| match (p, scope) {
                    (Principal::User(u), ScopeKey::Organization)
                        if st
                            .users
                            .get(u)
                            .is_some_and(|u| u.state == UserState::Active)
                            && st
                                .assignments
                                .get(p)
                                .and_then(|m| m.get(scope))
                                .is_some_and(Assignment::is_permanent) =>
                    {
                        Some(*u)
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Refuses a change that would leave no ACTIVE organization-scope Administrator.
pub(super) fn protect_last_admin(st: &OrgState, user: Uuid) -> Result<(), Error> {
    let admins = active_org_admins(st);
    if admins == [user] {
        return Err(Error::precondition(
            "LAST_ADMINISTRATOR",
            "this is the last ACTIVE Administrator of the organization",
        ));
    }
    Ok(())
}

pub(super) fn remove_assignment(d: &mut Draft<'_>, a: Assignment) {
    let o = org_id(d);
    let target = crate::auth::principal_name(o, a.principal);
    let affected = principal_user(a.principal);
    d.change(
        "role_assignment.deleted",
        target,
        Some(Entity::Assignment(a)),
        None,
        affected,
    );
}

/// Checks a grant period against the clock (R35): the end after the start and in the future.
/// Field names are those of `AssignRoleRequest`.
fn validate_period(period: &GrantPeriod, now: Micros) -> Result<(), Error> {
    let mut v = Violations::new();
    if let (Some(s), Some(e)) = (period.start, period.end)
        && e <= s
    {
        v.add(
            "grant_period.end_time",
            "must be after grant_period.start_time",
        );
    } else if period.end.is_some_and(|e| e <= now) {
        v.add("grant_period.end_time", "must be in the future");
    }
    Ok(v.finish()?)
}

/// Refuses an organization or app role (member access) to a user without an email: members
/// sign in with a verified email of theirs, which such a user cannot have (ODC's empty-email
/// profiles are end-users only). End-user roles and groups stay open to them.
fn refuse_without_email(st: &OrgState, p: Principal) -> Result<(), Error> {
    match p {
        Principal::User(u) if st.users.get(&u).is_some_and(|u| u.email.is_none()) => {
            Err(Error::precondition(
                "EMAIL_REQUIRED",
                "a user without an email cannot hold an organization or app role; give them an \
                 email (UpdateUser) first",
            ))
        }
        _ => Ok(()),
    }
}

/// Assigns a role at a scope, replacing the principal's role there; with a grant period the
/// assignment is in effect only inside it (R35), and starts SCHEDULED when its start is ahead.
/// Assigning the same role with the same period again changes nothing.
pub fn assign_role(
    d: &mut Draft<'_>,
    p: Principal,
    role_id: &str,
    scope: ScopeKey,
    period: Option<GrantPeriod>,
) -> Result<Assignment, Error> {
    let now = d.now;
    // An open period is no period.
    let period = period.filter(|x| x.start.is_some() || x.end.is_some());
    if let Some(x) = &period {
        validate_period(x, now)?;
    }
    let st = d.state();
    principal(st, p)?;
    role(st, role_id)?;
    refuse_without_email(st, p)?;
    if let ScopeKey::App(a) = scope {
        app(st, a)?;
    }
    let existing = st.assignments.get(&p).and_then(|m| m.get(&scope)).cloned();
    let phase = period.map_or(GrantPhase::Active, |x| x.phase_at(now));
    if let Some(e) = &existing {
        if e.role == role_id && e.period == period && e.phase == phase {
            return Ok(e.clone());
        }
        // The last Administrator for good may not be replaced by a grant that ends.
        let stays_admin =
            role_id == ADMINISTRATOR && phase.is_active() && period.is_none_or(|x| x.end.is_none());
        if let (Principal::User(u), ScopeKey::Organization, true, false) = (
            p,
            scope,
            e.is_permanent() && e.role == ADMINISTRATOR,
            stays_admin,
        ) {
            protect_last_admin(st, u)?;
        }
    }
    let a = Assignment {
        principal: p,
        scope,
        role: role_id.to_owned(),
        create_time: now,
        period,
        phase,
    };
    let action = if existing.is_some() {
        "role_assignment.replaced"
    } else {
        "role_assignment.created"
    };
    let target = crate::auth::principal_name(org_id(d), p);
    d.change(
        action,
        target,
        existing.map(Entity::Assignment),
        Some(Entity::Assignment(a.clone())),
        principal_user(p),
    );
    Ok(a)
}

/// Removes the principal's role at a scope.
pub fn revoke_role(d: &mut Draft<'_>, p: Principal, scope: ScopeKey) -> Result<(), Error> {
    let st = d.state();
    let a = st
        .assignments
        .get(&p)
        .and_then(|m| m.get(&scope))
        .cloned()
        .ok_or_else(|| Error::NotFound("role assignment".into()))?;
    if let (Principal::User(u), ScopeKey::Organization, ADMINISTRATOR) = (p, scope, a.role.as_str())
        && a.is_permanent()
    {
        protect_last_admin(st, u)?;
    }
    remove_assignment(d, a);
    Ok(())
}

/// Grants an end-user role in a stage (idempotent).
pub fn grant_end_user_role(
    d: &mut Draft<'_>,
    u: Uuid,
    r: Uuid,
    s: &str,
) -> Result<EndUserGrant, Error> {
    let st = d.state();
    user(st, u)?;
    let app_id = end_user_role(st, r)?.app;
    stage(st, s)?;
    let g = EndUserGrant {
        user: u,
        end_user_role: r,
        app: app_id,
        stage: s.to_owned(),
    };
    if st
        .end_user_grants
        .get(&u)
        .is_some_and(|set| set.contains(&(r, s.to_owned())))
    {
        return Ok(g);
    }
    d.change(
        "end_user_grant.created",
        fmt::user(org_id(d), u),
        None,
        Some(Entity::EndUserGrant(g.clone())),
        vec![u],
    );
    Ok(g)
}

/// Revokes a direct end-user grant.
pub fn revoke_end_user_role(d: &mut Draft<'_>, u: Uuid, r: Uuid, s: &str) -> Result<(), Error> {
    let st = d.state();
    if !st
        .end_user_grants
        .get(&u)
        .is_some_and(|set| set.contains(&(r, s.to_owned())))
    {
        return Err(Error::NotFound("end-user role grant".into()));
    }
    let app_id = st.end_user_roles.get(&r).map_or(Uuid::nil(), |x| x.app);
    let g = EndUserGrant {
        user: u,
        end_user_role: r,
        app: app_id,
        stage: s.to_owned(),
    };
    d.change(
        "end_user_grant.deleted",
        fmt::user(org_id(d), u),
        Some(Entity::EndUserGrant(g)),
        None,
        vec![u],
    );
    Ok(())
}
