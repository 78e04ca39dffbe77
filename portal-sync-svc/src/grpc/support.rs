//! `portal.v1.Support`: support cases and support contacts. The rules are
//! [`crate::rules::support`].

use serde::{Deserialize, Serialize};
use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use super::parse::{case_id, check_company_name, infrastructure_ref, page_token};
use super::{DEFAULT_PAGE, MAX_PAGE};
use crate::convert;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::Email;
use crate::error::{Error, Violations};
use crate::rules::support::{CaseCursor, OpenCase, visible_cases};

/// Longest subject.
const MAX_SUBJECT: usize = 200;
/// Most people in CC.
const MAX_CC: usize = 50;

/// Page token of `ListSupportCases`: the last case's creation time and id.
#[derive(Debug, Serialize, Deserialize)]
struct CaseToken {
    t: i64,
    id: Uuid,
}

/// `CreateSupportCase`: the infrastructure, the subject and the people in CC.
fn parse_case(
    req: &pb::CreateSupportCaseRequest,
    company: Uuid,
    facts: &CompanyFacts,
) -> Result<OpenCase, Error> {
    let sc = req.support_case.clone().unwrap_or_default();
    let mut v = Violations::new();
    check_company_name(&mut v, "parent", &req.parent, company);
    let infrastructure = v.check(
        "support_case.infrastructure",
        infrastructure_ref(facts, company, &sc.infrastructure),
    );
    let subject = v.required_text("support_case.subject", &sc.subject, MAX_SUBJECT);
    let mut cc: Vec<Email> = Vec::new();
    for (idx, raw) in sc.cc.iter().enumerate() {
        if let Some(e) = v.check(&format!("support_case.cc[{idx}]"), Email::parse(raw))
            && !cc.contains(&e)
        {
            cc.push(e);
        }
    }
    if cc.len() > MAX_CC {
        v.add(
            "support_case.cc",
            format!("must name at most {MAX_CC} people"),
        );
    }
    let case = infrastructure.map(|infrastructure| OpenCase {
        infrastructure,
        subject,
        cc,
    });
    Error::command(v, case)
}

#[tonic::async_trait]
impl pb::support_server::Support for Api {
    async fn create_support_case(
        &self,
        request: Request<pb::CreateSupportCaseRequest>,
    ) -> Result<Response<pb::SupportCase>, Status> {
        let a = self
            .enter(
                request,
                method!("Support/CreateSupportCase"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = a.facts()?;
        let cmd = parse_case(&a.req, a.company.id, facts)?;
        let case = self
            .rules
            .open_case(&a.entry, facts, a.company.id, cmd)
            .await?;
        Ok(Response::new(convert::support_case(&case)))
    }

    async fn list_support_cases(
        &self,
        request: Request<pb::ListSupportCasesRequest>,
    ) -> Result<Response<pb::ListSupportCasesResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Support/ListSupportCases"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = a.facts()?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, a.company.id);
        let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let cursor: Option<CaseToken> = v.page_cursor("page_token", &a.req.page_token);
        v.finish().map_err(Error::from)?;
        let auth = a.entry.authorized()?;
        let cursor = cursor.map(|k| CaseCursor {
            time: k.t,
            id: k.id,
        });
        let (list, more) = visible_cases(&auth, facts, cursor, size)?;
        let next_page_token = match (more, list.last()) {
            (true, Some(last)) => page_token(&CaseToken {
                t: last.create_time,
                id: last.id,
            })?,
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSupportCasesResponse {
            support_cases: list.into_iter().map(convert::support_case).collect(),
            next_page_token,
        }))
    }

    async fn approve_support_case(
        &self,
        request: Request<pb::ApproveSupportCaseRequest>,
    ) -> Result<Response<pb::SupportCase>, Status> {
        let a = self
            .enter(
                request,
                method!("Support/ApproveSupportCase"),
                "name",
                |r| &r.name,
            )
            .await?;
        let facts = a.facts()?;
        let id = case_id("name", a.company.id, &a.req.name)?;
        let case = self
            .rules
            .approve_case(&a.entry, facts, a.company.id, id)
            .await?;
        Ok(Response::new(convert::support_case(&case)))
    }

    async fn list_support_contacts(
        &self,
        request: Request<pb::ListSupportContactsRequest>,
    ) -> Result<Response<pb::ListSupportContactsResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Support/ListSupportContacts"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = a.facts()?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, a.company.id);
        v.finish().map_err(Error::from)?;
        a.entry.authorized()?;
        Ok(Response::new(pb::ListSupportContactsResponse {
            emails: facts
                .support_contacts()
                .into_iter()
                .map(String::from)
                .collect(),
        }))
    }

    async fn remove_support_contact(
        &self,
        request: Request<pb::RemoveSupportContactRequest>,
    ) -> Result<Response<pb::RemoveSupportContactResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Support/RemoveSupportContact"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = a.facts()?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, a.company.id);
        let email = v.check("email", Email::parse(&a.req.email));
        let email = Error::command(v, email)?;
        let auth = a.entry.authorized()?;
        self.rules
            .remove_support_contact(&auth, facts, a.company.id, &email)
            .await?;
        Ok(Response::new(pb::RemoveSupportContactResponse {}))
    }
}
