//! The identity side of the propagation suite: clients as the dataset's administrator service
//! account, and the set-up calls (roles, the portal-sync reader token, bulk assignments).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use identity_svc::domain::names::fmt;
use shared::proto::identity::v1 as pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use super::SETUP_IN_FLIGHT;
use crate::dataset::Dataset;
use crate::identity_child::{Access, Bearer, Server};

type Roles = pb::roles_client::RolesClient<InterceptedService<Channel, Bearer>>;
type Users = pb::users_client::UsersClient<InterceptedService<Channel, Bearer>>;
type ServiceAccounts =
    pb::service_accounts_client::ServiceAccountsClient<InterceptedService<Channel, Bearer>>;

/// The identity clients, as the dataset's administrator service account.
pub(super) struct Identity {
    pub(super) access: Access,
    pub(super) roles: Roles,
    users: Users,
    accounts: ServiceAccounts,
    pub(super) parent: String,
    pub(super) org: Uuid,
}

impl Identity {
    pub(super) async fn connect(server: &Server, data: &Dataset) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{}", server.addr))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        let bearer = Bearer(format!("Bearer {}", data.token).parse()?);
        Ok(Self {
            access: pb::access_client::AccessClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            roles: pb::roles_client::RolesClient::with_interceptor(channel.clone(), bearer.clone()),
            users: pb::users_client::UsersClient::with_interceptor(channel.clone(), bearer.clone()),
            accounts: pb::service_accounts_client::ServiceAccountsClient::with_interceptor(
                channel, bearer,
            ),
            parent: data.parent(),
            org: data.org,
        })
    }

    /// A custom role granting `permissions`; returns its name.
    pub(super) async fn create_role(
        &self,
        label: &str,
        permissions: &[&str],
    ) -> anyhow::Result<String> {
        let role = self
            .roles
            .clone()
            .create_role(pb::CreateRoleRequest {
                parent: self.parent.clone(),
                role: Some(pb::Role {
                    display_name: label.into(),
                    grants: grants(permissions),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await?
            .into_inner();
        Ok(role.name)
    }

    /// README's set-up for portal-sync: a role with `org.view_audit_trail`, a service
    /// account holding it at organization scope, and a token of that account.
    pub(super) async fn portal_reader_token(&self) -> anyhow::Result<String> {
        let reader = self
            .create_role("Portal sync", &["org.view_audit_trail"])
            .await?;
        let sa = self
            .accounts
            .clone()
            .create_service_account(pb::CreateServiceAccountRequest {
                parent: self.parent.clone(),
                service_account: Some(pb::ServiceAccount {
                    display_name: "portal-sync".into(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        self.access
            .clone()
            .assign_role(pb::AssignRoleRequest {
                parent: self.parent.clone(),
                principal: sa.name.clone(),
                role: reader,
                scope: Some(org_scope()),
                grant_period: None,
            })
            .await?;
        Ok(self
            .accounts
            .clone()
            .create_service_account_token(pb::CreateServiceAccountTokenRequest {
                parent: sa.name,
                ttl_seconds: 0,
            })
            .await?
            .into_inner()
            .secret)
    }

    /// The first `n` ACTIVE users by email that are not Administrators (their records
    /// exist and their organization role may be replaced).
    pub(super) async fn active_non_admins(
        &self,
        data: &Dataset,
        n: usize,
    ) -> anyhow::Result<Vec<Uuid>> {
        let non_admins: HashSet<Uuid> = data.non_admins.iter().copied().collect();
        let mut found = Vec::with_capacity(n);
        let mut page_token = String::new();
        loop {
            let page = self
                .users
                .clone()
                .list_users(pb::ListUsersRequest {
                    parent: self.parent.clone(),
                    page_size: 1000,
                    page_token,
                    state: pb::UserState::Active.into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            for u in &page.users {
                let id = u
                    .name
                    .rsplit('/')
                    .next()
                    .and_then(|x| Uuid::parse_str(x).ok())
                    .ok_or_else(|| anyhow::anyhow!("bad user name {}", u.name))?;
                if non_admins.contains(&id) && found.len() < n {
                    found.push(id);
                }
            }
            if found.len() >= n || page.next_page_token.is_empty() {
                return Ok(found);
            }
            page_token = page.next_page_token;
        }
    }

    /// Assigns `role` at organization scope to every user, `SETUP_IN_FLIGHT` calls at a
    /// time; returns the largest consistency token acknowledged.
    pub(super) async fn assign_all(&self, users: &[Uuid], role: &str) -> anyhow::Result<u64> {
        let users = Arc::new(users.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..SETUP_IN_FLIGHT {
            let (users, next, mut access) = (users.clone(), next.clone(), self.access.clone());
            let (parent, org, role) = (self.parent.clone(), self.org, role.to_owned());
            tasks.spawn(async move {
                let mut max = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(user) = users.get(i) else {
                        return Ok::<u64, anyhow::Error>(max);
                    };
                    let r = access
                        .assign_role(pb::AssignRoleRequest {
                            parent: parent.clone(),
                            principal: fmt::user(org, *user),
                            role: role.clone(),
                            scope: Some(org_scope()),
                            grant_period: None,
                        })
                        .await?;
                    max = max.max(consistency_token(&r)?);
                }
            });
        }
        let mut max = 0;
        while let Some(r) = tasks.join_next().await {
            max = max.max(r??);
        }
        Ok(max)
    }
}

pub(super) fn grants(permissions: &[&str]) -> Vec<pb::PermissionGrant> {
    permissions
        .iter()
        .map(|p| pb::PermissionGrant {
            permission: (*p).to_owned(),
            stages: Vec::new(),
        })
        .collect()
}

pub(super) fn org_scope() -> pb::Scope {
    pb::Scope {
        kind: Some(pb::scope::Kind::Organization(true)),
    }
}

/// The consistency token (identity's sequence after the call) of a response.
pub(super) fn consistency_token<T>(r: &tonic::Response<T>) -> anyhow::Result<u64> {
    r.metadata()
        .get(identity_svc::grpc::CONSISTENCY_TOKEN)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no consistency token"))
}
