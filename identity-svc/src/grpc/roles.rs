//! `identity.v1.Roles`.

use std::collections::BTreeSet;

use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Admitted, Api, DEFAULT_PAGE, MAX_PAGE, command, convert, etag, respond, to_status};
use crate::auth::Entry;
use crate::domain::model::Grant;
use crate::domain::names;
use crate::domain::permissions::catalog;
use crate::error::Error;
use crate::method;
use crate::rules;

fn role_id(v: &mut Violations, field: &str, org: Uuid, name: &str) -> Option<String> {
    v.check(
        field,
        names::role_id_of(org, name).ok_or("must be organizations/{organization}/roles/{role}"),
    )
}

/// Decodes grants; unknown keys and stage rules are checked by the service layer against the
/// catalog and the organization's stages.
fn grants(v: &mut Violations, org: Uuid, items: &[pb::PermissionGrant]) -> Vec<Grant> {
    items
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let permission = catalog::resolve(g.permission.trim())
                .map_or_else(|| g.permission.clone(), |d| d.key.to_owned());
            let stages = if g.stages.is_empty() {
                None
            } else {
                let mut set = BTreeSet::new();
                for s in &g.stages {
                    match names::stage(s).filter(|(o, _)| *o == org) {
                        Some((_, k)) => {
                            set.insert(k);
                        }
                        None => v.add(
                            format!("role.grants[{i}].stages"),
                            format!("{s:?} is not a stage of this organization"),
                        ),
                    }
                }
                Some(set)
            };
            Grant { permission, stages }
        })
        .collect()
}

impl Api {
    /// For a create with a `request_id` already used: the role that request created, as it is
    /// now (AIP-155); `None` when the key is new.
    async fn replayed_role<T>(
        &self,
        a: &Admitted<T>,
        request_id: Option<&str>,
    ) -> Result<Option<Response<pb::Role>>, Status> {
        let found = self
            .replayed(a.org, &a.handle, request_id, "role", names::role)
            .await?;
        let Some((id, target)) = found else {
            return Ok(None);
        };
        let st = a.handle.read();
        match st.roles.get(&id) {
            Some(role) => Ok(Some(respond(convert::role(&st, role), st.seq))),
            None => Err(to_status(Error::NotFound(target))),
        }
    }
}

#[tonic::async_trait]
impl pb::roles_server::Roles for Api {
    async fn list_permissions(
        &self,
        request: Request<pb::ListPermissionsRequest>,
    ) -> Result<Response<pb::ListPermissionsResponse>, Status> {
        const M: &str = method!("Roles/ListPermissions");
        let caller = self.caller(request.metadata(), M).await?;
        Entry::admit(M, &caller, None, None, self.core.now())
            .and_then(|e| e.authorized())
            .map_err(to_status)?;
        let permissions = catalog::CATALOG
            .iter()
            .map(|d| pb::Permission {
                key: d.key.into(),
                category: d.category.into(),
                display_name: d.name.into(),
                app_scopable: d.app_scopable,
                stage_scopable: d.stage_scopable,
                implies: d.implies.iter().map(|s| (*s).to_owned()).collect(),
                aliases: d.aliases.iter().map(|s| (*s).to_owned()).collect(),
            })
            .collect();
        Ok(Response::new(pb::ListPermissionsResponse { permissions }))
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let a = self
            .enter(request, method!("Roles/ListRoles"), "parent", |r| &r.parent)
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let (size, after) = command(|v| {
            let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let after: Option<(bool, String, String)> =
                v.page_cursor("page_token", &a.req.page_token);
            Some((size, after))
        })?;
        let st = a.handle.read();
        // Built-in first, then by name.
        let mut all: Vec<(bool, String, String)> = st
            .roles
            .values()
            .map(|r| (!r.built_in, r.display_name.to_lowercase(), r.id.clone()))
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
        let roles = page
            .iter()
            .filter_map(|(_, _, id)| st.roles.get(id))
            .map(|r| convert::role(&st, r))
            .collect();
        Ok(respond(
            pb::ListRolesResponse {
                roles,
                next_page_token,
            },
            st.seq,
        ))
    }

    async fn get_role(
        &self,
        request: Request<pb::GetRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let a = self
            .enter(request, method!("Roles/GetRole"), "name", |r| &r.name)
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let id = command(|v| role_id(v, "name", a.org, &a.req.name))?;
        let st = a.handle.read();
        let r = rules::lookups::role(&st, &id).map_err(to_status)?;
        Ok(respond(convert::role(&st, r), st.seq))
    }

    async fn create_role(
        &self,
        request: Request<pb::CreateRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let a = self
            .enter(request, method!("Roles/CreateRole"), "parent", |r| {
                &r.parent
            })
            .await?;
        let r = a.req.role.clone().unwrap_or_default();
        let (name, description, grants) = command(|v| {
            let name = v.required_text("role.display_name", &r.display_name, 50);
            let description = v.optional_multi_line_text("role.description", &r.description, 500);
            Some((name, description, grants(v, a.org, &r.grants)))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let request_id = (!a.req.request_id.is_empty()).then_some(a.req.request_id.as_str());
        if let Some(replayed) = self.replayed_role(&a, request_id).await? {
            return Ok(replayed);
        }
        let c = match self
            .core
            .mutate(&auth, a.org, request_id, |d| {
                rules::roles::create_role(d, name.clone(), description.clone(), grants.clone())
            })
            .await
        {
            Ok(c) => c,
            // A concurrent request with the same key may have been first: its result.
            Err(e) => {
                return self
                    .replayed_role(&a, request_id)
                    .await?
                    .ok_or_else(|| to_status(e));
            }
        };
        let st = a.handle.read();
        Ok(respond(convert::role(&st, &c.value), c.seq))
    }

    async fn update_role(
        &self,
        request: Request<pb::UpdateRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let a = self
            .enter(request, method!("Roles/UpdateRole"), "role.name", |r| {
                r.role.as_ref().map_or("", |x| x.name.as_str())
            })
            .await?;
        let r = a.req.role.clone().unwrap_or_default();
        let (id, name, description, grants) = command(|v| {
            let id = role_id(v, "role.name", a.org, &r.name);
            let paths = v.mask_paths(
                a.req.update_mask.as_ref(),
                &["display_name", "description", "grants"],
            );
            let has = |p: &str| paths.iter().any(|x| x == p);
            let name = has("display_name")
                .then(|| v.required_text("role.display_name", &r.display_name, 50));
            let description = has("description")
                .then(|| v.optional_multi_line_text("role.description", &r.description, 500));
            let grants = has("grants").then(|| grants(v, a.org, &r.grants));
            Some((id?, name, description, grants))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::roles::update_role(
                    d,
                    &id,
                    name.clone(),
                    description.clone(),
                    grants.clone(),
                    etag(&r.etag),
                )
            })
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::role(&st, &c.value), c.seq))
    }

    async fn duplicate_role(
        &self,
        request: Request<pb::DuplicateRoleRequest>,
    ) -> Result<Response<pb::Role>, Status> {
        let a = self
            .enter(request, method!("Roles/DuplicateRole"), "name", |r| &r.name)
            .await?;
        let id = command(|v| role_id(v, "name", a.org, &a.req.name))?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| rules::roles::duplicate_role(d, &id))
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::role(&st, &c.value), c.seq))
    }

    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Result<Response<pb::DeleteRoleResponse>, Status> {
        let a = self
            .enter(request, method!("Roles/DeleteRole"), "name", |r| &r.name)
            .await?;
        let id = command(|v| role_id(v, "name", a.org, &a.req.name))?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let e = a.req.etag.clone();
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::roles::delete_role(d, &id, etag(&e))
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteRoleResponse {}, c.seq))
    }
}
