//! Company admins: assigning and removing them (company admins only, by the table rule), never
//! leaving a company without one — also under two concurrent demotions.

use uuid::Uuid;

use super::members::{event, guard_other_admin, keep_an_admin, next, target};
use super::{Rules, now};
use crate::auth::proof::Authorized;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::{CompanyPermission, TeamMember};
use crate::error::Error;

impl Rules {
    /// Makes a member company admin (nothing to do if they are one).
    pub async fn assign_company_admin(
        &self,
        auth: &Authorized,
        facts: &CompanyFacts,
        company: Uuid,
        id: Uuid,
    ) -> Result<TeamMember, Error> {
        let old = target(facts, company, id)?;
        if old.company_permission == CompanyPermission::Admin {
            return Ok(old.clone());
        }
        let time = now();
        let new = TeamMember {
            company_permission: CompanyPermission::Admin,
            ..next(old, time)
        };
        let ev = event(
            auth,
            "company_admin.assigned",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        self.save_member(auth, old, &new, None, ev, time).await?;
        Ok(new)
    }

    /// Makes a company admin a plain member (nothing to do if they are not one); never the
    /// last company admin.
    pub async fn remove_company_admin(
        &self,
        auth: &Authorized,
        facts: &CompanyFacts,
        company: Uuid,
        id: Uuid,
    ) -> Result<TeamMember, Error> {
        let old = target(facts, company, id)?;
        if old.company_permission != CompanyPermission::Admin {
            return Ok(old.clone());
        }
        keep_an_admin(facts)?;
        let time = now();
        let new = TeamMember {
            company_permission: CompanyPermission::Member,
            ..next(old, time)
        };
        let ev = event(
            auth,
            "company_admin.removed",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        let guard = guard_other_admin(facts, old.id);
        self.save_member(auth, old, &new, guard, ev, time).await?;
        Ok(new)
    }
}
