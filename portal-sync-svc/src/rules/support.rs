//! Support cases and support contacts.
//!
//! A case's creator is the person acted for. Team members need REGISTER_SUPPORT_CASES on the
//! case's infrastructure; anyone else may open a case, which waits for approval
//! (AWAITING_APPROVAL) unless they are an approved contact (R76). Approving a case puts its
//! creator on the contact list, so their later cases are open at once.

use uuid::Uuid;

use super::{Rules, now};
use crate::auth::levels::Need;
use crate::auth::proof::{Authorized, Entry};
use crate::domain::capabilities::Capability;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::{CaseState, Email, NewEvent, SupportCase};
use crate::domain::names;
use crate::error::Error;

/// A new support case.
#[derive(Debug, Clone)]
pub struct OpenCase {
    /// The infrastructure (one of the company's).
    pub infrastructure: Uuid,
    /// Subject.
    pub subject: String,
    /// People in CC, without duplicates.
    pub cc: Vec<Email>,
}

/// Where a page of cases starts: after this creation time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseCursor {
    /// Creation time of the last case seen.
    pub time: i64,
    /// Id of the last case seen.
    pub id: Uuid,
}

/// The cases the person acted for may see, oldest first, after `cursor`; at most `size`,
/// and whether more follow.
pub fn visible_cases<'a>(
    auth: &Authorized,
    facts: &'a CompanyFacts,
    cursor: Option<CaseCursor>,
    size: usize,
) -> Result<(Vec<&'a SupportCase>, bool), Error> {
    let viewer = auth
        .person()
        .ok_or_else(|| Error::Internal("no person".into()))?;
    let mut list: Vec<&SupportCase> = facts
        .cases
        .iter()
        .filter(|c| facts.can_see_case(viewer, c))
        .filter(|c| cursor.is_none_or(|k| (c.create_time, c.id) > (k.time, k.id)))
        .collect();
    list.sort_by_key(|c| (c.create_time, c.id));
    let more = list.len() > size;
    list.truncate(size);
    Ok((list, more))
}

fn person(entry_person: Option<&Email>) -> Result<Email, Error> {
    entry_person
        .cloned()
        .ok_or_else(|| Error::Internal("no person".into()))
}

impl Rules {
    /// Opens a case for the person acted for.
    pub async fn open_case(
        &self,
        entry: &Entry,
        facts: &CompanyFacts,
        company: Uuid,
        cmd: OpenCase,
    ) -> Result<SupportCase, Error> {
        let creator = person(entry.person())?;
        // Team members must be allowed on the infrastructure; anyone else is an outside
        // requester whose case is held unless they were approved before.
        let need = if facts.member(&creator).is_some() {
            Need::Capability(Capability::RegisterSupportCases, Some(cmd.infrastructure))
        } else {
            Need::Nothing
        };
        let auth = entry.require(facts, &need)?;
        let state = if facts.on_contact_list(&creator) {
            CaseState::Open
        } else {
            CaseState::AwaitingApproval
        };
        let mut cc = cmd.cc;
        cc.retain(|e| *e != creator);
        let time = now();
        let case = SupportCase {
            id: Uuid::now_v7(),
            company,
            infrastructure: cmd.infrastructure,
            subject: cmd.subject,
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
                "infrastructure": names::fmt::infrastructure(company, case.infrastructure),
                "state": if state == CaseState::Open { "OPEN" } else { "AWAITING_APPROVAL" },
                "cc": case.cc.iter().map(Email::as_str).collect::<Vec<_>>(),
            })
            .to_string(),
        };
        self.write(&auth)
            .store
            .create_case(&case, &event, time)
            .await?;
        Ok(case)
    }

    /// Approves a case held for approval: it opens, and its creator joins the contact list.
    pub async fn approve_case(
        &self,
        entry: &Entry,
        facts: &CompanyFacts,
        company: Uuid,
        id: Uuid,
    ) -> Result<SupportCase, Error> {
        let case = facts
            .cases
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| Error::NotFound(names::fmt::support_case(company, id)))?;
        let auth = entry.require(
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
            ));
        }
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "support_case.approved".into(),
            target: names::fmt::support_case(company, id),
            detail: serde_json::json!({ "creator": case.creator.as_str() }).to_string(),
        };
        self.write(&auth)
            .store
            .approve_case(company, id, &event, now())
            .await?;
        Ok(SupportCase {
            state: CaseState::Open,
            ..case.clone()
        })
    }

    /// Removes a support contact from every case's CC and from the contact list (never a team
    /// member: they leave the team instead).
    pub async fn remove_support_contact(
        &self,
        auth: &Authorized,
        facts: &CompanyFacts,
        company: Uuid,
        email: &Email,
    ) -> Result<(), Error> {
        if facts.member(email).is_some() {
            return Err(Error::precondition(
                "IS_TEAM_MEMBER",
                "this person is a team member, not a support contact; remove them from the team \
                 instead",
            ));
        }
        if !facts.is_support_contact(email) {
            return Err(Error::NotFound(format!("support contact {email}")));
        }
        let event = NewEvent {
            actor: auth.actor().to_owned(),
            action: "support_contact.removed".into(),
            target: names::fmt::company(company),
            detail: serde_json::json!({ "email": email.as_str() }).to_string(),
        };
        self.write(auth)
            .store
            .remove_contact(company, email, &event, now())
            .await?;
        Ok(())
    }
}
