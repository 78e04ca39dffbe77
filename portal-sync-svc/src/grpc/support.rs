//! `portal.v1.Support`: support cases and support contacts.
//!
//! A case's creator is the person acted for. Team members need REGISTER_SUPPORT_CASES on the
//! case's infrastructure; anyone else may open a case, which waits for approval
//! (AWAITING_APPROVAL) unless they are an approved contact (R76). Approving a case puts its
//! creator on the contact list, so their later cases are open at once.

use serde::{Deserialize, Serialize};
use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    Api, Error, Violations, check_company_name, convert, infrastructure_ref, names, now,
    page_cursor, page_size, page_token, required_text,
};
use crate::auth::Need;
use crate::domain::capabilities::{Capability, CompanyFacts};
use crate::domain::model::{CaseState, Email, NewEvent, SupportCase};

/// Longest subject.
const MAX_SUBJECT: usize = 200;
/// Most people in CC.
const MAX_CC: usize = 50;

/// Cursor of `ListSupportCases`: the last case's creation time and id.
#[derive(Debug, Serialize, Deserialize)]
struct CaseCursor {
    t: i64,
    id: Uuid,
}

fn facts_of(f: Option<&CompanyFacts>) -> Result<&CompanyFacts, Error> {
    f.ok_or_else(|| Error::Internal("company records not loaded for a person call".into()))
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
        let facts = facts_of(a.facts.as_ref())?;
        let company = a.company.id;
        let sc = a.req.support_case.clone().unwrap_or_default();
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, company);
        let infrastructure = v.check(
            "support_case.infrastructure",
            infrastructure_ref(facts, company, &sc.infrastructure),
        );
        let subject = required_text(&mut v, "support_case.subject", &sc.subject, MAX_SUBJECT);
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
        v.finish()?;
        let Some(infrastructure) = infrastructure else {
            return Err(Error::Internal("unreachable: infrastructure checked".into()).into());
        };
        let creator = a
            .entry
            .person()
            .cloned()
            .ok_or_else(|| Error::Internal("no person".into()))?;
        // Team members must be allowed on the infrastructure; anyone else is an outside
        // requester whose case is held unless they were approved before.
        let need = if facts.member(&creator).is_some() {
            Need::Capability(Capability::RegisterSupportCases, Some(infrastructure))
        } else {
            Need::Nothing
        };
        let auth = a.entry.require(facts, &need)?;
        let state = if facts.on_contact_list(&creator) {
            CaseState::Open
        } else {
            CaseState::AwaitingApproval
        };
        cc.retain(|e| *e != creator);
        let time = now();
        let case = SupportCase {
            id: Uuid::now_v7(),
            company,
            infrastructure,
            subject,
            creator,
            cc,
            state,
            create_time: time,
            creator_removed: false,
        };
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "support_case.created".into(),
            target: names::fmt::support_case(company, case.id),
            detail: serde_json::json!({
                "infrastructure": names::fmt::infrastructure(company, infrastructure),
                "state": if state == CaseState::Open { "OPEN" } else { "AWAITING_APPROVAL" },
                "cc": case.cc.iter().map(Email::as_str).collect::<Vec<_>>(),
            })
            .to_string(),
        };
        self.data
            .write(&auth)
            .store()
            .create_case(&case, &event, time)
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
        let facts = facts_of(a.facts.as_ref())?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, a.company.id);
        let size = page_size(&mut v, "page_size", a.req.page_size);
        let cursor: Option<CaseCursor> = page_cursor(&mut v, "page_token", &a.req.page_token);
        v.finish()?;
        let auth = a.entry.authorized()?;
        let viewer = auth
            .person()
            .ok_or_else(|| Error::Internal("no person".into()))?;
        let mut list: Vec<&SupportCase> = facts
            .cases
            .iter()
            .filter(|c| facts.can_see_case(viewer, c))
            .filter(|c| {
                cursor
                    .as_ref()
                    .is_none_or(|k| (c.create_time, c.id) > (k.t, k.id))
            })
            .collect();
        list.sort_by_key(|c| (c.create_time, c.id));
        let more = list.len() > size;
        list.truncate(size);
        let next_page_token = match (more, list.last()) {
            (true, Some(last)) => page_token(&CaseCursor {
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
        let facts = facts_of(a.facts.as_ref())?;
        let company = a.company.id;
        let (c, id) = names::support_case(&a.req.name)
            .filter(|(c, _)| *c == company)
            .ok_or_else(|| {
                Error::field("name", "must be companies/{company}/supportCases/{case}")
            })?;
        let case = facts
            .cases
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| Error::NotFound(names::fmt::support_case(c, id)))?;
        let auth = a.entry.require(
            facts,
            &Need::Capability(
                Capability::ApproveUnauthorizedCases,
                Some(case.infrastructure),
            ),
        )?;
        if case.state != CaseState::AwaitingApproval {
            return Err(Error::precondition(
                "CASE_NOT_AWAITING_APPROVAL",
                "the case is not waiting for approval",
            )
            .into());
        }
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "support_case.approved".into(),
            target: names::fmt::support_case(company, id),
            detail: serde_json::json!({ "creator": case.creator.as_str() }).to_string(),
        };
        self.data
            .write(&auth)
            .store()
            .approve_case(company, id, &event, now())
            .await?;
        let approved = SupportCase {
            state: CaseState::Open,
            ..case.clone()
        };
        Ok(Response::new(convert::support_case(&approved)))
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
        let facts = facts_of(a.facts.as_ref())?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, a.company.id);
        v.finish()?;
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
        let facts = facts_of(a.facts.as_ref())?;
        let company = a.company.id;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, company);
        let email = v.check("email", Email::parse(&a.req.email));
        v.finish()?;
        let Some(email) = email else {
            return Err(Error::Internal("unreachable: email checked".into()).into());
        };
        let auth = a.entry.authorized()?;
        if facts.member(&email).is_some() {
            return Err(Error::precondition(
                "IS_TEAM_MEMBER",
                "this person is a team member, not a support contact; remove them from the team \
                 instead",
            )
            .into());
        }
        if !facts.is_support_contact(&email) {
            return Err(Error::NotFound(format!("support contact {email}")).into());
        }
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "support_contact.removed".into(),
            target: names::fmt::company(company),
            detail: serde_json::json!({ "email": email.as_str() }).to_string(),
        };
        self.data
            .write(&auth)
            .store()
            .remove_contact(company, &email, &event, now())
            .await?;
        Ok(Response::new(pb::RemoveSupportContactResponse {}))
    }
}
