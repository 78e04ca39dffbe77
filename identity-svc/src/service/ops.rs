//! The mutations of an organization, in domain types. Each runs inside [`Core::mutate`] on a
//! [`Draft`]: it validates against the state, then records changes (and credential changes);
//! on any error nothing is committed.
//!
//! [`Core::mutate`]: crate::core::Core::mutate

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::auth::{INVITATION_PREFIX, hash_token, new_token};
use crate::core::Draft;
use crate::core::{SecretOp, TokenKind, TokenRecord};
use crate::domain::catalog::{self, DeveloperDefault};
use crate::domain::email::Email;
use crate::domain::model::{
    App, Assignment, EndUserGrant, EndUserRole, Entity, Grant, Group, GroupMember, GroupRole,
    Invitation, Micros, Principal, Role, ScopeKey, ServiceAccount, Stage, StagePurpose, User,
    UserState,
};
use crate::domain::names::{self, ADMINISTRATOR, DEVELOPER, fmt};
use crate::domain::state::OrgState;
use crate::error::{Error, Violations};

/// How long an invitation is valid: 7 days.
pub const INVITATION_TTL: Micros = 7 * 24 * 3_600 * 1_000_000;
/// Most non-production stages between Development and Production.
pub const MAX_NON_PRODUCTION_STAGES: usize = 10;

fn org_id(d: &Draft<'_>) -> Uuid {
    d.state().org.id
}

/// Refuses a stale etag (AIP-154). An empty etag skips the check.
pub fn check_etag(given: Option<&str>, rev: u64) -> Result<(), Error> {
    match given {
        Some(e) if !e.is_empty() && e != rev.to_string() => Err(Error::Aborted(format!(
            "etag {e:?} is stale (current {rev:?}); read the resource again"
        ))),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- lookups

/// A user or NOT_FOUND.
pub fn user(st: &OrgState, id: Uuid) -> Result<&User, Error> {
    st.users
        .get(&id)
        .ok_or_else(|| Error::NotFound(fmt::user(st.org.id, id)))
}
/// A role or NOT_FOUND.
pub fn role<'a>(st: &'a OrgState, id: &str) -> Result<&'a Role, Error> {
    st.roles
        .get(id)
        .ok_or_else(|| Error::NotFound(fmt::role(st.org.id, id)))
}
/// A stage or NOT_FOUND.
pub fn stage<'a>(st: &'a OrgState, key: &str) -> Result<&'a Stage, Error> {
    st.stages
        .get(key)
        .ok_or_else(|| Error::NotFound(fmt::stage(st.org.id, key)))
}
/// An app or NOT_FOUND.
pub fn app(st: &OrgState, id: Uuid) -> Result<&App, Error> {
    st.apps
        .get(&id)
        .ok_or_else(|| Error::NotFound(fmt::app(st.org.id, id)))
}
/// An end-user role or NOT_FOUND.
pub fn end_user_role(st: &OrgState, id: Uuid) -> Result<&EndUserRole, Error> {
    st.end_user_roles
        .get(&id)
        .ok_or_else(|| Error::NotFound(format!("end-user role {id}")))
}
/// A group or NOT_FOUND.
pub fn group(st: &OrgState, id: Uuid) -> Result<&Group, Error> {
    st.groups
        .get(&id)
        .ok_or_else(|| Error::NotFound(fmt::group(st.org.id, id)))
}
/// A principal or NOT_FOUND.
pub fn principal(st: &OrgState, p: Principal) -> Result<(), Error> {
    if st.principal_exists(p) {
        Ok(())
    } else {
        Err(Error::NotFound(crate::auth::principal_name(st.org.id, p)))
    }
}

fn principal_user(p: Principal) -> Vec<Uuid> {
    match p {
        Principal::User(u) => vec![u],
        Principal::ServiceAccount(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------- organization

/// Seeds a new organization: stages, built-in roles, and the first administrator's invitation.
/// Returns the invited user and the invitation secret (for the mailer only).
pub fn seed_organization(d: &mut Draft<'_>, first_admin: &Email) -> Result<(User, String), Error> {
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

/// Administrator and Developer as defined by the catalog.
pub fn built_in_roles(now: Micros) -> [Role; 2] {
    let admin = Role {
        id: ADMINISTRATOR.into(),
        display_name: "Administrator".into(),
        description: "Every permission in every stage on every app.".into(),
        built_in: true,
        all_permissions: true,
        grants: catalog::CATALOG
            .iter()
            .map(|p| Grant {
                permission: p.key.into(),
                stages: None,
            })
            .collect(),
        create_time: now,
        update_time: now,
        rev: 1,
    };
    let developer = Role {
        id: DEVELOPER.into(),
        display_name: "Developer".into(),
        description: "Builds apps: full access in Development, read access elsewhere.".into(),
        built_in: true,
        all_permissions: false,
        grants: catalog::CATALOG
            .iter()
            .filter_map(|p| match p.developer {
                DeveloperDefault::No => None,
                DeveloperDefault::Yes => Some(Grant {
                    permission: p.key.into(),
                    stages: None,
                }),
                DeveloperDefault::DevelopmentOnly => Some(Grant {
                    permission: p.key.into(),
                    stages: Some(BTreeSet::from(["development".to_owned()])),
                }),
            })
            .collect(),
        create_time: now,
        update_time: now,
        rev: 1,
    };
    [admin, developer]
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

// ---------------------------------------------------------------- stages

/// Adds a non-production stage just before Production.
pub fn create_stage(d: &mut Draft<'_>, key: &str, name: String) -> Result<Stage, Error> {
    let st = d.state();
    if st.stages.contains_key(key) {
        return Err(Error::exists(
            "STAGE_EXISTS",
            format!("stage key {key} is taken"),
        ));
    }
    if st
        .stages
        .values()
        .any(|s| s.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "STAGE_EXISTS",
            format!("stage name {name} is taken"),
        ));
    }
    let non_production = st
        .stages
        .values()
        .filter(|s| s.purpose == StagePurpose::NonProduction)
        .count();
    if non_production >= MAX_NON_PRODUCTION_STAGES {
        return Err(Error::precondition(
            "TOO_MANY_STAGES",
            format!(
                "an organization has at most {MAX_NON_PRODUCTION_STAGES} non-production stages"
            ),
        ));
    }
    let production = st
        .stages
        .values()
        .find(|s| s.purpose == StagePurpose::Production)
        .cloned()
        .ok_or_else(|| Error::Internal("no production stage".into()))?;
    let o = org_id(d);
    let stage = Stage {
        key: key.to_owned(),
        display_name: name,
        order: production.order,
        purpose: StagePurpose::NonProduction,
        rev: 1,
    };
    let mut moved = production.clone();
    moved.order += 1;
    moved.rev += 1;
    d.change(
        "stage.reordered",
        fmt::stage(o, &production.key),
        Some(Entity::Stage(production)),
        Some(Entity::Stage(moved)),
        Vec::new(),
    );
    d.change(
        "stage.created",
        fmt::stage(o, key),
        None,
        Some(Entity::Stage(stage.clone())),
        Vec::new(),
    );
    Ok(stage)
}

/// Renames a stage.
pub fn rename_stage(
    d: &mut Draft<'_>,
    key: &str,
    name: String,
    etag: Option<&str>,
) -> Result<Stage, Error> {
    let before = stage(d.state(), key)?.clone();
    check_etag(etag, before.rev)?;
    if d.state()
        .stages
        .values()
        .any(|s| s.key != key && s.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "STAGE_EXISTS",
            format!("stage name {name} is taken"),
        ));
    }
    let mut after = before.clone();
    after.display_name = name;
    after.rev += 1;
    d.change(
        "stage.updated",
        fmt::stage(org_id(d), key),
        Some(Entity::Stage(before)),
        Some(Entity::Stage(after.clone())),
        Vec::new(),
    );
    Ok(after)
}

/// Reorders the stages: `keys` is every key once, Development first, Production last.
pub fn reorder_stages(d: &mut Draft<'_>, keys: &[String]) -> Result<(), Error> {
    let st = d.state();
    let given: BTreeSet<&String> = keys.iter().collect();
    if given.len() != keys.len()
        || given.len() != st.stages.len()
        || keys.iter().any(|k| !st.stages.contains_key(k))
    {
        return Err(Error::field(
            "stage_ids",
            "must list every stage key exactly once",
        ));
    }
    let first = &st.stages[&keys[0]];
    let last = &st.stages[&keys[keys.len() - 1]];
    if first.purpose != StagePurpose::Development || last.purpose != StagePurpose::Production {
        return Err(Error::precondition(
            "STAGE_LOCKED",
            "Development must stay first and Production last",
        ));
    }
    let o = org_id(d);
    for (i, k) in keys.iter().enumerate() {
        let before = d.state().stages[k].clone();
        let order = u32::try_from(i).unwrap_or(u32::MAX);
        if before.order != order {
            let mut after = before.clone();
            after.order = order;
            after.rev += 1;
            d.change(
                "stage.reordered",
                fmt::stage(o, k),
                Some(Entity::Stage(before)),
                Some(Entity::Stage(after)),
                Vec::new(),
            );
        }
    }
    Ok(())
}

/// Deletes a non-production stage nothing refers to.
pub fn delete_stage(d: &mut Draft<'_>, key: &str) -> Result<(), Error> {
    let st = d.state();
    let s = stage(st, key)?.clone();
    if s.purpose != StagePurpose::NonProduction {
        return Err(Error::precondition(
            "STAGE_LOCKED",
            "Development and Production cannot be deleted",
        ));
    }
    let groups = st.groups.values().filter(|g| g.stage == key).count();
    let grants = st
        .end_user_grants
        .values()
        .flatten()
        .filter(|(_, s)| s == key)
        .count();
    let roles = st
        .roles
        .values()
        .filter(|r| {
            r.grants
                .iter()
                .any(|g| g.stages.as_ref().is_some_and(|s| s.contains(key)))
        })
        .count();
    if groups + grants + roles > 0 {
        return Err(Error::precondition(
            "STAGE_IN_USE",
            format!(
                "stage {key} is used by {groups} group(s), {grants} end-user grant(s) and {roles} role(s)"
            ),
        ));
    }
    let o = org_id(d);
    d.change(
        "stage.deleted",
        fmt::stage(o, key),
        Some(Entity::Stage(s.clone())),
        None,
        Vec::new(),
    );
    // Close the gap in the order.
    let later: Vec<Stage> = d
        .state()
        .stages
        .values()
        .filter(|x| x.order > s.order)
        .cloned()
        .collect();
    for before in later {
        let mut after = before.clone();
        after.order -= 1;
        after.rev += 1;
        d.change(
            "stage.reordered",
            fmt::stage(o, &before.key),
            Some(Entity::Stage(before)),
            Some(Entity::Stage(after)),
            Vec::new(),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- apps

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

fn group_members(st: &OrgState, g: Uuid) -> Vec<Uuid> {
    st.group_members
        .get(&g)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- users

/// What an invitation carries.
#[derive(Debug, Clone)]
pub struct Invite {
    /// The address.
    pub email: Email,
    /// Optional display name.
    pub display_name: String,
    /// Organization-scope role.
    pub organization_role: Option<String>,
    /// (app, role) pairs.
    pub app_roles: Vec<(Uuid, String)>,
    /// (end-user role, stage) pairs.
    pub end_user_roles: Vec<(Uuid, String)>,
    /// Groups to join.
    pub groups: Vec<Uuid>,
}

fn refuse_existing_email(st: &OrgState, email: &Email) -> Result<(), Error> {
    if let Some(id) = st.users_by_email.get(email.as_str()) {
        let u = &st.users[id];
        return Err(if u.state == UserState::Invited {
            Error::precondition(
                "INVITATION_PENDING",
                format!("{email} is already invited; resend the invitation instead"),
            )
        } else {
            Error::exists(
                "EMAIL_TAKEN",
                format!("a user with email {email} exists; change their roles instead"),
            )
        });
    }
    Ok(())
}

/// Invites a user with everything the invitation carries. Returns the user and the secret.
pub fn invite(d: &mut Draft<'_>, inv: &Invite) -> Result<(User, String), Error> {
    let st = d.state();
    refuse_existing_email(st, &inv.email)?;
    if let Some(r) = &inv.organization_role {
        role(st, r)?;
    }
    for (a, r) in &inv.app_roles {
        app(st, *a)?;
        role(st, r)?;
    }
    for (r, s) in &inv.end_user_roles {
        end_user_role(st, *r)?;
        stage(st, s)?;
    }
    for g in &inv.groups {
        group(st, *g)?;
    }
    let o = org_id(d);
    let u = User {
        id: Uuid::now_v7(),
        email: inv.email.clone(),
        display_name: inv.display_name.clone(),
        state: UserState::Invited,
        registered: false,
        create_time: d.now,
        update_time: d.now,
        rev: 1,
    };
    d.change(
        "user.invited",
        fmt::user(o, u.id),
        None,
        Some(Entity::User(u.clone())),
        vec![u.id],
    );
    let p = Principal::User(u.id);
    if let Some(r) = &inv.organization_role {
        assign_role(d, p, r, ScopeKey::Organization)?;
    }
    for (a, r) in &inv.app_roles {
        assign_role(d, p, r, ScopeKey::App(*a))?;
    }
    for (r, s) in &inv.end_user_roles {
        grant_end_user_role(d, u.id, *r, s)?;
    }
    for g in &inv.groups {
        add_members(d, *g, &[u.id])?;
    }
    let secret = issue_invitation(d, u.id);
    Ok((u, secret))
}

/// Replaces any open invitation of `user` with a new one; returns the secret.
fn issue_invitation(d: &mut Draft<'_>, user: Uuid) -> String {
    let o = org_id(d);
    let before = d
        .state()
        .invitations
        .get(&user)
        .cloned()
        .map(Entity::Invitation);
    let inv = Invitation {
        id: Uuid::now_v7(),
        user,
        create_time: d.now,
        expire_time: d.now + INVITATION_TTL,
    };
    let action = if before.is_some() {
        "invitation.resent"
    } else {
        "invitation.created"
    };
    d.change(
        action,
        fmt::user(o, user),
        before,
        Some(Entity::Invitation(inv.clone())),
        vec![user],
    );
    let secret = new_token(INVITATION_PREFIX);
    d.secret(SecretOp::DeleteInvitationTokens { user });
    d.secret(SecretOp::PutInvitationToken {
        hash: hash_token(&secret),
        invitation: inv.id,
        user,
        expire_time: inv.expire_time,
    });
    secret
}

/// Issues a new invitation to an INVITED user, invalidating the previous one.
pub fn resend_invitation(d: &mut Draft<'_>, id: Uuid) -> Result<(User, String), Error> {
    let u = user(d.state(), id)?.clone();
    if u.state != UserState::Invited {
        return Err(Error::precondition(
            "NOT_INVITED",
            "only INVITED users have an invitation to resend",
        ));
    }
    let secret = issue_invitation(d, id);
    Ok((u, secret))
}

/// Accepts an invitation: the user becomes ACTIVE with the password set.
pub fn accept_invitation(
    d: &mut Draft<'_>,
    token: &crate::core::InvitationToken,
    password_hash: String,
    display_name: Option<String>,
) -> Result<User, Error> {
    let invalid = || {
        Error::Unauthenticated(
            "the invitation is not valid (unknown, used, superseded or expired)".into(),
        )
    };
    let st = d.state();
    let u = st.users.get(&token.user).cloned().ok_or_else(invalid)?;
    let inv = st
        .invitations
        .get(&token.user)
        .cloned()
        .ok_or_else(invalid)?;
    if inv.id != token.invitation || inv.expire_time <= d.now || token.expire_time <= d.now {
        return Err(invalid());
    }
    if u.state != UserState::Invited {
        return Err(Error::precondition(
            "NOT_INVITED",
            "the user is not waiting for an invitation (deactivated?)",
        ));
    }
    let o = org_id(d);
    let mut after = u.clone();
    after.state = UserState::Active;
    after.registered = true;
    if let Some(n) = display_name {
        after.display_name = n;
    }
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "invitation.accepted",
        fmt::user(o, u.id),
        Some(Entity::Invitation(inv)),
        None,
        vec![u.id],
    );
    d.change(
        "user.activated",
        fmt::user(o, u.id),
        Some(Entity::User(u)),
        Some(Entity::User(after.clone())),
        vec![after.id],
    );
    d.secret(SecretOp::DeleteInvitationTokens { user: after.id });
    d.secret(SecretOp::SetPassword {
        user: after.id,
        hash: password_hash,
    });
    Ok(after)
}

/// Creates a user directly (no invitation, no roles).
pub fn create_user(
    d: &mut Draft<'_>,
    email: Email,
    display_name: String,
    active: bool,
    password_hash: Option<String>,
) -> Result<User, Error> {
    refuse_existing_email(d.state(), &email)?;
    let u = User {
        id: Uuid::now_v7(),
        email,
        display_name,
        state: if active {
            UserState::Active
        } else {
            UserState::Inactive
        },
        registered: true,
        create_time: d.now,
        update_time: d.now,
        rev: 1,
    };
    d.change(
        "user.created",
        fmt::user(org_id(d), u.id),
        None,
        Some(Entity::User(u.clone())),
        vec![u.id],
    );
    if let Some(hash) = password_hash {
        d.secret(SecretOp::SetPassword { user: u.id, hash });
    }
    Ok(u)
}

/// Changes a user's display name.
pub fn update_user(
    d: &mut Draft<'_>,
    id: Uuid,
    display_name: String,
    etag: Option<&str>,
) -> Result<User, Error> {
    let before = user(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    let mut after = before.clone();
    after.display_name = display_name;
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "user.updated",
        fmt::user(org_id(d), id),
        Some(Entity::User(before)),
        Some(Entity::User(after.clone())),
        vec![id],
    );
    Ok(after)
}

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
                            .is_some_and(|u| u.state == UserState::Active) =>
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
fn protect_last_admin(st: &OrgState, user: Uuid) -> Result<(), Error> {
    let admins = active_org_admins(st);
    if admins == [user] {
        return Err(Error::precondition(
            "LAST_ADMINISTRATOR",
            "this is the last ACTIVE Administrator of the organization",
        ));
    }
    Ok(())
}

fn refuse_self(actor: Option<Principal>, id: Uuid) -> Result<(), Error> {
    if actor == Some(Principal::User(id)) {
        return Err(Error::precondition(
            "SELF_ACTION",
            "you cannot do this to yourself",
        ));
    }
    Ok(())
}

/// INACTIVE → ACTIVE (or back to INVITED if the user never registered).
pub fn activate_user(d: &mut Draft<'_>, id: Uuid, etag: Option<&str>) -> Result<User, Error> {
    let before = user(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    if before.state != UserState::Inactive {
        return Err(Error::precondition(
            "NOT_INACTIVE",
            "only INACTIVE users can be activated",
        ));
    }
    let mut after = before.clone();
    after.state = if before.registered {
        UserState::Active
    } else {
        UserState::Invited
    };
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "user.activated",
        fmt::user(org_id(d), id),
        Some(Entity::User(before)),
        Some(Entity::User(after.clone())),
        vec![id],
    );
    Ok(after)
}

/// ACTIVE or INVITED → INACTIVE; every token of the user is revoked.
pub fn deactivate_user(
    d: &mut Draft<'_>,
    actor: Option<Principal>,
    id: Uuid,
    etag: Option<&str>,
) -> Result<User, Error> {
    let before = user(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    refuse_self(actor, id)?;
    if before.state == UserState::Inactive {
        return Err(Error::precondition(
            "ALREADY_INACTIVE",
            "the user is already INACTIVE",
        ));
    }
    protect_last_admin(d.state(), id)?;
    let mut after = before.clone();
    after.state = UserState::Inactive;
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "user.deactivated",
        fmt::user(org_id(d), id),
        Some(Entity::User(before)),
        Some(Entity::User(after.clone())),
        vec![id],
    );
    d.secret(SecretOp::RevokeTokensOf {
        principal: Principal::User(id),
        at: d.now,
    });
    Ok(after)
}

/// Deletes a user with everything of theirs.
pub fn delete_user(
    d: &mut Draft<'_>,
    actor: Option<Principal>,
    id: Uuid,
    etag: Option<&str>,
) -> Result<(), Error> {
    let before = user(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    refuse_self(actor, id)?;
    protect_last_admin(d.state(), id)?;
    let o = org_id(d);
    let p = Principal::User(id);
    let assignments: Vec<Assignment> = d
        .state()
        .assignments
        .get(&p)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    for a in assignments {
        remove_assignment(d, a);
    }
    let grants: Vec<(Uuid, String)> = d
        .state()
        .end_user_grants
        .get(&id)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    for (r, s) in grants {
        revoke_end_user_role(d, id, r, &s)?;
    }
    let groups: Vec<Uuid> = d
        .state()
        .user_groups
        .get(&id)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    for g in groups {
        remove_members(d, g, &[id])?;
    }
    if let Some(inv) = d.state().invitations.get(&id).cloned() {
        d.change(
            "invitation.deleted",
            fmt::user(o, id),
            Some(Entity::Invitation(inv)),
            None,
            vec![id],
        );
    }
    d.change(
        "user.deleted",
        fmt::user(o, id),
        Some(Entity::User(before)),
        None,
        vec![id],
    );
    d.secret(SecretOp::DeleteInvitationTokens { user: id });
    d.secret(SecretOp::DeleteCredentials { user: id });
    d.secret(SecretOp::RevokeTokensOf {
        principal: p,
        at: d.now,
    });
    Ok(())
}

// ---------------------------------------------------------------- roles

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
    v.finish()
}

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

// ---------------------------------------------------------------- access

fn remove_assignment(d: &mut Draft<'_>, a: Assignment) {
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

/// Assigns a role at a scope, replacing the principal's role there.
pub fn assign_role(
    d: &mut Draft<'_>,
    p: Principal,
    role_id: &str,
    scope: ScopeKey,
) -> Result<Assignment, Error> {
    let st = d.state();
    principal(st, p)?;
    role(st, role_id)?;
    if let ScopeKey::App(a) = scope {
        app(st, a)?;
    }
    let existing = st.assignments.get(&p).and_then(|m| m.get(&scope)).cloned();
    if let Some(e) = &existing {
        if e.role == role_id {
            return Ok(e.clone());
        }
        if let (Principal::User(u), ScopeKey::Organization, ADMINISTRATOR) =
            (p, scope, e.role.as_str())
        {
            protect_last_admin(st, u)?;
        }
    }
    let a = Assignment {
        principal: p,
        scope,
        role: role_id.to_owned(),
        create_time: d.now,
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

// ---------------------------------------------------------------- groups

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

// ---------------------------------------------------------------- service accounts

/// Creates a service account.
pub fn create_service_account(d: &mut Draft<'_>, name: String) -> Result<ServiceAccount, Error> {
    if d.state()
        .service_accounts
        .values()
        .any(|s| s.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "SERVICE_ACCOUNT_EXISTS",
            format!("a service account named {name} exists"),
        ));
    }
    let s = ServiceAccount {
        id: Uuid::now_v7(),
        display_name: name,
        create_time: d.now,
    };
    d.change(
        "service_account.created",
        fmt::service_account(org_id(d), s.id),
        None,
        Some(Entity::ServiceAccount(s.clone())),
        Vec::new(),
    );
    Ok(s)
}

/// Deletes a service account with its assignments and tokens.
pub fn delete_service_account(d: &mut Draft<'_>, id: Uuid) -> Result<(), Error> {
    let s = d
        .state()
        .service_accounts
        .get(&id)
        .cloned()
        .ok_or_else(|| Error::NotFound(fmt::service_account(org_id(d), id)))?;
    let p = Principal::ServiceAccount(id);
    let assignments: Vec<Assignment> = d
        .state()
        .assignments
        .get(&p)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    for a in assignments {
        remove_assignment(d, a);
    }
    d.change(
        "service_account.deleted",
        fmt::service_account(org_id(d), id),
        Some(Entity::ServiceAccount(s)),
        None,
        Vec::new(),
    );
    d.secret(SecretOp::RevokeTokensOf {
        principal: p,
        at: d.now,
    });
    Ok(())
}

/// Issues a service-account token; returns its record and secret.
pub fn create_service_account_token(
    d: &mut Draft<'_>,
    id: Uuid,
    ttl: Micros,
) -> Result<(TokenRecord, String), Error> {
    if !d.state().service_accounts.contains_key(&id) {
        return Err(Error::NotFound(fmt::service_account(org_id(d), id)));
    }
    let secret = new_token(crate::auth::SERVICE_ACCOUNT_PREFIX);
    let t = TokenRecord {
        id: Uuid::now_v7(),
        hash: hash_token(&secret),
        kind: TokenKind::ServiceAccount,
        org: org_id(d),
        principal: Principal::ServiceAccount(id),
        create_time: d.now,
        expire_time: d.now + ttl,
        revoke_time: None,
    };
    d.secret(SecretOp::PutToken(t.clone()));
    Ok((t, secret))
}

/// Parses the role id of a role name of this organization.
pub fn role_id_of(org: Uuid, name: &str) -> Option<String> {
    names::role(name).filter(|(o, _)| *o == org).map(|(_, r)| r)
}
