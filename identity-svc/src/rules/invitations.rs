//! Invitations: inviting a user with everything the invitation carries, resending, accepting,
//! and issuing the secret (one open invitation per user) with the message that carries it,
//! queued in the mail outbox by the same commit.

use uuid::Uuid;

use shared::email::Email;
use shared::secrets::{TokenEncoding, hash_token, new_token};

use crate::auth::INVITATION_PREFIX;
use crate::core::Draft;
use crate::core::SecretOp;
use crate::core::outbox::invitation_mail;
use crate::domain::model::{Entity, Invitation, Micros, Principal, ScopeKey, User, UserState};
use crate::domain::names::fmt;
use crate::error::Error;
use crate::rules::access::{assign_role, grant_end_user_role};
use crate::rules::groups::add_members;
use crate::rules::lookups::{app, end_user_role, group, org_id, role, stage, user};
use crate::rules::users::refuse_existing_email;

/// How long an invitation is valid: 7 days.
pub const INVITATION_TTL: Micros = 7 * 24 * 3_600 * 1_000_000;

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

/// Invites a user with everything the invitation carries. Returns the user and the id of the
/// queued invitation message.
pub fn invite(d: &mut Draft<'_>, inv: &Invite) -> Result<(User, Uuid), Error> {
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
        email: Some(inv.email.clone()),
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
        assign_role(d, p, r, ScopeKey::Organization, None)?;
    }
    for (a, r) in &inv.app_roles {
        assign_role(d, p, r, ScopeKey::App(*a), None)?;
    }
    for (r, s) in &inv.end_user_roles {
        grant_end_user_role(d, u.id, *r, s)?;
    }
    for g in &inv.groups {
        add_members(d, *g, &[u.id])?;
    }
    let mail = issue_invitation(d, u.id);
    Ok((u, mail))
}

/// Replaces any open invitation of `user` with a new one and queues the message carrying its
/// secret (dropping the undelivered message of the one it replaces); returns the message's id.
fn issue_invitation(d: &mut Draft<'_>, user: Uuid) -> Uuid {
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
    let secret = new_token(INVITATION_PREFIX, TokenEncoding::Base64Url);
    d.secret(SecretOp::DeleteInvitationTokens { user });
    d.secret(SecretOp::PutInvitationToken {
        hash: hash_token(&secret),
        invitation: inv.id,
        user,
        expire_time: inv.expire_time,
    });
    let st = d.state();
    let to = st
        .users
        .get(&user)
        .map(|u| u.email_str().to_owned())
        .unwrap_or_default();
    let (mail, queue) = invitation_mail(
        &to,
        &st.org.display_name,
        user,
        inv.id,
        &secret,
        (d.now, inv.expire_time),
    );
    d.secret(SecretOp::CancelMail { user });
    d.secret(queue);
    mail
}

/// Issues a new invitation to an INVITED user, invalidating the previous one (and dropping its
/// message if still undelivered). Returns the user and the id of the queued message.
pub fn resend_invitation(d: &mut Draft<'_>, id: Uuid) -> Result<(User, Uuid), Error> {
    let u = user(d.state(), id)?.clone();
    if u.state != UserState::Invited {
        return Err(Error::precondition(
            "NOT_INVITED",
            "only INVITED users have an invitation to resend",
        ));
    }
    let mail = issue_invitation(d, id);
    Ok((u, mail))
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
