//! The rules of groups of end-users: one stage per group, unique names in it, members and
//! end-user roles of that stage; deleting a group takes only what came through it.

use shared::violations::Violations;
use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{ClaimMapping, Entity, Group, GroupMember, GroupRole};
use crate::domain::names::fmt;
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::rules::lookups::{check_etag, end_user_role, group, group_members, org_id, stage, user};

/// NOT_FOUND for a mapping whose identity provider the organization does not have.
pub(super) fn check_mappings(st: &OrgState, mappings: &[ClaimMapping]) -> Result<(), Error> {
    for m in mappings {
        if !st.identity_providers.contains_key(&m.provider) {
            return Err(Error::NotFound(fmt::identity_provider(
                st.org.id, m.provider,
            )));
        }
    }
    Ok(())
}

/// Creates a group in a stage.
pub fn create_group(
    d: &mut Draft<'_>,
    name: String,
    description: String,
    stage_key: String,
    claim_mappings: Vec<ClaimMapping>,
) -> Result<Group, Error> {
    stage(d.state(), &stage_key)?;
    check_mappings(d.state(), &claim_mappings)?;
    if d.state()
        .groups
        .values()
        .any(|g| g.stage == stage_key && g.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "GROUP_EXISTS",
            format!("stage {stage_key} has a group named {name}"),
        ));
    }
    let g = Group {
        id: Uuid::now_v7(),
        display_name: name,
        description,
        stage: stage_key,
        claim_mappings,
        create_time: d.now,
        update_time: d.now,
        rev: 1,
    };
    d.change(
        "group.created",
        fmt::group(org_id(d), g.id),
        None,
        Some(Entity::Group(g.clone())),
        Vec::new(),
    );
    Ok(g)
}

/// Changes a group's name and/or description.
pub fn update_group(
    d: &mut Draft<'_>,
    id: Uuid,
    name: Option<String>,
    description: Option<String>,
    claim_mappings: Option<Vec<ClaimMapping>>,
    etag: Option<&str>,
) -> Result<Group, Error> {
    let before = group(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    let mut after = before.clone();
    if let Some(m) = claim_mappings {
        check_mappings(d.state(), &m)?;
        after.claim_mappings = m;
    }
    if let Some(n) = name {
        if d.state().groups.values().any(|g| {
            g.id != id && g.stage == before.stage && g.display_name.eq_ignore_ascii_case(&n)
        }) {
            return Err(Error::exists(
                "GROUP_EXISTS",
                format!("stage {} has a group named {n}", before.stage),
            ));
        }
        after.display_name = n;
    }
    if let Some(desc) = description {
        after.description = desc;
    }
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "group.updated",
        fmt::group(org_id(d), id),
        Some(Entity::Group(before)),
        Some(Entity::Group(after.clone())),
        Vec::new(),
    );
    Ok(after)
}

/// Deletes a group; members lose only what came through it.
pub fn delete_group(d: &mut Draft<'_>, id: Uuid, etag: Option<&str>) -> Result<(), Error> {
    let g = group(d.state(), id)?.clone();
    check_etag(etag, g.rev)?;
    let members = group_members(d.state(), id);
    drop_members(d, id, &members);
    let roles: Vec<Uuid> = d
        .state()
        .group_roles
        .get(&id)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    remove_roles(d, id, &roles)?;
    d.change(
        "group.deleted",
        fmt::group(org_id(d), id),
        Some(Entity::Group(g)),
        None,
        members,
    );
    Ok(())
}

/// Adds users to a group (all must exist; already members are skipped).
pub fn add_members(d: &mut Draft<'_>, id: Uuid, users: &[Uuid]) -> Result<(), Error> {
    group(d.state(), id)?;
    for u in users {
        user(d.state(), *u)?;
    }
    for u in users {
        let before = d.state().membership(id, *u);
        let mut after = before.clone().unwrap_or(GroupMember::assigned(id, *u));
        after.assigned = true;
        set_membership(d, before, Some(after));
    }
    Ok(())
}

/// Records a membership change (nothing when `before` and `after` are the same): added,
/// removed, or its types changed.
pub(super) fn set_membership(
    d: &mut Draft<'_>,
    before: Option<GroupMember>,
    after: Option<GroupMember>,
) {
    if before == after {
        return;
    }
    let Some(m) = after.as_ref().or(before.as_ref()) else {
        return;
    };
    let (group, user) = (m.group, m.user);
    let action = match (&before, &after) {
        (None, _) => "group_member.added",
        (_, None) => "group_member.removed",
        _ => "group_member.updated",
    };
    d.change(
        action,
        fmt::group(org_id(d), group),
        before.map(Entity::GroupMember),
        after.map(Entity::GroupMember),
        vec![user],
    );
}

/// Removes the ASSIGNED type of members (each must be a member): a member who is also MAPPED
/// stays, one who is only MAPPED is refused (R48).
pub fn remove_members(d: &mut Draft<'_>, id: Uuid, users: &[Uuid]) -> Result<(), Error> {
    group(d.state(), id)?;
    let mut found = Vec::with_capacity(users.len());
    for u in users {
        let m = d.state().membership(id, *u).ok_or_else(|| {
            Error::NotFound(format!(
                "{} as a member of the group",
                fmt::user(org_id(d), *u)
            ))
        })?;
        if !m.assigned {
            return Err(Error::precondition(
                "MAPPED_MEMBERSHIP",
                format!(
                    "{} is a member through a claim mapping only; it ends when the identity \
                     provider's claims no longer match",
                    fmt::user(org_id(d), *u)
                ),
            ));
        }
        found.push(m);
    }
    for m in found {
        let after = m.mapped.then(|| GroupMember {
            assigned: false,
            ..m.clone()
        });
        set_membership(d, Some(m), after);
    }
    Ok(())
}

/// Removes members whatever their types (the group or the user is deleted).
pub fn drop_members(d: &mut Draft<'_>, id: Uuid, users: &[Uuid]) {
    for u in users {
        let before = d.state().membership(id, *u);
        set_membership(d, before, None);
    }
}

/// Adds end-user roles (of the group's stage) to a group.
pub fn add_roles(
    d: &mut Draft<'_>,
    id: Uuid,
    roles: &[(Uuid, Option<String>)],
) -> Result<(), Error> {
    let g = group(d.state(), id)?.clone();
    let mut v = Violations::new();
    for (i, (r, s)) in roles.iter().enumerate() {
        end_user_role(d.state(), *r)?;
        if let Some(s) = s
            && *s != g.stage
        {
            v.add(
                format!("end_user_roles[{i}].stage"),
                format!(
                    "a group can only have roles from its own stage ({})",
                    g.stage
                ),
            );
        }
    }
    v.finish()?;
    let o = org_id(d);
    let members = group_members(d.state(), id);
    for (r, _) in roles {
        if d.state()
            .group_roles
            .get(&id)
            .is_some_and(|s| s.contains(r))
        {
            continue;
        }
        let app_id = d.state().end_user_roles[r].app;
        d.change(
            "group_role.added",
            fmt::group(o, id),
            None,
            Some(Entity::GroupRole(GroupRole {
                group: id,
                end_user_role: *r,
                app: app_id,
            })),
            members.clone(),
        );
    }
    Ok(())
}

/// Removes end-user roles from a group (each must be held).
pub fn remove_roles(d: &mut Draft<'_>, id: Uuid, roles: &[Uuid]) -> Result<(), Error> {
    group(d.state(), id)?;
    for r in roles {
        if !d
            .state()
            .group_roles
            .get(&id)
            .is_some_and(|s| s.contains(r))
        {
            return Err(Error::NotFound(format!("end-user role {r} in the group")));
        }
    }
    let o = org_id(d);
    let members = group_members(d.state(), id);
    for r in roles {
        let app_id = d
            .state()
            .end_user_roles
            .get(r)
            .map_or(Uuid::nil(), |x| x.app);
        d.change(
            "group_role.removed",
            fmt::group(o, id),
            Some(Entity::GroupRole(GroupRole {
                group: id,
                end_user_role: *r,
                app: app_id,
            })),
            None,
            members.clone(),
        );
    }
    Ok(())
}

/// NOT_FOUND unless end-user role `role` exists and is a role of `app`.
fn check_role_app(st: &OrgState, app: Uuid, role: Uuid) -> Result<(), Error> {
    match st.end_user_roles.get(&role) {
        Some(r) if r.app == app => Ok(()),
        _ => Err(Error::NotFound(fmt::end_user_role(st.org.id, app, role))),
    }
}

/// [`add_roles`] for roles named with their app, `(app, role, stage)`: each must be a role of
/// that app.
pub fn add_app_roles(
    d: &mut Draft<'_>,
    id: Uuid,
    roles: &[(Uuid, Uuid, Option<String>)],
) -> Result<(), Error> {
    group(d.state(), id)?;
    for (app, role, _) in roles {
        check_role_app(d.state(), *app, *role)?;
    }
    let items: Vec<(Uuid, Option<String>)> =
        roles.iter().map(|(_, r, s)| (*r, s.clone())).collect();
    add_roles(d, id, &items)
}

/// [`remove_roles`] for roles named with their app, `(app, role)`: a role named under the
/// wrong app is not one the group holds.
pub fn remove_app_roles(d: &mut Draft<'_>, id: Uuid, roles: &[(Uuid, Uuid)]) -> Result<(), Error> {
    group(d.state(), id)?;
    let o = d.state().org.id;
    for (app, role) in roles {
        let held = d
            .state()
            .group_roles
            .get(&id)
            .is_some_and(|s| s.contains(role));
        let app_ok = d
            .state()
            .end_user_roles
            .get(role)
            .is_none_or(|r| r.app == *app);
        if !(held && app_ok) {
            return Err(Error::NotFound(format!(
                "{} in the group",
                fmt::end_user_role(o, *app, *role)
            )));
        }
    }
    let ids: Vec<Uuid> = roles.iter().map(|(_, r)| *r).collect();
    remove_roles(d, id, &ids)
}
