//! `identity.v1.Apps`.

use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, DEFAULT_PAGE, MAX_PAGE, command, convert, respond, to_status};
use crate::auth::Need;
use crate::domain::names;
use crate::domain::permissions::catalog::keys;
use crate::method;
use crate::rules;

fn app_id(v: &mut Violations, field: &str, org: Uuid, name: &str) -> Option<Uuid> {
    v.check(
        field,
        names::app(name)
            .filter(|(o, _)| *o == org)
            .map(|(_, a)| a)
            .ok_or("must be organizations/{organization}/apps/{app}"),
    )
}

/// The development stage's key (the first stage).
fn development(st: &crate::domain::state::OrgState) -> Option<String> {
    st.ordered_stages().first().map(|s| s.key.clone())
}

#[tonic::async_trait]
impl pb::apps_server::Apps for Api {
    async fn create_app(
        &self,
        request: Request<pb::CreateAppRequest>,
    ) -> Result<Response<pb::App>, Status> {
        let a = self
            .enter(request, method!("Apps/CreateApp"), "parent", |r| &r.parent)
            .await?;
        let name = command(|v| {
            Some(v.required_text(
                "app.display_name",
                a.req.app.as_ref().map_or("", |x| x.display_name.as_str()),
                100,
            ))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::apps::create_app(d, name.clone())
            })
            .await
            .map_err(to_status)?;
        Ok(respond(convert::app(a.org, &c.value), c.seq))
    }

    async fn get_app(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::App>, Status> {
        let a = self
            .enter(request, method!("Apps/GetApp"), "name", |r| &r.name)
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let id = command(|v| app_id(v, "name", a.org, &a.req.name))?;
        let st = a.handle.read();
        let app = rules::lookups::app(&st, id).map_err(to_status)?;
        Ok(respond(convert::app(a.org, app), st.seq))
    }

    async fn list_apps(
        &self,
        request: Request<pb::ListAppsRequest>,
    ) -> Result<Response<pb::ListAppsResponse>, Status> {
        let a = self
            .enter(request, method!("Apps/ListApps"), "parent", |r| &r.parent)
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let (size, after) = command(|v| {
            let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let after: Option<(String, Uuid)> = v.page_cursor("page_token", &a.req.page_token);
            Some((size, after))
        })?;
        let st = a.handle.read();
        let mut all: Vec<(String, Uuid)> = st
            .apps
            .values()
            .map(|x| (x.display_name.to_lowercase(), x.id))
            .collect();
        all.sort();
        let rest: Vec<_> = all
            .into_iter()
            .filter(|k| after.as_ref().is_none_or(|a| k > a))
            .collect();
        let more = rest.len() > size;
        let page: Vec<_> = rest.into_iter().take(size).collect();
        let next_page_token = if more {
            page.last()
                .map(shared::page_token::encode)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let apps = page
            .iter()
            .filter_map(|(_, id)| st.apps.get(id))
            .map(|x| convert::app(a.org, x))
            .collect();
        Ok(respond(
            pb::ListAppsResponse {
                apps,
                next_page_token,
            },
            st.seq,
        ))
    }

    async fn delete_app(
        &self,
        request: Request<pb::DeleteAppRequest>,
    ) -> Result<Response<pb::DeleteAppResponse>, Status> {
        let a = self
            .enter(request, method!("Apps/DeleteApp"), "name", |r| &r.name)
            .await?;
        let id = command(|v| app_id(v, "name", a.org, &a.req.name))?;
        let auth = {
            let st = a.handle.read();
            let need = Need::All(
                st.stages
                    .keys()
                    .map(|s| Need::Perm(keys::ASSET_DELETE, Some(s.clone()), Some(id)))
                    .collect(),
            );
            a.entry.require(&st, &need).map_err(to_status)?
        };
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| rules::apps::delete_app(d, id))
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteAppResponse {}, c.seq))
    }

    async fn create_end_user_role(
        &self,
        request: Request<pb::CreateEndUserRoleRequest>,
    ) -> Result<Response<pb::EndUserRole>, Status> {
        let a = self
            .enter(request, method!("Apps/CreateEndUserRole"), "parent", |r| {
                &r.parent
            })
            .await?;
        let (id, name) = command(|v| {
            let id = app_id(v, "parent", a.org, &a.req.parent);
            let name = v.required_text(
                "end_user_role.display_name",
                a.req
                    .end_user_role
                    .as_ref()
                    .map_or("", |x| x.display_name.as_str()),
                100,
            );
            Some((id?, name))
        })?;
        let auth = {
            let st = a.handle.read();
            a.entry
                .require(
                    &st,
                    &Need::Perm(keys::ASSET_CHANGE, development(&st), Some(id)),
                )
                .map_err(to_status)?
        };
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::apps::create_end_user_role(d, id, name.clone())
            })
            .await
            .map_err(to_status)?;
        Ok(respond(convert::end_user_role(a.org, &c.value), c.seq))
    }

    async fn list_end_user_roles(
        &self,
        request: Request<pb::ListEndUserRolesRequest>,
    ) -> Result<Response<pb::ListEndUserRolesResponse>, Status> {
        let a = self
            .enter(request, method!("Apps/ListEndUserRoles"), "parent", |r| {
                &r.parent
            })
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let id = command(|v| app_id(v, "parent", a.org, &a.req.parent))?;
        let st = a.handle.read();
        rules::lookups::app(&st, id).map_err(to_status)?;
        let mut roles: Vec<_> = st.end_user_roles.values().filter(|r| r.app == id).collect();
        roles.sort_by_key(|r| (r.display_name.to_lowercase(), r.id));
        let end_user_roles = roles
            .into_iter()
            .map(|r| convert::end_user_role(a.org, r))
            .collect();
        Ok(respond(
            pb::ListEndUserRolesResponse { end_user_roles },
            st.seq,
        ))
    }

    async fn delete_end_user_role(
        &self,
        request: Request<pb::DeleteEndUserRoleRequest>,
    ) -> Result<Response<pb::DeleteEndUserRoleResponse>, Status> {
        let a = self
            .enter(request, method!("Apps/DeleteEndUserRole"), "name", |r| {
                &r.name
            })
            .await?;
        let (_, app, role) = command(|v| {
            v.check(
                "name",
                names::end_user_role(&a.req.name)
                    .filter(|(o, _, _)| *o == a.org)
                    .ok_or("must be organizations/{organization}/apps/{app}/endUserRoles/{role}"),
            )
        })?;
        let auth = {
            let st = a.handle.read();
            a.entry
                .require(
                    &st,
                    &Need::Perm(keys::ASSET_CHANGE, development(&st), Some(app)),
                )
                .map_err(to_status)?
        };
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::apps::delete_end_user_role(d, role)
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteEndUserRoleResponse {}, c.seq))
    }
}
