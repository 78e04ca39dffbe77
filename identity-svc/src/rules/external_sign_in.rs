//! Who the person of a verified ID token is (ODC's rules, `identity_providers.proto` says why):
//! the user an existing provider profile links to; else an existing user linked by the
//! provider's linking field when the token's email is trusted; else a new end-user profile when
//! the provider auto-creates (without an email when the token's is taken or missing). A sign-in
//! never grants access; a user holding organization roles is let in only with a trusted email
//! that is theirs; an INVITED user becomes ACTIVE; the person's MAPPED group memberships follow
//! the token's claims (`group_mappings`).

use shared::email::Email;
use uuid::Uuid;

use crate::core::oidc::IdTokenClaims;
use crate::core::{Draft, SecretOp};
use crate::domain::model::{
    EmailTrust, Entity, IdentityProvider, Principal, ProfileLinking, ProviderProfile, User,
    UserState,
};
use crate::domain::names::fmt;
use crate::domain::state::OrgState;
use crate::error::{Error, Own};
use crate::rules::lookups::org_id;

/// Longest display name of an auto-created user.
const NAME_MAX: usize = 100;

/// The outcome of a sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user signed in, after the sign-in.
    pub user: User,
    /// Whether the sign-in created the user.
    pub created: bool,
}

/// UNAUTHENTICATED with `reason`.
fn refused(reason: &'static str, message: impl Into<String>) -> Error {
    Error::Own(Own::SignInRefused {
        reason,
        message: message.into(),
    })
}

/// The token's email when the provider trusts it for linking, normalized.
fn trusted_email(p: &IdentityProvider, t: &IdTokenClaims) -> Option<Email> {
    let trusted = match p.email_trust {
        EmailTrust::None => false,
        EmailTrust::VerifiedClaim => t.email_verified,
        EmailTrust::All => true,
    };
    if !trusted {
        return None;
    }
    t.email.as_deref().and_then(|e| Email::parse(e).ok())
}

/// The existing user a first sign-in links to, by the provider's linking field.
fn linked_user(
    st: &OrgState,
    p: &IdentityProvider,
    t: &IdTokenClaims,
    trusted: Option<&Email>,
) -> Option<Uuid> {
    let trusted = trusted?;
    let by = match p.profile_linking {
        ProfileLinking::None => return None,
        ProfileLinking::Email => trusted.clone(),
        // The built-in provider's user name is the email address.
        ProfileLinking::Username => Email::parse(t.preferred_username.as_deref()?).ok()?,
    };
    st.users_by_email.get(by.as_str()).copied()
}

/// Creates an ACTIVE end-user profile (no role) for the person of `t`, with the token's email
/// when it is usable and no other user holds it, else without one (ODC's empty email; the
/// provider profile keeps the token's address): linking did not find that other user, so this
/// is a different person as far as the organization can tell.
fn auto_create(d: &mut Draft<'_>, p: &IdentityProvider, t: &IdTokenClaims) -> Result<Uuid, Error> {
    if !p.auto_create_profiles {
        return Err(refused(
            "NO_LINKED_USER",
            format!(
                "no user is linked to this {} account and the provider does not create profiles",
                p.display_name
            ),
        ));
    }
    let email = t
        .email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .filter(|e| !d.state().users_by_email.contains_key(e.as_str()));
    let name: String = t
        .name
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(NAME_MAX)
        .collect();
    let u = User {
        id: Uuid::now_v7(),
        email,
        display_name: name,
        state: UserState::Active,
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
    Ok(u.id)
}

/// Lets `id` in: refuses an INACTIVE user and a user with organization roles without a
/// trusted email of theirs (a user without an email never has one); activates an INVITED one
/// (the invitation is used up).
fn admit(d: &mut Draft<'_>, id: Uuid, trusted: Option<&Email>) -> Result<User, Error> {
    let st = d.state();
    let u = st
        .users
        .get(&id)
        .cloned()
        .ok_or_else(|| refused("NO_LINKED_USER", "the linked user no longer exists"))?;
    if u.state == UserState::Inactive {
        return Err(refused("USER_INACTIVE", "the user is deactivated"));
    }
    let member = st
        .assignments
        .get(&Principal::User(id))
        .is_some_and(|a| !a.is_empty());
    let own = trusted.is_some_and(|t| u.email.as_ref() == Some(t));
    if member && !own {
        return Err(refused(
            "EMAIL_NOT_VERIFIED",
            "a user with organization roles signs in with an external provider only with a \
             verified email that is theirs",
        ));
    }
    if u.state != UserState::Invited {
        return Ok(u);
    }
    let o = org_id(d);
    if let Some(inv) = d.state().invitations.get(&id).cloned() {
        d.change(
            "invitation.accepted",
            fmt::user(o, id),
            Some(Entity::Invitation(inv)),
            None,
            vec![id],
        );
    }
    let mut after = u.clone();
    after.state = UserState::Active;
    after.registered = true;
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "user.activated",
        fmt::user(o, id),
        Some(Entity::User(u)),
        Some(Entity::User(after.clone())),
        vec![id],
    );
    d.secret(SecretOp::DeleteInvitationTokens { user: id });
    Ok(after)
}

/// Records the provider profile of this sign-in (linked now, or signed in again).
fn record_profile(
    d: &mut Draft<'_>,
    provider: Uuid,
    user: Uuid,
    t: &IdTokenClaims,
    before: Option<ProviderProfile>,
) {
    let after = ProviderProfile {
        provider,
        subject: t.subject.clone(),
        user,
        username: t.preferred_username.clone().unwrap_or_default(),
        email: t.email.clone().unwrap_or_default(),
        email_verified: t.email_verified,
        first_login_time: before.as_ref().map_or(d.now, |b| b.first_login_time),
        last_login_time: d.now,
    };
    let action = if before.is_some() {
        "provider_profile.signed_in"
    } else {
        "provider_profile.linked"
    };
    d.change(
        action,
        fmt::provider_profile(org_id(d), provider, &t.subject),
        before.map(Entity::ProviderProfile),
        Some(Entity::ProviderProfile(after)),
        vec![user],
    );
}

/// Signs in the person of the verified token `t` with provider `provider`.
pub fn sign_in(d: &mut Draft<'_>, provider: Uuid, t: &IdTokenClaims) -> Result<SignedIn, Error> {
    let p = d
        .state()
        .identity_providers
        .get(&provider)
        .cloned()
        .ok_or_else(|| {
            refused(
                "UNKNOWN_IDENTITY_PROVIDER",
                "the identity provider was deleted",
            )
        })?;
    let trusted = trusted_email(&p, t);
    let existing = d
        .state()
        .provider_profiles
        .get(&(provider, t.subject.clone()))
        .cloned();
    let (user, created) = match &existing {
        Some(x) => (x.user, false),
        None => match linked_user(d.state(), &p, t, trusted.as_ref()) {
            Some(u) => (u, false),
            None => (auto_create(d, &p, t)?, true),
        },
    };
    let user = admit(d, user, trusted.as_ref())?;
    record_profile(d, provider, user.id, t, existing);
    crate::rules::group_mappings::remap(d, provider, user.id, &t.claims);
    Ok(SignedIn { user, created })
}
