//! The OutSystems Community accounts that make team members ACTIVE (PENDING without one).
//! Global, not per company; matched by normalized email.

use super::{Rules, now};
use crate::auth::proof::Authorized;
use crate::domain::model::{Email, Micros};
use crate::error::Error;

impl Rules {
    /// Registers a Community account (idempotent); answers its registration time.
    pub async fn register_community_account(
        &self,
        auth: &Authorized,
        email: &Email,
    ) -> Result<Micros, Error> {
        let time = now();
        self.write(auth)
            .store
            .register_community_account(email, time)
            .await?;
        Ok(time)
    }

    /// Removes a Community account (NOT_FOUND when there is none).
    pub async fn remove_community_account(
        &self,
        auth: &Authorized,
        email: &Email,
    ) -> Result<(), Error> {
        if !self
            .write(auth)
            .store
            .remove_community_account(email)
            .await?
        {
            return Err(Error::NotFound(format!("Community account {email}")));
        }
        Ok(())
    }
}
