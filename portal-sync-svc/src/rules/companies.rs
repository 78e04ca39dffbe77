//! Companies (created with their first company admin) and infrastructures (an ODC one with the
//! identity token its sync reads with). Operator calls.

use uuid::Uuid;

use super::{Rules, now};
use crate::auth::proof::Authorized;
use crate::convert;
use crate::domain::model::{
    Company, CompanyPermission, Email, InfraKind, Infrastructure, NewEvent, TeamMember, TeamRole,
};
use crate::domain::names;
use crate::error::Error;

/// A new company.
#[derive(Debug, Clone)]
pub struct NewCompany {
    /// Display name.
    pub display_name: String,
    /// Email of its first company admin.
    pub first_admin_email: Email,
    /// Display name of its first company admin (may be empty).
    pub first_admin_display_name: String,
}

/// A new infrastructure.
#[derive(Debug, Clone)]
pub struct NewInfrastructure {
    /// Display name.
    pub display_name: String,
    /// Kind.
    pub kind: InfraKind,
    /// The identity organization (ODC only).
    pub identity_org: Option<Uuid>,
    /// The identity token (ODC only; empty otherwise).
    pub identity_token: String,
}

impl Rules {
    /// Creates a company and its first company admin.
    pub async fn create_company(
        &self,
        auth: &Authorized,
        cmd: NewCompany,
    ) -> Result<Company, Error> {
        let time = now();
        let company = Company {
            id: Uuid::now_v7(),
            display_name: cmd.display_name,
            create_time: time,
        };
        let admin = TeamMember {
            id: Uuid::now_v7(),
            company: company.id,
            email: cmd.first_admin_email,
            display_name: cmd.first_admin_display_name,
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
        self.write(auth)
            .store
            .create_company(&company, &admin, &event, time)
            .await?;
        Ok(company)
    }

    /// Creates an infrastructure of `company`; an ODC one starts syncing.
    pub async fn create_infrastructure(
        &self,
        auth: &Authorized,
        company: Uuid,
        cmd: NewInfrastructure,
    ) -> Result<Infrastructure, Error> {
        let time = now();
        let infra = Infrastructure {
            id: Uuid::now_v7(),
            company,
            display_name: cmd.display_name,
            kind: cmd.kind,
            identity_org: cmd.identity_org,
            create_time: time,
        };
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "infrastructure.created".into(),
            target: names::fmt::infrastructure(infra.company, infra.id),
            detail: serde_json::json!({
                "display_name": infra.display_name,
                "kind": convert::kind(cmd.kind).as_str_name(),
                "identity_organization": cmd.identity_org.map(names::fmt::identity_organization),
            })
            .to_string(),
        };
        let odc = cmd.kind == InfraKind::Odc;
        let w = self.write(auth);
        w.store
            .create_infrastructure(
                &infra,
                odc.then_some(cmd.identity_token.as_str()),
                &event,
                time,
            )
            .await?;
        if odc {
            w.syncer.infrastructure_added();
        }
        Ok(infra)
    }

    /// Replaces the identity token of an ODC infrastructure; its sync reconnects with it.
    pub async fn set_identity_token(
        &self,
        auth: &Authorized,
        company: Uuid,
        id: Uuid,
        token: &str,
    ) -> Result<Infrastructure, Error> {
        let not_found = || Error::NotFound(names::fmt::infrastructure(company, id));
        let infra = self
            .read()
            .infrastructures(company)
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(not_found)?;
        if infra.kind != InfraKind::Odc {
            return Err(Error::precondition(
                "NOT_ODC",
                "only an ODC infrastructure has an identity token",
            ));
        }
        let time = now();
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "infrastructure.identity_token_replaced".into(),
            target: names::fmt::infrastructure(infra.company, infra.id),
            detail: String::new(),
        };
        let w = self.write(auth);
        if !w
            .store
            .set_identity_token(infra.company, infra.id, token, &event, time)
            .await?
        {
            return Err(not_found());
        }
        w.syncer.identity_token_replaced();
        Ok(infra)
    }
}
