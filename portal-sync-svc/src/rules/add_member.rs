//! The O11 add-member flow: a new team member with their company permission and
//! infrastructure permissions, optionally invited to LifeTime (O11 Cloud and hybrid only) and
//! granted development permissions (audited as done by the LifeTime service user, R75).
//! Members of ODC infrastructures are never added here: the sync brings them.

use uuid::Uuid;

use super::members::{RequestedAccess, access_json, event};
use super::{Rules, now};
use crate::auth::levels::Need;
use crate::auth::proof::Entry;
use crate::convert;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::{
    Access, CompanyPermission, Email, InfraKind, Micros, NewEvent, Source, TeamMember, TeamRole,
};
use crate::domain::names;
use crate::error::{Error, MEMBER_EXISTS, Violations};
use crate::store::MemberChange;

/// The audit actor of development-permission grants (the LifeTime service user, R75).
pub const DEVELOPMENT_PERMISSIONS_ACTOR: &str = "Administrator";

/// A new team member.
#[derive(Debug, Clone)]
pub struct AddMember {
    /// Their email.
    pub email: Email,
    /// Display name (may be empty).
    pub display_name: String,
    /// Team role.
    pub team_role: TeamRole,
    /// Company permission.
    pub company_permission: CompanyPermission,
    /// Infrastructure permissions.
    pub access: Vec<RequestedAccess>,
    /// Invite them to LifeTime (their email becomes their LifeTime username).
    pub invite_to_lifetime: bool,
    /// Grant them development permissions.
    pub grant_development_permissions: bool,
}

/// The checks of the flow on the infrastructures named (recorded with the request's other bad
/// fields): none may be ODC, and a LifeTime invitation needs at least one, all O11 Cloud or
/// hybrid. `named_none` says whether the request named no infrastructure at all.
pub fn check_infrastructures(
    v: &mut Violations,
    facts: &CompanyFacts,
    access: &[RequestedAccess],
    named_none: bool,
    invite_to_lifetime: bool,
) {
    let kind_of = |i: Uuid| facts.infrastructure(i).map(|x| x.kind);
    for a in access {
        if kind_of(a.infrastructure) == Some(InfraKind::Odc) {
            v.add(
                format!("infrastructure_access[{}].infrastructure", a.index),
                "is an ODC infrastructure: its members are managed in the ODC Portal and \
                 synchronized here",
            );
        }
    }
    if invite_to_lifetime {
        if named_none {
            v.add(
                "invite_to_lifetime",
                "needs at least one O11 Cloud or hybrid infrastructure in \
                 infrastructure_access",
            );
        } else if access.iter().any(|a| {
            !matches!(
                kind_of(a.infrastructure),
                Some(InfraKind::O11Cloud | InfraKind::O11Hybrid)
            )
        }) {
            v.add(
                "invite_to_lifetime",
                "is only possible for O11 Cloud and hybrid infrastructures (not Sentry, \
                 self-managed or ODC)",
            );
        }
    }
}

impl Rules {
    /// Adds a team member. Company admins may add anyone; an infrastructure admin may add a
    /// MEMBER with permissions on infrastructures they all administer.
    pub async fn add_member(
        &self,
        entry: &Entry,
        facts: &CompanyFacts,
        company: Uuid,
        cmd: AddMember,
    ) -> Result<TeamMember, Error> {
        let infras: Vec<Uuid> = cmd.access.iter().map(|a| a.infrastructure).collect();
        let need = if cmd.company_permission == CompanyPermission::Admin || infras.is_empty() {
            Need::CompanyAdmin
        } else {
            Need::Any(vec![
                Need::CompanyAdmin,
                Need::InfrastructureAdminOfEvery(infras),
            ])
        };
        let auth = entry.require(facts, &need)?;
        if let Some(existing) = facts.member(&cmd.email) {
            return Err(Error::AlreadyExists {
                reason: MEMBER_EXISTS,
                message: format!(
                    "{} is already a team member: {}",
                    cmd.email,
                    names::fmt::member(company, existing.id)
                ),
            });
        }
        let time = now();
        let member = new_member(company, &cmd, time);
        let mut events = vec![event(
            &auth,
            "member.added",
            &member,
            &serde_json::json!({
                "email": member.email.as_str(),
                "team_role": convert::team_role(cmd.team_role).as_str_name(),
                "company_permission":
                    convert::company_permission(cmd.company_permission).as_str_name(),
                "infrastructure_access": access_json(company, &member.access),
                "invite_to_lifetime": cmd.invite_to_lifetime,
                "lifetime_username": member.lifetime_username,
            }),
        )];
        if cmd.grant_development_permissions {
            events.push(development_permissions_granted(&member));
        }
        let changes = [MemberChange::Upsert {
            member: member.clone(),
            expected_rev: None,
        }];
        match self.save(&auth, company, &changes, &events, time).await {
            Ok(()) => Ok(member),
            // The only conflict of a pure insert: the email was taken meanwhile.
            Err(Error::Aborted(_)) => Err(Error::AlreadyExists {
                reason: MEMBER_EXISTS,
                message: format!("{} is already a team member", cmd.email),
            }),
            Err(e) => Err(e),
        }
    }
}

/// The member record of the command, created at `time`.
fn new_member(company: Uuid, cmd: &AddMember, time: Micros) -> TeamMember {
    let mut access: Vec<Access> = cmd
        .access
        .iter()
        .map(|a| Access {
            infrastructure: a.infrastructure,
            permission: a.permission,
            source: Source::Manual,
        })
        .collect();
    access.sort_by_key(|a| a.infrastructure);
    TeamMember {
        id: Uuid::now_v7(),
        company,
        email: cmd.email.clone(),
        display_name: cmd.display_name.clone(),
        team_role: cmd.team_role,
        company_permission: cmd.company_permission,
        access,
        phone: None,
        lifetime_username: cmd
            .invite_to_lifetime
            .then(|| cmd.email.as_str().to_owned()),
        development_permissions: cmd.grant_development_permissions,
        created_by_sync: false,
        create_time: time,
        update_time: time,
        rev: 1,
    }
}

/// The audit event of the development-permission grant, by the LifeTime service user.
fn development_permissions_granted(member: &TeamMember) -> NewEvent {
    NewEvent {
        actor: DEVELOPMENT_PERMISSIONS_ACTOR.to_owned(),
        action: "development_permissions.granted".into(),
        target: names::fmt::member(member.company, member.id),
        detail: serde_json::json!({
            "email": member.email.as_str(),
            "infrastructures": member
                .access
                .iter()
                .map(|a| names::fmt::infrastructure(member.company, a.infrastructure))
                .collect::<Vec<_>>(),
        })
        .to_string(),
    }
}
