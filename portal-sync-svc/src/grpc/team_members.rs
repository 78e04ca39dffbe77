//! `portal.v1.TeamMembers`: the Team screen — list, add (the O11 flow), edit, remove, company
//! admins and the security contact. The rules are [`crate::rules::members`],
//! [`crate::rules::add_member`], [`crate::rules::company_admins`] and
//! [`crate::rules::security_contact`].

use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};

use super::parse::{member_id, page_token};
use super::{Admitted, Api};
use crate::convert;
use crate::domain::model::{Infrastructure, TeamMember};
use crate::rules::members::visible_member;

mod commands;

impl Api {
    /// A member as answered, with its status.
    async fn reply(
        &self,
        m: &TeamMember,
        infrastructures: &[Infrastructure],
    ) -> Result<Response<pb::TeamMember>, Status> {
        let active = self.rules.active([m]).await?;
        Ok(Response::new(convert::member(
            m,
            infrastructures,
            active.contains(&m.email),
        )))
    }

    /// Admits a call about the member named by the request's `name`.
    async fn enter_member<T>(
        &self,
        request: Request<T>,
        method: &str,
        name: impl Fn(&T) -> &str,
    ) -> Result<(Admitted<T>, uuid::Uuid), Status> {
        let a = self.enter(request, method, "name", &name).await?;
        let id = member_id("name", a.company.id, name(&a.req))?;
        Ok((a, id))
    }
}

#[tonic::async_trait]
impl pb::team_members_server::TeamMembers for Api {
    async fn list_team_members(
        &self,
        request: Request<pb::ListTeamMembersRequest>,
    ) -> Result<Response<pb::ListTeamMembersResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/ListTeamMembers"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = a.facts()?;
        let (query, filter) = commands::list(&a.req, a.company.id, facts)?;
        let auth = a.entry.authorized()?;
        let page = self.rules.list_members(&auth, facts, &query).await?;
        let next_page_token = match (page.more, page.members.last()) {
            (true, Some(last)) => page_token(&commands::MemberCursor {
                after: last.email.as_str().to_owned(),
                filter,
            })?,
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTeamMembersResponse {
            members: convert::members(page.members, &facts.infrastructures, &page.active),
            next_page_token,
        }))
    }

    async fn get_team_member(
        &self,
        request: Request<pb::GetTeamMemberRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let (a, id) = self
            .enter_member(request, method!("TeamMembers/GetTeamMember"), |r| &r.name)
            .await?;
        let facts = a.facts()?;
        let m = visible_member(&a.entry, facts, a.company.id, id)?;
        self.reply(m, &facts.infrastructures).await
    }

    async fn add_team_member(
        &self,
        request: Request<pb::AddTeamMemberRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/AddTeamMember"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = a.facts()?;
        let cmd = commands::add(&a.req, a.company.id, facts)?;
        let member = self
            .rules
            .add_member(&a.entry, facts, a.company.id, cmd)
            .await?;
        self.reply(&member, &facts.infrastructures).await
    }

    async fn update_team_member(
        &self,
        request: Request<pb::UpdateTeamMemberRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/UpdateTeamMember"),
                "member.name",
                |r| r.member.as_ref().map_or("", |m| m.name.as_str()),
            )
            .await?;
        let facts = a.facts()?;
        let cmd = commands::update(&a.req, a.company.id, facts)?;
        let member = self
            .rules
            .update_member(&a.entry, facts, a.company.id, cmd)
            .await?;
        self.reply(&member, &facts.infrastructures).await
    }

    async fn remove_team_member(
        &self,
        request: Request<pb::RemoveTeamMemberRequest>,
    ) -> Result<Response<pb::RemoveTeamMemberResponse>, Status> {
        let (a, id) = self
            .enter_member(request, method!("TeamMembers/RemoveTeamMember"), |r| {
                &r.name
            })
            .await?;
        let facts = a.facts()?;
        self.rules
            .remove_member(&a.entry, facts, a.company.id, id)
            .await?;
        Ok(Response::new(pb::RemoveTeamMemberResponse {}))
    }

    async fn assign_company_admin(
        &self,
        request: Request<pb::AssignCompanyAdminRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let (a, id) = self
            .enter_member(request, method!("TeamMembers/AssignCompanyAdmin"), |r| {
                &r.name
            })
            .await?;
        let facts = a.facts()?;
        let auth = a.entry.authorized()?;
        let member = self
            .rules
            .assign_company_admin(&auth, facts, a.company.id, id)
            .await?;
        self.reply(&member, &facts.infrastructures).await
    }

    async fn remove_company_admin(
        &self,
        request: Request<pb::RemoveCompanyAdminRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let (a, id) = self
            .enter_member(request, method!("TeamMembers/RemoveCompanyAdmin"), |r| {
                &r.name
            })
            .await?;
        let facts = a.facts()?;
        let auth = a.entry.authorized()?;
        let member = self
            .rules
            .remove_company_admin(&auth, facts, a.company.id, id)
            .await?;
        self.reply(&member, &facts.infrastructures).await
    }

    async fn set_security_contact(
        &self,
        request: Request<pb::SetSecurityContactRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/SetSecurityContact"),
                "name",
                |r| &r.name,
            )
            .await?;
        let facts = a.facts()?;
        let (id, phone) = commands::security_contact(&a.req, a.company.id)?;
        let auth = a.entry.authorized()?;
        let member = self
            .rules
            .set_security_contact(&auth, facts, a.company.id, id, phone)
            .await?;
        self.reply(&member, &facts.infrastructures).await
    }

    async fn clear_security_contact(
        &self,
        request: Request<pb::ClearSecurityContactRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let (a, id) = self
            .enter_member(request, method!("TeamMembers/ClearSecurityContact"), |r| {
                &r.name
            })
            .await?;
        let facts = a.facts()?;
        let auth = a.entry.authorized()?;
        let member = self
            .rules
            .clear_security_contact(&auth, facts, a.company.id, id)
            .await?;
        self.reply(&member, &facts.infrastructures).await
    }
}
