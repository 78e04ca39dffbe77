//! The rules of users: creating one directly, renaming, giving an email to a user without one,
//! activating, deactivating and deleting (never yourself, never the last ACTIVE
//! Administrator); an email belongs to one user and, once set, does not change.

use shared::email::Email;
use uuid::Uuid;

use crate::core::Draft;
use crate::core::SecretOp;
use crate::domain::model::{Assignment, Entity, Principal, User, UserState};
use crate::domain::names::fmt;
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::rules::access::{protect_last_admin, remove_assignment, revoke_end_user_role};
use crate::rules::groups::drop_members;
use crate::rules::lookups::{check_etag, org_id, user};

pub(super) fn refuse_existing_email(st: &OrgState, email: &Email) -> Result<(), Error> {
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
        email: Some(email),
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

/// What UpdateUser changes: each field that is given.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// The new display name.
    pub display_name: Option<String>,
    /// The email of a user without one (the user's own email again changes nothing).
    pub email: Option<Email>,
}

/// Refuses `email` for user `u` unless `u` has no email and no other user holds it, or it is
/// already theirs: an email is set once (at creation, or later for an empty-email profile).
fn check_new_email(st: &OrgState, u: &User, email: &Email) -> Result<(), Error> {
    match &u.email {
        Some(own) if own == email => Ok(()),
        Some(own) => Err(Error::precondition(
            "EMAIL_ALREADY_SET",
            format!("the user's email is {own}; an email, once set, does not change"),
        )),
        None if st.users_by_email.contains_key(email.as_str()) => Err(Error::exists(
            "EMAIL_TAKEN",
            format!("another user has email {email}"),
        )),
        None => Ok(()),
    }
}

/// Changes a user's display name, or gives a user without an email one.
pub fn update_user(
    d: &mut Draft<'_>,
    id: Uuid,
    change: &UserUpdate,
    etag: Option<&str>,
) -> Result<User, Error> {
    let before = user(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    let mut after = before.clone();
    if let Some(name) = &change.display_name {
        after.display_name.clone_from(name);
    }
    if let Some(email) = &change.email {
        check_new_email(d.state(), &before, email)?;
        after.email = Some(email.clone());
    }
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
        drop_members(d, g, &[id]);
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
    crate::rules::identity_providers::delete_profiles_of(d, id);
    d.change(
        "user.deleted",
        fmt::user(o, id),
        Some(Entity::User(before)),
        None,
        vec![id],
    );
    d.secret(SecretOp::DeleteInvitationTokens { user: id });
    d.secret(SecretOp::CancelMail { user: id });
    d.secret(SecretOp::DeleteCredentials { user: id });
    d.secret(SecretOp::RevokeTokensOf {
        principal: p,
        at: d.now,
    });
    Ok(())
}
