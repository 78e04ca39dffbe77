//! The rules of apps and of their end-user roles: deleting either takes along what refers to
//! it (app-scope assignments, end-user grants, group roles).

use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{
    App, Assignment, EndUserGrant, EndUserRole, Entity, GroupRole, ScopeKey,
};
use crate::domain::names::fmt;
use crate::error::Error;
use crate::rules::access::remove_assignment;
use crate::rules::lookups::{app, end_user_role, group_members, org_id};

/// Creates an app.
pub fn create_app(d: &mut Draft<'_>, name: String) -> Result<App, Error> {
    if d.state()
        .apps
        .values()
        .any(|a| a.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "APP_EXISTS",
            format!("an app named {name} exists"),
        ));
    }
    let a = App {
        id: Uuid::now_v7(),
        display_name: name,
        create_time: d.now,
    };
    d.change(
        "app.created",
        fmt::app(org_id(d), a.id),
        None,
        Some(Entity::App(a.clone())),
        Vec::new(),
    );
    Ok(a)
}

/// Deletes an app with its app-scope assignments, end-user roles, their grants and group roles.
pub fn delete_app(d: &mut Draft<'_>, id: Uuid) -> Result<(), Error> {
    let a = app(d.state(), id)?.clone();
    let o = org_id(d);
    let scoped: Vec<Assignment> = d
        .state()
        .assignments
        .values()
        .filter_map(|m| m.get(&ScopeKey::App(id)).cloned())
        .collect();
    for x in scoped {
        remove_assignment(d, x);
    }
    let roles: Vec<Uuid> = d
        .state()
        .end_user_roles
        .values()
        .filter(|r| r.app == id)
        .map(|r| r.id)
        .collect();
    for r in roles {
        delete_end_user_role(d, r)?;
    }
    d.change(
        "app.deleted",
        fmt::app(o, id),
        Some(Entity::App(a)),
        None,
        Vec::new(),
    );
    Ok(())
}

/// Defines an end-user role of an app.
pub fn create_end_user_role(
    d: &mut Draft<'_>,
    app_id: Uuid,
    name: String,
) -> Result<EndUserRole, Error> {
    app(d.state(), app_id)?;
    if d.state()
        .end_user_roles
        .values()
        .any(|r| r.app == app_id && r.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "END_USER_ROLE_EXISTS",
            format!("the app has a role named {name}"),
        ));
    }
    let r = EndUserRole {
        id: Uuid::now_v7(),
        app: app_id,
        display_name: name,
    };
    d.change(
        "end_user_role.created",
        fmt::end_user_role(org_id(d), app_id, r.id),
        None,
        Some(Entity::EndUserRole(r.clone())),
        Vec::new(),
    );
    Ok(r)
}

/// Deletes an end-user role with its grants and group roles.
pub fn delete_end_user_role(d: &mut Draft<'_>, id: Uuid) -> Result<(), Error> {
    let r = end_user_role(d.state(), id)?.clone();
    let o = org_id(d);
    let grants: Vec<EndUserGrant> = d
        .state()
        .end_user_grants
        .iter()
        .flat_map(|(u, set)| {
            set.iter()
                .filter(|(role, _)| *role == id)
                .map(|(_, s)| EndUserGrant {
                    user: *u,
                    end_user_role: id,
                    app: r.app,
                    stage: s.clone(),
                })
        })
        .collect();
    for g in grants {
        let target = fmt::user(o, g.user);
        let affected = vec![g.user];
        d.change(
            "end_user_grant.deleted",
            target,
            Some(Entity::EndUserGrant(g)),
            None,
            affected,
        );
    }
    let groups: Vec<Uuid> = d
        .state()
        .group_roles
        .iter()
        .filter(|(_, set)| set.contains(&id))
        .map(|(g, _)| *g)
        .collect();
    for g in groups {
        let members = group_members(d.state(), g);
        d.change(
            "group_role.deleted",
            fmt::group(o, g),
            Some(Entity::GroupRole(GroupRole {
                group: g,
                end_user_role: id,
                app: r.app,
            })),
            None,
            members,
        );
    }
    d.change(
        "end_user_role.deleted",
        fmt::end_user_role(o, r.app, id),
        Some(Entity::EndUserRole(r)),
        None,
        Vec::new(),
    );
    Ok(())
}
