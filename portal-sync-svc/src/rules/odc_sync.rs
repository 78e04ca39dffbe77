//! The sync of ODC infrastructures as the API sees it: which infrastructures are synchronized,
//! their status (the worker's live view, or the database's on another replica) and
//! resync. The sync itself is [`crate::sync`].

use uuid::Uuid;

use super::Rules;
use crate::auth::proof::Authorized;
use crate::domain::model::InfraKind;
use crate::domain::names;
use crate::error::Error;
use crate::sync::StatusView;

/// An infrastructure checked to be an ODC infrastructure of its company.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OdcInfrastructure(Uuid);

impl Rules {
    /// Checks that `id` is an ODC infrastructure of `company` (NOT_FOUND; FAILED_PRECONDITION
    /// `NOT_ODC`).
    pub async fn odc_infrastructure(
        &self,
        company: Uuid,
        id: Uuid,
    ) -> Result<OdcInfrastructure, Error> {
        let infra = self
            .read()
            .infrastructures(company)
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::NotFound(names::fmt::infrastructure(company, id)))?;
        if infra.kind != InfraKind::Odc {
            return Err(Error::precondition(
                "NOT_ODC",
                "only ODC infrastructures are synchronized",
            ));
        }
        Ok(OdcInfrastructure(id))
    }

    /// The sync status of an infrastructure, on any replica: the worker's live view on the
    /// replica that holds the infrastructure's lease, else the stored state with the holder's
    /// last report.
    pub async fn sync_status(&self, infra: &OdcInfrastructure) -> Result<StatusView, Error> {
        Ok(self.read().sync_status(infra.0).await?)
    }

    /// Forgets the sync cursor of an ODC infrastructure: its next sync takes a snapshot.
    pub async fn resync(&self, auth: &Authorized, infra: &OdcInfrastructure) -> Result<(), Error> {
        self.write(auth).syncer.resync(infra.0).await?;
        Ok(())
    }
}
