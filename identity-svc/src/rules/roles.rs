//! The rules of custom roles: unique names, grants valid against the catalog, built-in roles
//! read-only, a role still assigned cannot be deleted.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{Entity, Grant, Role};
use crate::domain::names::fmt;
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::rules::access::validate_grants;
use crate::rules::lookups::{check_etag, org_id, role};

fn refuse_taken_role_name(st: &OrgState, name: &str, except: Option<&str>) -> Result<(), Error> {
    if st
        .roles
        .values()
        .any(|r| Some(r.id.as_str()) != except && r.display_name.eq_ignore_ascii_case(name))
    {
        return Err(Error::exists(
            "ROLE_NAME_TAKEN",
            format!("a role named {name} exists"),
        ));
    }
    Ok(())
}

/// Creates a custom role.
pub fn create_role(
    d: &mut Draft<'_>,
    name: String,
    description: String,
    grants: Vec<Grant>,
) -> Result<Role, Error> {
    validate_grants(d.state(), &grants, "role.grants")?;
    refuse_taken_role_name(d.state(), &name, None)?;
    let r = Role {
        id: Uuid::now_v7().to_string(),
        display_name: name,
        description,
        built_in: false,
        all_permissions: false,
        grants,
        create_time: d.now,
        update_time: d.now,
        rev: 1,
    };
    d.change(
        "role.created",
        fmt::role(org_id(d), &r.id),
        None,
        Some(Entity::Role(r.clone())),
        Vec::new(),
    );
    Ok(r)
}

/// Changes a custom role; every holder is affected at once.
pub fn update_role(
    d: &mut Draft<'_>,
    id: &str,
    name: Option<String>,
    description: Option<String>,
    grants: Option<Vec<Grant>>,
    etag: Option<&str>,
) -> Result<Role, Error> {
    let before = role(d.state(), id)?.clone();
    if before.built_in {
        return Err(Error::precondition(
            "BUILT_IN_ROLE",
            "built-in roles are read-only",
        ));
    }
    check_etag(etag, before.rev)?;
    let mut after = before.clone();
    if let Some(n) = name {
        refuse_taken_role_name(d.state(), &n, Some(id))?;
        after.display_name = n;
    }
    if let Some(desc) = description {
        after.description = desc;
    }
    if let Some(g) = grants {
        validate_grants(d.state(), &g, "role.grants")?;
        after.grants = g;
    }
    after.update_time = d.now;
    after.rev += 1;
    let holders = d.state().role_user_holders(id);
    d.change(
        "role.updated",
        fmt::role(org_id(d), id),
        Some(Entity::Role(before)),
        Some(Entity::Role(after.clone())),
        holders,
    );
    Ok(after)
}

/// Creates an editable copy named `<name>-copy` (then `-copy-2`, ...).
pub fn duplicate_role(d: &mut Draft<'_>, id: &str) -> Result<Role, Error> {
    let src = role(d.state(), id)?.clone();
    let taken = |n: &str| {
        d.state()
            .roles
            .values()
            .any(|r| r.display_name.eq_ignore_ascii_case(n))
    };
    let mut name = format!("{}-copy", src.display_name);
    let mut i = 2;
    while taken(&name) {
        name = format!("{}-copy-{i}", src.display_name);
        i += 1;
    }
    create_role(d, name, src.description.clone(), src.grants.clone())
}

/// Deletes a custom role nobody holds.
pub fn delete_role(d: &mut Draft<'_>, id: &str, etag: Option<&str>) -> Result<(), Error> {
    let r = role(d.state(), id)?.clone();
    if r.built_in {
        return Err(Error::precondition(
            "BUILT_IN_ROLE",
            "built-in roles cannot be deleted",
        ));
    }
    check_etag(etag, r.rev)?;
    let n = d.state().role_holders.get(id).map_or(0, BTreeSet::len);
    if n > 0 {
        return Err(Error::precondition(
            "ROLE_IN_USE",
            format!("the role is still assigned {n} time(s); revoke those assignments first"),
        ));
    }
    d.change(
        "role.deleted",
        fmt::role(org_id(d), id),
        Some(Entity::Role(r)),
        None,
        Vec::new(),
    );
    Ok(())
}
