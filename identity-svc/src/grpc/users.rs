//! `identity.v1.Users`.

use shared::email::Email;
use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, command, convert, etag, respond, to_status, ts};
use crate::auth::{self, Entry, Need};
use crate::domain::model::Principal;
use crate::domain::names;
use crate::domain::permissions::catalog::keys;
use crate::error::Error;
use crate::method;
use crate::rules;

mod delivery;
mod invite;
mod listing;

use invite::{invite_needs, parse_invite};

fn user_id(v: &mut Violations, field: &str, org: Uuid, name: &str) -> Option<Uuid> {
    v.check(
        field,
        names::user(name)
            .filter(|(o, _)| *o == org)
            .map(|(_, u)| u)
            .ok_or("must be organizations/{organization}/users/{user} of this organization"),
    )
}

/// The change an UpdateUser request asks for. An empty mask changes `display_name` only (the
/// one field there was before `email`), so a client that does not know `email` never sends
/// one; `email` is named to be set and cannot be cleared.
fn user_update(
    v: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    u: &pb::User,
) -> rules::users::UserUpdate {
    let paths = if mask.is_none_or(|m| m.paths.is_empty()) {
        vec!["display_name".to_owned()]
    } else {
        v.mask_paths(mask, &["display_name", "email"])
    };
    let named = |f: &str| paths.iter().any(|p| p == f);
    let display_name =
        named("display_name").then(|| v.optional_text("user.display_name", &u.display_name, 100));
    let email = if !named("email") {
        None
    } else if u.email.trim().is_empty() {
        v.add("user.email", "cannot be cleared: an email, once set, stays");
        None
    } else {
        v.check("user.email", Email::parse(&u.email))
    };
    rules::users::UserUpdate {
        display_name,
        email,
    }
}

#[tonic::async_trait]
impl pb::users_server::Users for Api {
    async fn invite_user(
        &self,
        request: Request<pb::InviteUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let a = self
            .enter(request, method!("Users/InviteUser"), "parent", |r| {
                &r.parent
            })
            .await?;
        let (org, r) = (a.org, &a.req);
        let invite = command(|v| parse_invite(v, org, r))?;
        let auth = {
            let st = a.handle.read();
            a.entry
                .require(&st, &invite_needs(&st, &invite))
                .map_err(to_status)?
        };
        let request_id = (!r.request_id.is_empty()).then_some(r.request_id.as_str());
        if let Some(existing) = self.replayed_user(org, request_id).await? {
            return Ok(existing);
        }
        let c = match self
            .core
            .mutate(&auth, org, request_id, |d| {
                rules::invitations::invite(d, &invite)
            })
            .await
        {
            Ok(c) => c,
            Err(e) => return self.raced_user(org, request_id, e).await,
        };
        let (user, mail) = c.value;
        self.deliver_now(mail).await;
        let (answer, invited) = {
            let st = a.handle.read();
            let u = st.users.get(&user.id).unwrap_or(&user);
            (convert::user(&st, u), st.invitations.contains_key(&user.id))
        };
        let answer = self.with_delivery(org, user.id, invited, answer).await;
        Ok(respond(answer, c.seq))
    }

    async fn resend_invitation(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let a = self
            .enter(request, method!("Users/ResendInvitation"), "name", |r| {
                &r.name
            })
            .await?;
        let id = command(|v| user_id(v, "name", a.org, &a.req.name))?;
        let auth = {
            let st = a.handle.read();
            let need = Need::Any(vec![
                Need::Perm(keys::USERS_MANAGE, None, None),
                Need::Perm(keys::USERS_MANAGE_MEMBER_ACCESS, None, None),
                Need::PermAnywhere(keys::END_USERS_MANAGE_ACCESS),
            ]);
            a.entry.require(&st, &need).map_err(to_status)?
        };
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::invitations::resend_invitation(d, id)
            })
            .await
            .map_err(to_status)?;
        let (user, mail) = c.value;
        self.deliver_now(mail).await;
        let (answer, invited) = {
            let st = a.handle.read();
            let u = st.users.get(&id).unwrap_or(&user);
            (convert::user(&st, u), st.invitations.contains_key(&id))
        };
        let answer = self.with_delivery(a.org, id, invited, answer).await;
        Ok(respond(answer, c.seq))
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        self.admit_unauthenticated(&request)?;
        let r = request.into_inner();
        let display_name = command(|v| {
            if r.invitation_token.is_empty() {
                v.add("invitation_token", "is required");
            }
            v.check("password", auth::check_password_policy(&r.password));
            Some(v.optional_text("display_name", &r.display_name, 100))
        })?;
        let name = (!display_name.is_empty()).then_some(display_name);
        let (org, c) = self
            .core
            .accept_invitation(&r.invitation_token, r.password, |d, token, hash| {
                rules::invitations::accept_invitation(d, token, hash.to_owned(), name.clone())
            })
            .await
            .map_err(to_status)?;
        let handle = self.core.org(org).await.map_err(to_status)?;
        let st = handle.read();
        Ok(respond(
            pb::AcceptInvitationResponse {
                user: Some(convert::user(&st, &c.value)),
            },
            c.seq,
        ))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let a = self
            .enter(request, method!("Users/CreateUser"), "parent", |r| {
                &r.parent
            })
            .await?;
        let r = &a.req;
        let u = r.user.clone().unwrap_or_default();
        let (email, display_name) = command(|v| {
            let email = v.check("user.email", Email::parse(&u.email));
            let display_name = v.optional_text("user.display_name", &u.display_name, 100);
            if !r.initial_password.is_empty() {
                v.check(
                    "initial_password",
                    auth::check_password_policy(&r.initial_password),
                );
            }
            Some((email?, display_name))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let request_id = (!r.request_id.is_empty()).then_some(r.request_id.as_str());
        if let Some(existing) = self.replayed_user(a.org, request_id).await? {
            return Ok(existing);
        }
        let hash = if r.initial_password.is_empty() {
            None
        } else {
            Some(
                self.core
                    .hash_password(r.initial_password.clone())
                    .await
                    .map_err(to_status)?,
            )
        };
        let active = r.active.unwrap_or(true);
        let c = match self
            .core
            .mutate(&auth, a.org, request_id, |d| {
                rules::users::create_user(
                    d,
                    email.clone(),
                    display_name.clone(),
                    active,
                    hash.clone(),
                )
            })
            .await
        {
            Ok(c) => c,
            Err(e) => return self.raced_user(a.org, request_id, e).await,
        };
        let st = a.handle.read();
        Ok(respond(convert::user(&st, &c.value), c.seq))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let a = self
            .enter(request, method!("Users/GetUser"), "name", |r| &r.name)
            .await?;
        let id = command(|v| user_id(v, "name", a.org, &a.req.name))?;
        let (answer, invited, seq) = {
            let st = a.handle.read();
            a.entry
                .require(&st, &see_user(&st, id))
                .map_err(to_status)?;
            let u = rules::lookups::user(&st, id).map_err(to_status)?;
            (
                convert::user(&st, u),
                st.invitations.contains_key(&id),
                st.seq,
            )
        };
        let answer = self.with_delivery(a.org, id, invited, answer).await;
        Ok(respond(answer, seq))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let a = self
            .enter(request, method!("Users/ListUsers"), "parent", |r| &r.parent)
            .await?;
        let query = command(|v| Some(listing::parse_query(v, a.org, &a.req)))?;
        let st = a.handle.read();
        let (need, visible_stages) =
            listing::visibility(&query, &st, a.entry.principal(), a.entry.now());
        a.entry.require(&st, &need).map_err(to_status)?;
        Ok(respond(listing::page(&query, &st, &visible_stages), st.seq))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let a = self
            .enter(request, method!("Users/UpdateUser"), "user.name", |r| {
                r.user.as_ref().map_or("", |u| u.name.as_str())
            })
            .await?;
        let u = a.req.user.clone().unwrap_or_default();
        let (id, change) = command(|v| {
            let id = user_id(v, "user.name", a.org, &u.name);
            Some((id?, user_update(v, a.req.update_mask.as_ref(), &u)))
        })?;
        let auth = {
            let st = a.handle.read();
            let manage = Need::Perm(keys::USERS_MANAGE, None, None);
            let need = if change.email.is_some() {
                manage
            } else {
                Need::Any(vec![manage, Need::Is(Principal::User(id))])
            };
            a.entry.require(&st, &need).map_err(to_status)?
        };
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::users::update_user(d, id, &change, etag(&u.etag))
            })
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::user(&st, &c.value), c.seq))
    }

    async fn activate_user(
        &self,
        request: Request<pb::ActivateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let a = self
            .enter(request, method!("Users/ActivateUser"), "name", |r| &r.name)
            .await?;
        let id = command(|v| user_id(v, "name", a.org, &a.req.name))?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let e = a.req.etag.clone();
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::users::activate_user(d, id, etag(&e))
            })
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::user(&st, &c.value), c.seq))
    }

    async fn deactivate_user(
        &self,
        request: Request<pb::DeactivateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let a = self
            .enter(request, method!("Users/DeactivateUser"), "name", |r| {
                &r.name
            })
            .await?;
        let id = command(|v| user_id(v, "name", a.org, &a.req.name))?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let e = a.req.etag.clone();
        let me = auth.principal();
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::users::deactivate_user(d, me, id, etag(&e))
            })
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::user(&st, &c.value), c.seq))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let a = self
            .enter(request, method!("Users/DeleteUser"), "name", |r| &r.name)
            .await?;
        let id = command(|v| user_id(v, "name", a.org, &a.req.name))?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let e = a.req.etag.clone();
        let me = auth.principal();
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::users::delete_user(d, me, id, etag(&e))
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteUserResponse {}, c.seq))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let client = self.admit_unauthenticated(&request)?;
        let r = request.into_inner();
        let (org, email) = command(|v| {
            let org = v.check(
                "organization",
                names::org(&r.organization).ok_or("must be organizations/{organization}"),
            );
            let email = v.check("email", Email::parse(&r.email));
            if r.password.is_empty() {
                v.add("password", "is required");
            }
            Some((org?, email?))
        })?;
        let session = self
            .core
            .login(org, &email, r.password, client)
            .await
            .map_err(to_status)?;
        let handle = self.core.org(org).await.map_err(to_status)?;
        let st = handle.read();
        let user = st.users.get(&session.user).map(|u| convert::user(&st, u));
        Ok(Response::new(pb::LoginResponse {
            session_token: session.secret,
            expire_time: ts(session.expire_time),
            user,
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        const M: &str = method!("Users/Logout");
        let caller = self.caller(request.metadata(), M).await?;
        let entry = Entry::admit(M, &caller, None, None, self.core.now()).map_err(to_status)?;
        let auth = entry.authorized().map_err(to_status)?;
        self.core.logout(&auth).await.map_err(to_status)?;
        Ok(Response::new(pb::LogoutResponse {}))
    }
}

/// Who may see user `id` (GetUser).
fn see_user(st: &crate::domain::state::OrgState, id: Uuid) -> Need {
    let mut any = vec![
        Need::Is(Principal::User(id)),
        Need::Perm(keys::USERS_MANAGE, None, None),
    ];
    if st.is_member(id) {
        any.push(Need::Perm(keys::USERS_VIEW_MEMBERS, None, None));
    }
    if st.is_end_user(id) {
        any.push(Need::PermAnywhere(keys::END_USERS_VIEW));
    }
    Need::Any(any)
}

impl Api {
    /// The client address of a public, password-checking call (Login, AcceptInvitation), once
    /// the per-address rate limit admitted it.
    pub(super) fn admit_unauthenticated<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Option<std::net::IpAddr>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let client = self.address_limits.client(peer, request.metadata());
        self.address_limits.check(client)?;
        Ok(client)
    }

    /// A create that failed with `error`: if a concurrent request with the same `request_id`
    /// was first (the failure is then a duplicate key, or the email that request took), the
    /// user that request created, as a retry would get it (AIP-155); else the error.
    async fn raced_user(
        &self,
        org: Uuid,
        request_id: Option<&str>,
        error: Error,
    ) -> Result<Response<pb::User>, Status> {
        self.replayed_user(org, request_id)
            .await?
            .ok_or_else(|| to_status(error))
    }

    /// For a retried create with a known `request_id`: the user it created, as it is now.
    async fn replayed_user(
        &self,
        org: Uuid,
        request_id: Option<&str>,
    ) -> Result<Option<Response<pb::User>>, Status> {
        if request_id.is_none() {
            return Ok(None);
        }
        let handle = self.core.org(org).await.map_err(to_status)?;
        let found = self
            .replayed(org, &handle, request_id, "user", names::user)
            .await?;
        let Some((id, target)) = found else {
            return Ok(None);
        };
        let st = handle.read();
        match st.users.get(&id) {
            Some(u) => Ok(Some(respond(convert::user(&st, u), st.seq))),
            None => Err(to_status(Error::NotFound(target))),
        }
    }
}
