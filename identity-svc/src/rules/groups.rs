//! The rules of groups of end-users: one stage per group, unique names in it, members and
//! end-user roles of that stage; deleting a group takes only what came through it.

use shared::violations::Violations;
use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{Entity, Group, GroupMember, GroupRole};
use crate::domain::names::fmt;
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::rules::lookups::{check_etag, end_user_role, group, group_members, org_id, stage, user};

/// Creates a group in a stage.
pub fn create_group(
    d: &mut Draft<'_>,
    name: String,
    description: String,
    stage_key: String,
) -> Result<Group, Error> {
    stage(d.state(), &stage_key)?;
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
    etag: Option<&str>,
) -> Result<Group, Error> {
    let before = group(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    let mut after = before.clone();
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
    remove_members(d, id, &members)?;
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
    let o = org_id(d);
    for u in users {
        if d.state()
            .group_members
            .get(&id)
            .is_some_and(|s| s.contains(u))
        {
            continue;
        }
        d.change(
            "group_member.added",
            fmt::group(o, id),
            None,
            Some(Entity::GroupMember(GroupMember {
                group: id,
                user: *u,
            })),
            vec![*u],
        );
    }
    Ok(())
}

/// Removes members from a group (each must be a member).
pub fn remove_members(d: &mut Draft<'_>, id: Uuid, users: &[Uuid]) -> Result<(), Error> {
    group(d.state(), id)?;
    for u in users {
        if !d
            .state()
            .group_members
            .get(&id)
            .is_some_and(|s| s.contains(u))
        {
            return Err(Error::NotFound(format!(
                "{} as a member of the group",
                fmt::user(org_id(d), *u)
            )));
        }
    }
    let o = org_id(d);
    for u in users {
        d.change(
            "group_member.removed",
            fmt::group(o, id),
            Some(Entity::GroupMember(GroupMember {
                group: id,
                user: *u,
            })),
            None,
            vec![*u],
        );
    }
    Ok(())
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
