//! `identity.v1.ServiceAccounts`: non-human principals and their bearer tokens.
//!
//! Every RPC needs `api_clients.manage` at organization scope (a table rule). A token's secret
//! is returned once, by CreateServiceAccountToken; the store keeps only its hash.

use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, command, convert, respond, to_status};
use crate::domain::model::Micros;
use crate::domain::names::{self, fmt};
use crate::error::Error;
use crate::method;
use crate::rules;

/// Longest service-account name.
const NAME_MAX: usize = 100;
/// Token lifetime when none is asked: 90 days, in seconds.
const DEFAULT_TTL_SECONDS: i64 = 90 * 24 * 3600;
/// Shortest token lifetime, in seconds.
const MIN_TTL_SECONDS: i64 = 60;
/// Longest token lifetime (365 days), in seconds.
const MAX_TTL_SECONDS: i64 = 31_536_000;

/// The account id of a service-account name of organization `org`.
fn account_id(v: &mut Violations, field: &str, org: Uuid, name: &str) -> Option<Uuid> {
    v.check(
        field,
        names::service_account(name)
            .filter(|(o, _)| *o == org)
            .map(|(_, s)| s)
            .ok_or(
                "must be organizations/{organization}/serviceAccounts/{account} of this organization",
            ),
    )
}

/// A token lifetime in microseconds: 0 is the default, otherwise 60 s to 365 days.
fn ttl(v: &mut Violations, seconds: i64) -> Micros {
    let s = if seconds == 0 {
        DEFAULT_TTL_SECONDS
    } else {
        seconds
    };
    if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&s) {
        v.add(
            "ttl_seconds",
            format!("must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS} seconds (0: 90 days)"),
        );
    }
    s.saturating_mul(1_000_000)
}

/// NOT_FOUND unless the organization has service account `id`.
fn require_account(st: &crate::domain::state::OrgState, id: Uuid) -> Result<(), Status> {
    if st.service_accounts.contains_key(&id) {
        Ok(())
    } else {
        Err(to_status(Error::NotFound(fmt::service_account(
            st.org.id, id,
        ))))
    }
}

#[tonic::async_trait]
impl pb::service_accounts_server::ServiceAccounts for Api {
    async fn create_service_account(
        &self,
        request: Request<pb::CreateServiceAccountRequest>,
    ) -> Result<Response<pb::ServiceAccount>, Status> {
        let a = self
            .enter(
                request,
                method!("ServiceAccounts/CreateServiceAccount"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let name = command(|v| {
            if names::org(&a.req.parent).is_none() {
                v.add("parent", "must be organizations/{organization}");
            }
            Some(
                v.required_text(
                    "service_account.display_name",
                    a.req
                        .service_account
                        .as_ref()
                        .map_or("", |s| s.display_name.as_str()),
                    NAME_MAX,
                ),
            )
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::service_accounts::create_service_account(d, name.clone())
            })
            .await
            .map_err(to_status)?;
        Ok(respond(convert::service_account(a.org, &c.value), c.seq))
    }

    async fn list_service_accounts(
        &self,
        request: Request<pb::ListServiceAccountsRequest>,
    ) -> Result<Response<pb::ListServiceAccountsResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("ServiceAccounts/ListServiceAccounts"),
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
        let mut accounts: Vec<_> = st
            .service_accounts
            .values()
            .map(|s| (s.display_name.to_lowercase(), s.id, s))
            .collect();
        accounts.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
        let service_accounts = accounts
            .into_iter()
            .map(|(_, _, s)| convert::service_account(a.org, s))
            .collect();
        Ok(respond(
            pb::ListServiceAccountsResponse { service_accounts },
            st.seq,
        ))
    }

    async fn delete_service_account(
        &self,
        request: Request<pb::DeleteServiceAccountRequest>,
    ) -> Result<Response<pb::DeleteServiceAccountResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("ServiceAccounts/DeleteServiceAccount"),
                "name",
                |r| &r.name,
            )
            .await?;
        let id = command(|v| account_id(v, "name", a.org, &a.req.name))?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::service_accounts::delete_service_account(d, id)
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteServiceAccountResponse {}, c.seq))
    }

    async fn create_service_account_token(
        &self,
        request: Request<pb::CreateServiceAccountTokenRequest>,
    ) -> Result<Response<pb::CreateServiceAccountTokenResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("ServiceAccounts/CreateServiceAccountToken"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let (id, ttl) = command(|v| {
            let id = account_id(v, "parent", a.org, &a.req.parent);
            let ttl = ttl(v, a.req.ttl_seconds);
            Some((id?, ttl))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        // Only a credential is written (no entity changes, hence no change event).
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::service_accounts::create_service_account_token(d, id, ttl)
            })
            .await
            .map_err(to_status)?;
        let (record, secret) = c.value;
        Ok(respond(
            pb::CreateServiceAccountTokenResponse {
                secret,
                token: Some(convert::token(&record)),
            },
            c.seq,
        ))
    }

    async fn list_service_account_tokens(
        &self,
        request: Request<pb::ListServiceAccountTokensRequest>,
    ) -> Result<Response<pb::ListServiceAccountTokensResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("ServiceAccounts/ListServiceAccountTokens"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let id = command(|v| account_id(v, "parent", a.org, &a.req.parent))?;
        let seq = {
            let st = a.handle.read();
            require_account(&st, id)?;
            st.seq
        };
        let tokens = self
            .core
            .service_account_tokens(&auth, a.org, id)
            .await
            .map_err(to_status)?;
        Ok(respond(
            pb::ListServiceAccountTokensResponse {
                tokens: tokens.iter().map(convert::token).collect(),
            },
            seq,
        ))
    }

    async fn revoke_service_account_token(
        &self,
        request: Request<pb::RevokeServiceAccountTokenRequest>,
    ) -> Result<Response<pb::RevokeServiceAccountTokenResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("ServiceAccounts/RevokeServiceAccountToken"),
                "name",
                |r| &r.name,
            )
            .await?;
        let parsed = names::service_account_token(&a.req.name).filter(|(o, _, _)| *o == a.org);
        let Some((_, account, token)) = parsed else {
            return Err(to_status(Error::field(
                "name",
                "must be organizations/{organization}/serviceAccounts/{account}/tokens/{token} \
                 of this organization",
            )));
        };
        // The revocation is a credential-table write of its own, not an entity change; the
        // table rule is the whole authorization.
        let auth = a.entry.authorized().map_err(to_status)?;
        let seq = {
            let st = a.handle.read();
            require_account(&st, account)?;
            st.seq
        };
        self.core
            .revoke_service_account_token(&auth, a.org, account, token, &a.req.name)
            .await
            .map_err(to_status)?;
        Ok(respond(pb::RevokeServiceAccountTokenResponse {}, seq))
    }
}
