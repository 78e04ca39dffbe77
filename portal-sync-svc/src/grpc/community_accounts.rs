//! `portal.v1.CommunityAccounts`: the OutSystems Community accounts that make team members
//! ACTIVE (PENDING without one). The rules are [`crate::rules::community_accounts`].

use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert::ts;
use crate::domain::model::Email;
use crate::error::Error;

fn parse_email(raw: &str) -> Result<Email, Error> {
    Email::parse(raw).map_err(|e| Error::field("email", e))
}

#[tonic::async_trait]
impl pb::community_accounts_server::CommunityAccounts for Api {
    async fn register_community_account(
        &self,
        request: Request<pb::RegisterCommunityAccountRequest>,
    ) -> Result<Response<pb::CommunityAccount>, Status> {
        let (entry, req) = self.enter_global(
            request,
            method!("CommunityAccounts/RegisterCommunityAccount"),
        )?;
        let email = parse_email(&req.email)?;
        let auth = entry.authorized()?;
        let time = self.rules.register_community_account(&auth, &email).await?;
        Ok(Response::new(pb::CommunityAccount {
            email: email.into(),
            create_time: ts(time),
        }))
    }

    async fn remove_community_account(
        &self,
        request: Request<pb::RemoveCommunityAccountRequest>,
    ) -> Result<Response<pb::RemoveCommunityAccountResponse>, Status> {
        let (entry, req) =
            self.enter_global(request, method!("CommunityAccounts/RemoveCommunityAccount"))?;
        let email = parse_email(&req.email)?;
        let auth = entry.authorized()?;
        self.rules.remove_community_account(&auth, &email).await?;
        Ok(Response::new(pb::RemoveCommunityAccountResponse {}))
    }
}
