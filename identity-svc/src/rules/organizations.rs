//! The rules of an organization as a whole: seeding a new one (its stages, the built-in roles,
//! the first administrator's invitation) and renaming it.

use shared::email::Email;

use crate::core::Draft;
use crate::domain::model::{Entity, Stage, StagePurpose, User};
use crate::domain::names::{ADMINISTRATOR, fmt};
use crate::domain::permissions::built_in::built_in_roles;
use crate::error::Error;
use crate::rules::invitations::{Invite, invite};
use crate::rules::lookups::{check_etag, org_id};

/// Seeds a new organization: stages, built-in roles, and the first administrator's invitation.
/// Returns the invited user and the id of the queued invitation message.
pub fn seed_organization(
    d: &mut Draft<'_>,
    first_admin: &Email,
) -> Result<(User, uuid::Uuid), Error> {
    let o = org_id(d);
    for (order, (key, name, purpose)) in [
        ("development", "Development", StagePurpose::Development),
        ("qa", "QA", StagePurpose::NonProduction),
        ("production", "Production", StagePurpose::Production),
    ]
    .into_iter()
    .enumerate()
    {
        let s = Stage {
            key: key.into(),
            display_name: name.into(),
            order: u32::try_from(order).unwrap_or(u32::MAX),
            purpose,
            rev: 1,
        };
        d.change(
            "stage.created",
            fmt::stage(o, key),
            None,
            Some(Entity::Stage(s)),
            Vec::new(),
        );
    }
    for r in built_in_roles(d.now) {
        d.change(
            "role.created",
            fmt::role(o, &r.id),
            None,
            Some(Entity::Role(r)),
            Vec::new(),
        );
    }
    invite(
        d,
        &Invite {
            email: first_admin.clone(),
            display_name: String::new(),
            organization_role: Some(ADMINISTRATOR.into()),
            app_roles: Vec::new(),
            end_user_roles: Vec::new(),
            groups: Vec::new(),
        },
    )
}

/// Renames the organization.
pub fn rename_organization(
    d: &mut Draft<'_>,
    name: String,
    etag: Option<&str>,
) -> Result<(), Error> {
    let before = d.state().org.clone();
    check_etag(etag, before.rev)?;
    let mut after = before.clone();
    after.display_name = name;
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "organization.updated",
        fmt::org(before.id),
        Some(Entity::Organization(before)),
        Some(Entity::Organization(after)),
        Vec::new(),
    );
    Ok(())
}
