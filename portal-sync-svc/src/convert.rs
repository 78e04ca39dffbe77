//! Conversions between the domain records and the `portal.v1` messages: the handlers encode
//! answers and decode enum fields with them, and the rules name enum values in audit details
//! with the API's names. Imports only the domain and the protos (no grpc, rules or store).

use std::collections::HashSet;

use shared::proto::portal::v1 as pb;
use uuid::Uuid;

use crate::domain::capabilities::{Capability, Grant, NotificationKind};
use crate::domain::model::{
    CaseState, Company, CompanyPermission, Email, InfraKind, InfraPermission, Infrastructure,
    Micros, PortalEvent, Source, SupportCase, TeamMember, TeamRole,
};
use crate::domain::names::fmt;

/// Microseconds to a protobuf timestamp.
pub fn ts(m: Micros) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: m.div_euclid(1_000_000),
        nanos: i32::try_from(m.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    })
}

/// A company.
pub fn company(c: &Company) -> pb::Company {
    pb::Company {
        name: fmt::company(c.id),
        display_name: c.display_name.clone(),
        create_time: ts(c.create_time),
    }
}

/// An infrastructure kind.
pub fn kind(k: InfraKind) -> pb::InfrastructureKind {
    match k {
        InfraKind::O11Cloud => pb::InfrastructureKind::O11Cloud,
        InfraKind::O11Hybrid => pb::InfrastructureKind::O11Hybrid,
        InfraKind::O11SelfManaged => pb::InfrastructureKind::O11SelfManaged,
        InfraKind::O11Sentry => pb::InfrastructureKind::O11Sentry,
        InfraKind::Odc => pb::InfrastructureKind::Odc,
    }
}

/// An infrastructure kind from a request.
pub fn parse_kind(v: i32) -> Result<InfraKind, &'static str> {
    match pb::InfrastructureKind::try_from(v) {
        Ok(pb::InfrastructureKind::O11Cloud) => Ok(InfraKind::O11Cloud),
        Ok(pb::InfrastructureKind::O11Hybrid) => Ok(InfraKind::O11Hybrid),
        Ok(pb::InfrastructureKind::O11SelfManaged) => Ok(InfraKind::O11SelfManaged),
        Ok(pb::InfrastructureKind::O11Sentry) => Ok(InfraKind::O11Sentry),
        Ok(pb::InfrastructureKind::Odc) => Ok(InfraKind::Odc),
        Ok(pb::InfrastructureKind::Unspecified) => Err("is required"),
        Err(_) => Err("is not a known infrastructure kind"),
    }
}

/// An infrastructure.
pub fn infrastructure(i: &Infrastructure) -> pb::Infrastructure {
    pb::Infrastructure {
        name: fmt::infrastructure(i.company, i.id),
        display_name: i.display_name.clone(),
        kind: kind(i.kind).into(),
        identity_organization: i
            .identity_org
            .map(fmt::identity_organization)
            .unwrap_or_default(),
        create_time: ts(i.create_time),
    }
}

/// A team role from a request (unspecified: required).
pub fn parse_team_role(v: i32) -> Result<TeamRole, &'static str> {
    match pb::TeamRole::try_from(v) {
        Ok(pb::TeamRole::Security) => Ok(TeamRole::Security),
        Ok(pb::TeamRole::Developer) => Ok(TeamRole::Developer),
        Ok(pb::TeamRole::Manager) => Ok(TeamRole::Manager),
        Ok(pb::TeamRole::Other) => Ok(TeamRole::Other),
        Ok(pb::TeamRole::Unspecified) => Err("is required"),
        Err(_) => Err("is not a known team role"),
    }
}

/// A team role.
pub fn team_role(r: TeamRole) -> pb::TeamRole {
    match r {
        TeamRole::Security => pb::TeamRole::Security,
        TeamRole::Developer => pb::TeamRole::Developer,
        TeamRole::Manager => pb::TeamRole::Manager,
        TeamRole::Other => pb::TeamRole::Other,
    }
}

/// A company permission from a request (`Ok(None)`: unspecified).
pub fn parse_company_permission(v: i32) -> Result<Option<CompanyPermission>, &'static str> {
    match pb::CompanyPermission::try_from(v) {
        Ok(pb::CompanyPermission::Member) => Ok(Some(CompanyPermission::Member)),
        Ok(pb::CompanyPermission::Admin) => Ok(Some(CompanyPermission::Admin)),
        Ok(pb::CompanyPermission::Unspecified) => Ok(None),
        Err(_) => Err("is not a known company permission"),
    }
}

/// A company permission.
pub fn company_permission(p: CompanyPermission) -> pb::CompanyPermission {
    match p {
        CompanyPermission::Member => pb::CompanyPermission::Member,
        CompanyPermission::Admin => pb::CompanyPermission::Admin,
    }
}

/// An infrastructure permission from a request (`Ok(None)`: unspecified).
pub fn parse_infra_permission(v: i32) -> Result<Option<InfraPermission>, &'static str> {
    match pb::InfrastructurePermission::try_from(v) {
        Ok(pb::InfrastructurePermission::InfrastructureMember) => Ok(Some(InfraPermission::Member)),
        Ok(pb::InfrastructurePermission::InfrastructureAdmin) => Ok(Some(InfraPermission::Admin)),
        Ok(pb::InfrastructurePermission::Unspecified) => Ok(None),
        Err(_) => Err("is not a known infrastructure permission"),
    }
}

/// An infrastructure permission.
pub fn infra_permission(p: InfraPermission) -> pb::InfrastructurePermission {
    match p {
        InfraPermission::Member => pb::InfrastructurePermission::InfrastructureMember,
        InfraPermission::Admin => pb::InfrastructurePermission::InfrastructureAdmin,
    }
}

/// A team member. `infrastructures` are the company's (for the identity organization of ODC
/// permissions); `active` whether a Community account exists for the email.
pub fn member(m: &TeamMember, infrastructures: &[Infrastructure], active: bool) -> pb::TeamMember {
    pb::TeamMember {
        name: fmt::member(m.company, m.id),
        email: m.email.as_str().to_owned(),
        display_name: m.display_name.clone(),
        team_role: team_role(m.team_role).into(),
        company_permission: company_permission(m.company_permission).into(),
        infrastructure_access: m
            .access
            .iter()
            .map(|a| {
                let (source, identity_user) = match a.source {
                    Source::Manual => (pb::PermissionSource::SourceManual, String::new()),
                    Source::Odc { identity_user } => (
                        pb::PermissionSource::SourceOdc,
                        infrastructures
                            .iter()
                            .find(|i| i.id == a.infrastructure)
                            .and_then(|i| i.identity_org)
                            .map(|o| fmt::identity_user(o, identity_user))
                            .unwrap_or_default(),
                    ),
                };
                pb::InfrastructureAccess {
                    infrastructure: fmt::infrastructure(m.company, a.infrastructure),
                    permission: infra_permission(a.permission).into(),
                    source: source.into(),
                    identity_user,
                }
            })
            .collect(),
        status: if active {
            pb::MemberStatus::Active
        } else {
            pb::MemberStatus::Pending
        }
        .into(),
        phone: m.phone.clone().unwrap_or_default(),
        lifetime_username: m.lifetime_username.clone().unwrap_or_default(),
        development_permissions: m.development_permissions,
        create_time: ts(m.create_time),
        update_time: ts(m.update_time),
        etag: m.rev.to_string(),
    }
}

/// Team members with their status from the set of emails with a Community account.
pub fn members<'a, S: std::hash::BuildHasher>(
    list: impl IntoIterator<Item = &'a TeamMember>,
    infrastructures: &[Infrastructure],
    active: &HashSet<Email, S>,
) -> Vec<pb::TeamMember> {
    list.into_iter()
        .map(|m| member(m, infrastructures, active.contains(&m.email)))
        .collect()
}

/// A support case.
pub fn support_case(c: &SupportCase) -> pb::SupportCase {
    pb::SupportCase {
        name: fmt::support_case(c.company, c.id),
        infrastructure: fmt::infrastructure(c.company, c.infrastructure),
        subject: c.subject.clone(),
        creator: c.creator.as_str().to_owned(),
        cc: c.cc.iter().map(|e| e.as_str().to_owned()).collect(),
        state: match c.state {
            CaseState::Open => pb::SupportCaseState::Open,
            CaseState::AwaitingApproval => pb::SupportCaseState::AwaitingApproval,
        }
        .into(),
        create_time: ts(c.create_time),
    }
}

/// An audit event.
pub fn event(e: &PortalEvent) -> pb::PortalEvent {
    pb::PortalEvent {
        sequence: i64::try_from(e.seq).unwrap_or(i64::MAX),
        actor: e.event.actor.clone(),
        action: e.event.action.clone(),
        target: e.event.target.clone(),
        detail: e.event.detail.clone(),
        create_time: ts(e.time),
    }
}

/// A capability from a request.
pub fn parse_capability(v: i32) -> Result<Capability, &'static str> {
    use pb::Capability as P;
    Ok(
        match P::try_from(v).map_err(|_| "is not a known capability")? {
            P::Unspecified => return Err("is required"),
            P::AccessPortal => Capability::AccessPortal,
            P::ViewHome => Capability::ViewHome,
            P::ViewSubscription => Capability::ViewSubscription,
            P::ViewAnalytics => Capability::ViewAnalytics,
            P::ViewMyTraining => Capability::ViewMyTraining,
            P::ManageUsers => Capability::ManageUsers,
            P::ManageCompanyAdmins => Capability::ManageCompanyAdmins,
            P::RegisterSupportCases => Capability::RegisterSupportCases,
            P::ViewOwnCases => Capability::ViewOwnCases,
            P::ViewAllCases => Capability::ViewAllCases,
            P::ApproveUnauthorizedCases => Capability::ApproveUnauthorizedCases,
            P::RemoveContacts => Capability::RemoveContacts,
            P::RegisterEnvironments => Capability::RegisterEnvironments,
            P::ReleaseEnvironmentSlots => Capability::ReleaseEnvironmentSlots,
            P::DownloadLicenses => Capability::DownloadLicenses,
            P::ReceiveDisruptiveEventNotifications => {
                Capability::ReceiveDisruptiveEventNotifications
            }
            P::ReceiveMaintenanceNotifications => Capability::ReceiveMaintenanceNotifications,
            P::ReceiveLicenseExpirationEmails => Capability::ReceiveLicenseExpirationEmails,
            P::ManageSecurityContact => Capability::ManageSecurityContact,
            P::ReceiveSecurityCommunications => Capability::ReceiveSecurityCommunications,
        },
    )
}

/// A notification kind from a request.
pub fn parse_notification_kind(v: i32) -> Result<NotificationKind, &'static str> {
    match pb::NotificationKind::try_from(v) {
        Ok(pb::NotificationKind::DisruptiveEvents) => Ok(NotificationKind::DisruptiveEvents),
        Ok(pb::NotificationKind::Maintenance) => Ok(NotificationKind::Maintenance),
        Ok(pb::NotificationKind::LicenseExpiration) => Ok(NotificationKind::LicenseExpiration),
        Ok(pb::NotificationKind::SecurityCommunications) => {
            Ok(NotificationKind::SecurityCommunications)
        }
        Ok(pb::NotificationKind::Unspecified) => Err("is required"),
        Err(_) => Err("is not a known notification kind"),
    }
}

/// How a grant reads in `CheckCapabilityResponse.granted_by`.
pub fn grant(company: Uuid, g: Grant) -> String {
    match g {
        Grant::CompanyAdmin => "company admin".into(),
        Grant::InfrastructureAdmin(i) => {
            format!(
                "infrastructure admin of {}",
                fmt::infrastructure(company, i)
            )
        }
        Grant::Member => "member".into(),
        Grant::SupportContact => "support contact".into(),
        Grant::SecurityContact => "security contact".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_of_the_contract_maps_to_the_domain() {
        let mut seen = Vec::new();
        for v in 1..=20 {
            seen.push(parse_capability(v).unwrap());
        }
        assert_eq!(seen, Capability::ALL.to_vec());
        assert!(parse_capability(0).is_err());
        assert!(parse_capability(21).is_err());
    }
}
