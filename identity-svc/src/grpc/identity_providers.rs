//! `identity.v1.IdentityProviders`: external OpenID Connect providers of an organization, and
//! signing in with an ID token of one of them.
//!
//! The CRUD RPCs need `auth.manage` at organization scope (a table rule). The sign-in is public
//! (the ID token is the credential) and held by the per-address rate limit of Login.

use shared::proto::identity::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Api, command, convert, etag, respond, to_status, ts};
use crate::domain::names;
use crate::error::Error;
use crate::method;
use crate::rules;
use crate::rules::identity_providers::identity_provider;

mod decode;

use decode::{PATHS, fields, provider_id};

/// Longest ID token accepted.
const ID_TOKEN_MAX: usize = 16 * 1024;
/// Longest nonce accepted.
const NONCE_MAX: usize = 200;

/// The mask paths of an update, with the members of the `assignment` oneof read as it.
fn update_paths(
    v: &mut shared::violations::Violations,
    mask: Option<&prost_types::FieldMask>,
) -> Vec<String> {
    let mut mask = mask.cloned();
    if let Some(m) = mask.as_mut() {
        for p in &mut m.paths {
            if p == "organization_scope" || p == "stage" {
                "assignment".clone_into(p);
            }
        }
        m.paths.dedup();
    }
    v.mask_paths(mask.as_ref(), PATHS)
}

#[tonic::async_trait]
impl pb::identity_providers_server::IdentityProviders for Api {
    async fn create_identity_provider(
        &self,
        request: Request<pb::CreateIdentityProviderRequest>,
    ) -> Result<Response<pb::IdentityProvider>, Status> {
        let a = self
            .enter(
                request,
                method!("IdentityProviders/CreateIdentityProvider"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let p = a.req.identity_provider.clone().unwrap_or_default();
        let accepts = |s: &str| self.core.oidc.accepts_scheme(s);
        let f = command(|v| {
            if names::org(&a.req.parent).is_none() {
                v.add("parent", "must be organizations/{organization}");
            }
            let all: Vec<String> = PATHS.iter().map(|s| (*s).to_owned()).collect();
            Some(fields(v, a.org, &p, &all, &accepts))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::identity_providers::create_identity_provider(d, f.clone())
            })
            .await
            .map_err(to_status)?;
        Ok(respond(convert::identity_provider(a.org, &c.value), c.seq))
    }

    async fn get_identity_provider(
        &self,
        request: Request<pb::GetIdentityProviderRequest>,
    ) -> Result<Response<pb::IdentityProvider>, Status> {
        let a = self
            .enter(
                request,
                method!("IdentityProviders/GetIdentityProvider"),
                "name",
                |r| &r.name,
            )
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let id = command(|v| provider_id(v, "name", a.org, &a.req.name))?;
        let st = a.handle.read();
        let p = identity_provider(&st, id).map_err(to_status)?;
        Ok(respond(convert::identity_provider(a.org, p), st.seq))
    }

    async fn list_identity_providers(
        &self,
        request: Request<pb::ListIdentityProvidersRequest>,
    ) -> Result<Response<pb::ListIdentityProvidersResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("IdentityProviders/ListIdentityProviders"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        a.entry.authorized().map_err(to_status)?;
        if names::org(&a.req.parent).is_none() {
            return Err(to_status(Error::field(
                "parent",
                "must be organizations/{organization}",
            )));
        }
        let st = a.handle.read();
        let mut all: Vec<_> = st.identity_providers.values().collect();
        all.sort_by_key(|p| (p.display_name.to_lowercase(), p.id));
        let identity_providers = all
            .into_iter()
            .map(|p| convert::identity_provider(a.org, p))
            .collect();
        Ok(respond(
            pb::ListIdentityProvidersResponse { identity_providers },
            st.seq,
        ))
    }

    async fn update_identity_provider(
        &self,
        request: Request<pb::UpdateIdentityProviderRequest>,
    ) -> Result<Response<pb::IdentityProvider>, Status> {
        let a = self
            .enter(
                request,
                method!("IdentityProviders/UpdateIdentityProvider"),
                "identity_provider.name",
                |r| r.identity_provider.as_ref().map_or("", |p| p.name.as_str()),
            )
            .await?;
        let p = a.req.identity_provider.clone().unwrap_or_default();
        let accepts = |s: &str| self.core.oidc.accepts_scheme(s);
        let (id, f) = command(|v| {
            let id = provider_id(v, "identity_provider.name", a.org, &p.name);
            let paths = update_paths(v, a.req.update_mask.as_ref());
            let f = fields(v, a.org, &p, &paths, &accepts);
            Some((id?, f))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::identity_providers::update_identity_provider(d, id, f.clone(), etag(&p.etag))
            })
            .await
            .map_err(to_status)?;
        Ok(respond(convert::identity_provider(a.org, &c.value), c.seq))
    }

    async fn delete_identity_provider(
        &self,
        request: Request<pb::DeleteIdentityProviderRequest>,
    ) -> Result<Response<pb::DeleteIdentityProviderResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("IdentityProviders/DeleteIdentityProvider"),
                "name",
                |r| &r.name,
            )
            .await?;
        let id = command(|v| provider_id(v, "name", a.org, &a.req.name))?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::identity_providers::delete_identity_provider(d, id, etag(&a.req.etag))
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteIdentityProviderResponse {}, c.seq))
    }

    async fn sign_in_with_identity_provider(
        &self,
        request: Request<pb::SignInWithIdentityProviderRequest>,
    ) -> Result<Response<pb::SignInWithIdentityProviderResponse>, Status> {
        let _client = self.admit_unauthenticated(&request)?;
        let r = request.into_inner();
        let (org, provider, nonce) = command(|v| {
            let parsed = v.check(
                "identity_provider",
                names::identity_provider(&r.identity_provider)
                    .ok_or("must be organizations/{organization}/identityProviders/{provider}"),
            );
            if r.id_token.is_empty() {
                v.add("id_token", "is required");
            } else if r.id_token.len() > ID_TOKEN_MAX {
                v.add("id_token", format!("must be at most {ID_TOKEN_MAX} bytes"));
            }
            let nonce = v.optional_text("nonce", &r.nonce, NONCE_MAX);
            let (org, provider) = parsed?;
            Some((org, provider, (!nonce.is_empty()).then_some(nonce)))
        })?;
        let (session, c) = self
            .core
            .sign_in_with_provider(org, provider, &r.id_token, nonce, |d, claims| {
                rules::external_sign_in::sign_in(d, provider, claims).map(|s| (s.user.id, s))
            })
            .await
            .map_err(to_status)?;
        let handle = self.core.org(org).await.map_err(to_status)?;
        let st = handle.read();
        let user = Some(match st.users.get(&session.user) {
            Some(u) => convert::user(&st, u),
            None => convert::user(&st, &c.value.user),
        });
        Ok(respond(
            pb::SignInWithIdentityProviderResponse {
                session_token: session.secret,
                expire_time: ts(session.expire_time),
                user,
                user_created: c.value.created,
            },
            c.seq,
        ))
    }
}
