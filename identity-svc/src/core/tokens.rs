//! Reads and writes of the store outside of a commit that handlers need: the target of an
//! idempotency key, and the bearer tokens of service accounts (listed, revoked).

use uuid::Uuid;

use super::Core;
use super::store::TokenRecord;
use crate::auth::Authorized;
use crate::domain::model::Principal;
use crate::error::Error;

impl Core {
    /// The resource name a committed request with this idempotency key created (AIP-155).
    pub async fn request_target(
        &self,
        org: Uuid,
        request_id: &str,
    ) -> Result<Option<String>, Error> {
        Ok(self.storage.store.find_request(org, request_id).await?)
    }

    /// The tokens of service account `account`, newest first.
    pub async fn service_account_tokens(
        &self,
        _auth: &Authorized,
        org: Uuid,
        account: Uuid,
    ) -> Result<Vec<TokenRecord>, Error> {
        Ok(self
            .storage
            .tokens
            .list(org, Principal::ServiceAccount(account))
            .await?)
    }

    /// Revokes token `token` of service account `account`: a credential-table write of its
    /// own, not an entity change (no event). NOT_FOUND (`name`) when the account has no such
    /// token or it was already revoked.
    pub async fn revoke_service_account_token(
        &self,
        auth: &Authorized,
        org: Uuid,
        account: Uuid,
        token: Uuid,
        name: &str,
    ) -> Result<(), Error> {
        let not_found = || Error::NotFound(name.to_owned());
        let owned = self
            .service_account_tokens(auth, org, account)
            .await?
            .iter()
            .any(|t| t.id == token);
        if !owned {
            return Err(not_found());
        }
        if !self.storage.tokens.revoke(auth, token, self.now()).await? {
            return Err(not_found());
        }
        Ok(())
    }
}
