//! `portal.v1.Companies`: companies (with their first company admin) and infrastructures. The
//! rules are [`crate::rules::companies`].

use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use super::parse::check_company_name;
use crate::convert;
use crate::domain::model::{Email, InfraKind};
use crate::domain::names;
use crate::error::{Error, Violations};
use crate::rules::companies::{NewCompany, NewInfrastructure};

/// `CreateCompany`: the company and its first company admin.
fn parse_company(req: &pb::CreateCompanyRequest) -> Result<NewCompany, Error> {
    let mut v = Violations::new();
    let display_name = v.required_text(
        "company.display_name",
        req.company.as_ref().map_or("", |c| c.display_name.as_str()),
        100,
    );
    let email = v.check("first_admin_email", Email::parse(&req.first_admin_email));
    let admin_name = v.optional_text(
        "first_admin_display_name",
        &req.first_admin_display_name,
        100,
    );
    let company = email.map(|email| NewCompany {
        display_name,
        first_admin_email: email,
        first_admin_display_name: admin_name,
    });
    Error::command(v, company)
}

/// `CreateInfrastructure`: an ODC infrastructure names its identity organization and token;
/// no other kind does.
fn parse_infrastructure(
    req: &pb::CreateInfrastructureRequest,
    company: Uuid,
) -> Result<NewInfrastructure, Error> {
    let infra = req.infrastructure.clone().unwrap_or_default();
    let mut v = Violations::new();
    check_company_name(&mut v, "parent", &req.parent, company);
    let display_name = v.required_text("infrastructure.display_name", &infra.display_name, 100);
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
                    names::identity_organization(org).ok_or("must be organizations/{organization}"),
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
    let infrastructure = kind.map(|kind| NewInfrastructure {
        display_name,
        kind,
        identity_org,
        identity_token: token.to_owned(),
    });
    Error::command(v, infrastructure)
}

/// `SetIdentityToken`: the infrastructure and the new token.
fn parse_identity_token(req: &pb::SetIdentityTokenRequest) -> Result<(Uuid, String), Error> {
    let mut v = Violations::new();
    let id = v.check(
        "name",
        names::infrastructure(&req.name)
            .map(|(_, infra)| infra)
            .ok_or("must be companies/{company}/infrastructures/{infrastructure}"),
    );
    let token = req.identity_token.trim();
    if token.is_empty() {
        v.add("identity_token", "is required");
    }
    Error::command(v, id.map(|id| (id, token.to_owned())))
}

#[tonic::async_trait]
impl pb::companies_server::Companies for Api {
    async fn create_company(
        &self,
        request: Request<pb::CreateCompanyRequest>,
    ) -> Result<Response<pb::Company>, Status> {
        let (entry, req) = self.enter_global(request, method!("Companies/CreateCompany"))?;
        let cmd = parse_company(&req)?;
        let auth = entry.authorized()?;
        let company = self.rules.create_company(&auth, cmd).await?;
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
        v.finish().map_err(Error::from)?;
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
        let cmd = parse_infrastructure(&a.req, a.company.id)?;
        let auth = a.entry.authorized()?;
        let infra = self
            .rules
            .create_infrastructure(&auth, a.company.id, cmd)
            .await?;
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
        v.finish().map_err(Error::from)?;
        a.entry.authorized()?;
        let list = match &a.facts {
            Some(f) => f.infrastructures.clone(),
            None => self.rules.read().infrastructures(a.company.id).await?,
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
        let (id, token) = parse_identity_token(&a.req)?;
        let auth = a.entry.authorized()?;
        let infra = self
            .rules
            .set_identity_token(&auth, a.company.id, id, &token)
            .await?;
        Ok(Response::new(convert::infrastructure(&infra)))
    }
}
