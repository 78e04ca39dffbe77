//! `portal.v1.Companies`: companies (with their first company admin) and infrastructures.

use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    Api, Error, Violations, check_company_name, convert, names, now, optional_text, required_text,
};
use crate::domain::model::{
    Company, CompanyPermission, Email, InfraKind, Infrastructure, NewEvent, TeamMember, TeamRole,
};

#[tonic::async_trait]
impl pb::companies_server::Companies for Api {
    async fn create_company(
        &self,
        request: Request<pb::CreateCompanyRequest>,
    ) -> Result<Response<pb::Company>, Status> {
        let (entry, req) = self.enter_global(request, method!("Companies/CreateCompany"))?;
        let mut v = Violations::new();
        let display_name = required_text(
            &mut v,
            "company.display_name",
            req.company.as_ref().map_or("", |c| c.display_name.as_str()),
            100,
        );
        let email = v.check("first_admin_email", Email::parse(&req.first_admin_email));
        let admin_name = optional_text(
            &mut v,
            "first_admin_display_name",
            &req.first_admin_display_name,
            100,
        );
        v.finish()?;
        let Some(email) = email else {
            return Err(Error::Internal("unreachable: email checked".into()).into());
        };
        let auth = entry.authorized()?;
        let time = now();
        let company = Company {
            id: Uuid::now_v7(),
            display_name,
            create_time: time,
        };
        let admin = TeamMember {
            id: Uuid::now_v7(),
            company: company.id,
            email,
            display_name: admin_name,
            team_role: TeamRole::Other,
            company_permission: CompanyPermission::Admin,
            access: Vec::new(),
            phone: None,
            lifetime_username: None,
            development_permissions: false,
            created_by_sync: false,
            create_time: time,
            update_time: time,
            rev: 1,
        };
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "company.created".into(),
            target: names::fmt::company(company.id),
            detail: serde_json::json!({
                "display_name": company.display_name,
                "first_admin": names::fmt::member(company.id, admin.id),
                "first_admin_email": admin.email.as_str(),
            })
            .to_string(),
        };
        self.data
            .write(&auth)
            .store()
            .create_company(&company, &admin, &event, time)
            .await?;
        Ok(Response::new(convert::company(&company)))
    }

    async fn get_company(
        &self,
        request: Request<pb::GetCompanyRequest>,
    ) -> Result<Response<pb::Company>, Status> {
        let a = self
            .enter(request, method!("Companies/GetCompany"), "name", |r| {
                &r.name
            })
            .await?;
        let mut v = Violations::new();
        check_company_name(&mut v, "name", &a.req.name, a.company.id);
        v.finish()?;
        a.entry.authorized()?;
        Ok(Response::new(convert::company(&a.company)))
    }

    async fn create_infrastructure(
        &self,
        request: Request<pb::CreateInfrastructureRequest>,
    ) -> Result<Response<pb::Infrastructure>, Status> {
        let a = self
            .enter(
                request,
                method!("Companies/CreateInfrastructure"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let req = &a.req;
        let infra = req.infrastructure.clone().unwrap_or_default();
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &req.parent, a.company.id);
        let display_name = required_text(
            &mut v,
            "infrastructure.display_name",
            &infra.display_name,
            100,
        );
        let kind = v.check("infrastructure.kind", convert::parse_kind(infra.kind));
        let org = infra.identity_organization.trim();
        let token = req.identity_token.trim();
        let mut identity_org = None;
        match kind {
            Some(InfraKind::Odc) => {
                if org.is_empty() {
                    v.add(
                        "infrastructure.identity_organization",
                        "is required for ODC",
                    );
                } else {
                    identity_org = v.check(
                        "infrastructure.identity_organization",
                        names::identity_organization(org)
                            .ok_or("must be organizations/{organization}"),
                    );
                }
                if token.is_empty() {
                    v.add("identity_token", "is required for ODC");
                }
            }
            Some(_) => {
                if !org.is_empty() {
                    v.add(
                        "infrastructure.identity_organization",
                        "must be empty: only ODC infrastructures name an identity organization",
                    );
                }
                if !token.is_empty() {
                    v.add(
                        "identity_token",
                        "must be empty: only ODC infrastructures have one",
                    );
                }
            }
            None => {}
        }
        v.finish()?;
        let Some(kind) = kind else {
            return Err(Error::Internal("unreachable: kind checked".into()).into());
        };
        let auth = a.entry.authorized()?;
        let time = now();
        let infra = Infrastructure {
            id: Uuid::now_v7(),
            company: a.company.id,
            display_name,
            kind,
            identity_org,
            create_time: time,
        };
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "infrastructure.created".into(),
            target: names::fmt::infrastructure(infra.company, infra.id),
            detail: serde_json::json!({
                "display_name": infra.display_name,
                "kind": convert::kind(kind).as_str_name(),
                "identity_organization": identity_org.map(names::fmt::identity_organization),
            })
            .to_string(),
        };
        let w = self.data.write(&auth);
        w.store()
            .create_infrastructure(
                &infra,
                (kind == InfraKind::Odc).then_some(token),
                &event,
                time,
            )
            .await?;
        if kind == InfraKind::Odc {
            w.syncer().infrastructure_added();
        }
        Ok(Response::new(convert::infrastructure(&infra)))
    }

    async fn list_infrastructures(
        &self,
        request: Request<pb::ListInfrastructuresRequest>,
    ) -> Result<Response<pb::ListInfrastructuresResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Companies/ListInfrastructures"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, a.company.id);
        v.finish()?;
        a.entry.authorized()?;
        let list = match &a.facts {
            Some(f) => f.infrastructures.clone(),
            None => self.data.read().infrastructures(a.company.id).await?,
        };
        Ok(Response::new(pb::ListInfrastructuresResponse {
            infrastructures: list.iter().map(convert::infrastructure).collect(),
        }))
    }

    async fn set_identity_token(
        &self,
        request: Request<pb::SetIdentityTokenRequest>,
    ) -> Result<Response<pb::Infrastructure>, Status> {
        let a = self
            .enter(
                request,
                method!("Companies/SetIdentityToken"),
                "name",
                |r| &r.name,
            )
            .await?;
        let mut v = Violations::new();
        let id = v.check(
            "name",
            names::infrastructure(&a.req.name)
                .map(|(_, infra)| infra)
                .ok_or("must be companies/{company}/infrastructures/{infrastructure}"),
        );
        let token = a.req.identity_token.trim();
        if token.is_empty() {
            v.add("identity_token", "is required");
        }
        v.finish()?;
        let Some(id) = id else {
            return Err(Error::Internal("unreachable: name checked".into()).into());
        };
        let auth = a.entry.authorized()?;
        let infra = self
            .data
            .read()
            .infrastructures(a.company.id)
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::NotFound(a.req.name.clone()))?;
        if infra.kind != InfraKind::Odc {
            return Err(Error::precondition(
                "NOT_ODC",
                "only an ODC infrastructure has an identity token",
            )
            .into());
        }
        let time = now();
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "infrastructure.identity_token_replaced".into(),
            target: names::fmt::infrastructure(infra.company, infra.id),
            detail: String::new(),
        };
        let w = self.data.write(&auth);
        if !w
            .store()
            .set_identity_token(infra.company, infra.id, token, &event, time)
            .await?
        {
            return Err(Error::NotFound(a.req.name.clone()).into());
        }
        w.syncer().identity_token_replaced();
        Ok(Response::new(convert::infrastructure(&infra)))
    }
}
