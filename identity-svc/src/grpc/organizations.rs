//! `identity.v1.Organizations`.

use shared::email::Email;
use shared::proto::identity::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, DEFAULT_PAGE, MAX_PAGE, command, convert, etag, respond, to_status};
use crate::auth::Entry;
use crate::domain::model::Organization;
use crate::method;
use crate::rules;

#[tonic::async_trait]
impl pb::organizations_server::Organizations for Api {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        const M: &str = method!("Organizations/CreateOrganization");
        let caller = self.caller(request.metadata(), M).await?;
        let entry = Entry::admit(M, &caller, None, None, self.core.now()).map_err(to_status)?;
        let req = request.into_inner();
        let (name, email) = command(|v| {
            let name = v.required_text(
                "organization.display_name",
                req.organization
                    .as_ref()
                    .map_or("", |o| o.display_name.as_str()),
                100,
            );
            let email = v.check(
                "first_administrator_email",
                Email::parse(&req.first_administrator_email),
            );
            Some((name, email?))
        })?;
        let auth = entry.authorized().map_err(to_status)?;
        let now = self.core.now();
        let org = Organization {
            id: Uuid::now_v7(),
            display_name: name,
            create_time: now,
            update_time: now,
            rev: 1,
        };
        let c = self
            .core
            .create_org(&auth, org.clone(), |d| {
                rules::organizations::seed_organization(d, &email)
            })
            .await
            .map_err(to_status)?;
        let (_, mail) = c.value;
        self.deliver_now(mail).await;
        Ok(respond(convert::organization(&org), c.seq))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let a = self
            .enter(
                request,
                method!("Organizations/GetOrganization"),
                "name",
                |r| &r.name,
            )
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::organization(&st.org), st.seq))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        const M: &str = method!("Organizations/ListOrganizations");
        let caller = self.caller(request.metadata(), M).await?;
        let entry = Entry::admit(M, &caller, None, None, self.core.now()).map_err(to_status)?;
        entry.authorized().map_err(to_status)?;
        let req = request.into_inner();
        let (size, after) = command(|v| {
            let size = v.page_size("page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let after: Option<Uuid> = v.page_cursor("page_token", &req.page_token);
            Some((size, after))
        })?;
        // From the store: an organization created through another replica is listed at once.
        let ids = self.core.stored_org_ids().await.map_err(to_status)?;
        let rest: Vec<Uuid> = ids
            .into_iter()
            .filter(|id| after.is_none_or(|a| *id > a))
            .collect();
        let page: Vec<Uuid> = rest.iter().take(size).copied().collect();
        let next = if rest.len() > size {
            page.last()
                .map(shared::page_token::encode)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut organizations = Vec::with_capacity(page.len());
        for id in &page {
            let handle = self.core.org(*id).await.map_err(to_status)?;
            organizations.push(convert::organization(&handle.read().org));
        }
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations,
            next_page_token: next,
        }))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let a = self
            .enter(
                request,
                method!("Organizations/UpdateOrganization"),
                "organization.name",
                |r| r.organization.as_ref().map_or("", |o| o.name.as_str()),
            )
            .await?;
        let o = a.req.organization.clone().unwrap_or_default();
        let (paths, name) = command(|v| {
            let paths = v.mask_paths(a.req.update_mask.as_ref(), &["display_name"]);
            let name = v.required_text("organization.display_name", &o.display_name, 100);
            Some((paths, name))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                if paths.iter().any(|p| p == "display_name") {
                    rules::organizations::rename_organization(d, name.clone(), etag(&o.etag))?;
                }
                Ok(())
            })
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(convert::organization(&st.org), c.seq))
    }
}
