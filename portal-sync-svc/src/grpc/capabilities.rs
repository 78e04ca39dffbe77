//! `portal.v1.Capabilities`: "may this person do X, and why" and notification recipients, both
//! answered by the domain rules ([`crate::domain::capabilities`]).

use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use super::parse::{check_company_name, infrastructure_ref};
use crate::convert;
use crate::domain::model::Email;
use crate::error::Error;
use crate::error::Violations;

#[tonic::async_trait]
impl pb::capabilities_server::Capabilities for Api {
    async fn check_capability(
        &self,
        request: Request<pb::CheckCapabilityRequest>,
    ) -> Result<Response<pb::CheckCapabilityResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Capabilities/CheckCapability"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let company = a.company.id;
        let req = a.req.clone();
        let facts = &self.rules.read().facts(company).await?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &req.parent, company);
        let email = v.check("email", Email::parse(&req.email));
        let capability = v.check("capability", convert::parse_capability(req.capability));
        // Without an infrastructure, an infrastructure-scoped capability means "on at least
        // one infrastructure".
        let infrastructure = if req.infrastructure.is_empty() {
            None
        } else {
            v.check(
                "infrastructure",
                infrastructure_ref(facts, company, &req.infrastructure),
            )
        };
        let (email, capability) = Error::command(v, email.zip(capability))?;
        a.entry.authorized()?;
        let d = facts.check(&email, capability, infrastructure);
        Ok(Response::new(pb::CheckCapabilityResponse {
            allowed: d.allowed(),
            granted_by: d
                .granted_by
                .iter()
                .map(|g| convert::grant(company, *g))
                .collect(),
            denial_reason: d.denial_reason.unwrap_or_default().to_owned(),
        }))
    }

    async fn list_notification_recipients(
        &self,
        request: Request<pb::ListNotificationRecipientsRequest>,
    ) -> Result<Response<pb::ListNotificationRecipientsResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Capabilities/ListNotificationRecipients"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let company = a.company.id;
        let req = a.req.clone();
        let facts = &self.rules.read().facts(company).await?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &req.parent, company);
        let kind = v.check("kind", convert::parse_notification_kind(req.kind));
        let infrastructure = if req.infrastructure.is_empty() {
            None
        } else {
            v.check(
                "infrastructure",
                infrastructure_ref(facts, company, &req.infrastructure),
            )
        };
        let kind = Error::command(v, kind)?;
        a.entry.authorized()?;
        Ok(Response::new(pb::ListNotificationRecipientsResponse {
            emails: facts
                .recipients(kind, infrastructure)
                .into_iter()
                .map(String::from)
                .collect(),
        }))
    }
}
