//! The `portal.v1` API as its callers use it, through the real services: every capability of
//! every access level (seed 004's three lists, plus the security contact and support contacts)
//! and the notification recipients; the O11 add-member flow (R72–R75) and company admins
//! (R69); authentication, company isolation and validation over every RPC; and support
//! contacts, which the ODC sync never creates, removes or upgrades (R64).
//!
//! The security tables need calls the harness's typed clients cannot make (no token at all, an
//! operator token with `x-acting-for`, a person calling `Sync.ListPortalEvents`), so they run
//! against a portal-sync started alone by [`Bare`] — the same server, on the same backend, with
//! raw channels.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::clients::Credentials as Creds;
use shared::testkit::pg::{self, TestDatabase};
use shared::testkit::server::TestServer;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::harness::*;

crate::e2e_tests!(
    every_capability_of_every_access_level,
    a_removed_support_contact_has_no_access_left,
    o11_add_member_flow,
    only_company_admins_assign_or_remove_company_admins,
    every_rpc_authenticates_its_caller,
    a_person_of_one_company_gets_nothing_of_another,
    bad_input_names_the_field_and_changes_nothing,
    the_sync_never_touches_support_contacts,
);

use portal::Capability as Cap;
use portal::InfrastructureKind as Kind;
use portal::InfrastructurePermission::{
    InfrastructureAdmin as INFRA_ADMIN, InfrastructureMember as INFRA_MEMBER,
};

// ---------------------------------------------------------------------------------------------
// Helpers over the harness's World (identity + portal-sync wired together).

fn org_scope() -> Option<id::Scope> {
    Some(id::Scope {
        kind: Some(id::scope::Kind::Organization(true)),
    })
}

/// An identity organization whose first administrator `admin` accepted the invitation, with a
/// read-only service account for portal-sync (a custom role holding `org.view_audit_trail`).
async fn identity_org(w: &World, admin: &str) -> Org {
    let name = w.create_org("Acme", admin).await;
    let (admin_user, admin_token) = w.accept_and_login(&name, admin, "").await;
    let reader = custom_role(
        w,
        &name,
        &admin_token,
        "Portal sync",
        &["org.view_audit_trail"],
    )
    .await;
    let sa = w
        .id_service_accounts(&admin_token)
        .create_service_account(id::CreateServiceAccountRequest {
            parent: name.clone(),
            service_account: Some(id::ServiceAccount {
                display_name: "portal-sync".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    w.id_access(&admin_token)
        .assign_role(id::AssignRoleRequest {
            parent: name.clone(),
            principal: sa.name.clone(),
            role: reader,
            scope: org_scope(),
            grant_period: None,
        })
        .await
        .unwrap();
    let sync_token = w
        .id_service_accounts(&admin_token)
        .create_service_account_token(id::CreateServiceAccountTokenRequest {
            parent: sa.name,
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    Org {
        name,
        admin_token,
        admin_user,
        sync_token,
        sync_token_name: String::new(),
    }
}

/// A custom organization role of identity with these permissions.
async fn custom_role(w: &World, org: &str, token: &str, display: &str, perms: &[&str]) -> String {
    w.id_roles(token)
        .create_role(id::CreateRoleRequest {
            parent: org.into(),
            role: Some(id::Role {
                display_name: display.into(),
                grants: perms
                    .iter()
                    .map(|p| id::PermissionGrant {
                        permission: (*p).into(),
                        stages: vec![],
                    })
                    .collect(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// Invites `email` to identity with an organization role (a built-in id such as `developer`,
/// or a role name), or none.
async fn invite(w: &World, org: &Org, email: &str, role: Option<&str>) -> String {
    let role = role.map_or_else(String::new, |r| {
        if r.contains('/') {
            r.to_owned()
        } else {
            format!("{}/roles/{r}", org.name)
        }
    });
    w.id_users(Some(&org.admin_token))
        .invite_user(id::InviteUserRequest {
            parent: org.name.clone(),
            email: email.into(),
            organization_role: role,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// Waits until portal-sync has applied, for `infra`, everything identity has committed.
async fn caught_up(w: &World, org: &Org, infra: &str) {
    let target = w
        .id_audit(&org.admin_token)
        .get_snapshot(id::GetSnapshotRequest {
            parent: org.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sequence;
    eventually("portal-sync to catch up with identity", || async {
        let st = w
            .sync(&w.portal_operator)
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: infra.to_owned(),
            })
            .await
            .ok()?
            .into_inner();
        (st.cursor >= target).then_some(())
    })
    .await;
}

/// A company created by the operator, with `admin` as its first company admin.
async fn create_company(w: &World, display: &str, admin: &str) -> String {
    w.companies(&w.portal_operator, None)
        .create_company(portal::CreateCompanyRequest {
            company: Some(portal::Company {
                display_name: display.into(),
                ..Default::default()
            }),
            first_admin_email: admin.into(),
            first_admin_display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// An infrastructure created by the operator; ODC ones are linked to `org`.
async fn create_infra(w: &World, company: &str, kind: Kind, org: Option<&Org>) -> String {
    w.companies(&w.portal_operator, None)
        .create_infrastructure(portal::CreateInfrastructureRequest {
            parent: company.into(),
            infrastructure: Some(portal::Infrastructure {
                display_name: format!("{kind:?}"),
                kind: kind.into(),
                identity_organization: org.map(|o| o.name.clone()).unwrap_or_default(),
                ..Default::default()
            }),
            identity_token: org.map(|o| o.sync_token.clone()).unwrap_or_default(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

fn access(infra: &str, p: portal::InfrastructurePermission) -> portal::InfrastructureAccess {
    portal::InfrastructureAccess {
        infrastructure: infra.into(),
        permission: p.into(),
        ..Default::default()
    }
}

/// A complete O11 add-member request.
fn add_request(
    company: &str,
    email: &str,
    company_permission: portal::CompanyPermission,
    infrastructure_access: Vec<portal::InfrastructureAccess>,
) -> portal::AddTeamMemberRequest {
    portal::AddTeamMemberRequest {
        parent: company.into(),
        email: email.into(),
        team_role: portal::TeamRole::Developer.into(),
        company_permission: company_permission.into(),
        infrastructure_access,
        ..Default::default()
    }
}

/// Adds a member, acting for `by`.
async fn add(w: &World, by: &str, req: portal::AddTeamMemberRequest) -> portal::TeamMember {
    w.members(Some(by))
        .add_team_member(req)
        .await
        .unwrap_or_else(|e| panic!("{by} adds a member: {e:?}"))
        .into_inner()
}

/// The team members `viewer` sees.
async fn team(w: &World, company: &str, viewer: &str) -> Vec<portal::TeamMember> {
    let page = w
        .members(Some(viewer))
        .list_team_members(portal::ListTeamMembersRequest {
            parent: company.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(page.next_page_token.is_empty());
    page.members
}

/// The team member with this email (as a company admin sees it).
async fn member_of(
    w: &World,
    company: &str,
    admin: &str,
    email: &str,
) -> Option<portal::TeamMember> {
    team(w, company, admin)
        .await
        .into_iter()
        .find(|m| m.email == email)
}

/// The company's portal audit trail, read by the operator.
async fn events(w: &World, company: &str) -> Vec<portal::PortalEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = w
            .sync(&w.portal_operator)
            .list_portal_events(portal::ListPortalEventsRequest {
                parent: company.into(),
                page_size: 1000,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The fields named by an INVALID_ARGUMENT answer (`google.rpc.BadRequest`).
fn bad<T: std::fmt::Debug>(r: Result<T, Status>) -> Vec<String> {
    let s = r.expect_err("INVALID_ARGUMENT expected");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let fields: Vec<String> = s
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert!(!fields.is_empty(), "a BadRequest naming the field: {s:?}");
    fields
}

fn set<S: AsRef<str>>(v: &[S]) -> BTreeSet<String> {
    v.iter().map(|s| s.as_ref().to_owned()).collect()
}

fn code<T>(r: &Result<T, Status>) -> Option<Code> {
    r.as_ref().err().map(Status::code)
}

fn reason(s: &Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 1. Every capability of every access level (CheckCapability) and notification recipients.

/// Company admin (first admin), associated with the O11 cloud infrastructure as a member.
const CA: &str = "ca@acme.example";
/// Infrastructure admin of the O11 cloud infrastructure (added by the company admin).
const IA: &str = "ia@acme.example";
/// Infrastructure admin of the O11 self-managed infrastructure.
const SMA: &str = "sma@acme.example";
/// Member with member access to the O11 cloud infrastructure.
const M: &str = "m@acme.example";
/// Member without infrastructure access, made the security contact by the infrastructure admin.
const SEC: &str = "sec@acme.example";
/// Support contact: CC'd on a case, not a team member.
const SC: &str = "sc@partner.example";
/// identity's Administrator: infrastructure admin of the ODC infrastructure through the sync.
const OA: &str = "admin@acme.example";
/// identity's Developer: member of the ODC infrastructure through the sync.
const OD: &str = "dev@acme.example";
/// Nobody of the company.
const X: &str = "stranger@elsewhere.example";

/// The columns of the capability table.
const PEOPLE: [&str; 9] = [CA, IA, SMA, M, SEC, SC, OA, OD, X];
const Y: bool = true;
const N: bool = false;

/// Where a capability is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum At {
    /// No infrastructure: company-wide (scoped ones: "on at least one").
    Company,
    SelfManaged,
    Cloud,
    Odc,
}

/// The infrastructure-scoped capabilities (proto comments): asked at every `At`.
const SCOPED: [Cap; 7] = [
    Cap::ManageUsers,
    Cap::RegisterSupportCases,
    Cap::ViewAllCases,
    Cap::ApproveUnauthorizedCases,
    Cap::RegisterEnvironments,
    Cap::ReleaseEnvironmentSlots,
    Cap::DownloadLicenses,
];

/// Seed 004's three lists (company admin; infrastructure admin; member) plus the security
/// contact and support contacts, one row per capability and place.
#[rustfmt::skip]
fn capability_table() -> Vec<(Cap, At, [bool; 9])> {
    use At::{Cloud, Company, Odc, SelfManaged as Sm};
    vec![
        //                                                CA IA SMA M SEC SC OA OD X
        // Every team member reaches the portal and reads Home, Subscription, Analytics and
        // My Training (members read-only); a support contact only has their cases.
        (Cap::AccessPortal, Company,                     [Y, Y, Y, Y, Y, N, Y, Y, N]),
        (Cap::ViewHome, Company,                         [Y, Y, Y, Y, Y, N, Y, Y, N]),
        (Cap::ViewSubscription, Company,                 [Y, Y, Y, Y, Y, N, Y, Y, N]),
        (Cap::ViewAnalytics, Company,                    [Y, Y, Y, Y, Y, N, Y, Y, N]),
        (Cap::ViewMyTraining, Company,                   [Y, Y, Y, Y, Y, N, Y, Y, N]),
        // Company admins manage users of every infrastructure; infrastructure admins of theirs.
        (Cap::ManageUsers, Company,                      [Y, Y, Y, N, N, N, Y, N, N]),
        (Cap::ManageUsers, Sm,                           [Y, N, Y, N, N, N, N, N, N]),
        (Cap::ManageUsers, Cloud,                        [Y, Y, N, N, N, N, N, N, N]),
        (Cap::ManageUsers, Odc,                          [Y, N, N, N, N, N, Y, N, N]),
        // Only company admins assign or remove company admins.
        (Cap::ManageCompanyAdmins, Company,              [Y, N, N, N, N, N, N, N, N]),
        // Company admins where they are associated (CA: cloud); infrastructure admins on
        // theirs; members where they have access (SEC has none).
        (Cap::RegisterSupportCases, Company,             [Y, Y, Y, Y, N, N, Y, Y, N]),
        (Cap::RegisterSupportCases, Sm,                  [N, N, Y, N, N, N, N, N, N]),
        (Cap::RegisterSupportCases, Cloud,               [Y, Y, N, Y, N, N, N, N, N]),
        (Cap::RegisterSupportCases, Odc,                 [N, N, N, N, N, N, Y, Y, N]),
        // Everyone with cases sees their own, support contacts included.
        (Cap::ViewOwnCases, Company,                     [Y, Y, Y, Y, Y, Y, Y, Y, N]),
        // Only the infrastructure's admins view all its cases.
        (Cap::ViewAllCases, Company,                     [N, Y, Y, N, N, N, Y, N, N]),
        (Cap::ViewAllCases, Sm,                          [N, N, Y, N, N, N, N, N, N]),
        (Cap::ViewAllCases, Cloud,                       [N, Y, N, N, N, N, N, N, N]),
        (Cap::ViewAllCases, Odc,                         [N, N, N, N, N, N, Y, N, N]),
        // The infrastructure's admins, and company admins (R76).
        (Cap::ApproveUnauthorizedCases, Company,         [Y, Y, Y, N, N, N, Y, N, N]),
        (Cap::ApproveUnauthorizedCases, Sm,              [Y, N, Y, N, N, N, N, N, N]),
        (Cap::ApproveUnauthorizedCases, Cloud,           [Y, Y, N, N, N, N, N, N, N]),
        (Cap::ApproveUnauthorizedCases, Odc,             [Y, N, N, N, N, N, Y, N, N]),
        // Only company admins remove contacts.
        (Cap::RemoveContacts, Company,                   [Y, N, N, N, N, N, N, N, N]),
        (Cap::RegisterEnvironments, Company,             [Y, Y, Y, N, N, N, Y, N, N]),
        (Cap::RegisterEnvironments, Sm,                  [Y, N, Y, N, N, N, N, N, N]),
        (Cap::RegisterEnvironments, Cloud,               [Y, Y, N, N, N, N, N, N, N]),
        (Cap::RegisterEnvironments, Odc,                 [Y, N, N, N, N, N, Y, N, N]),
        (Cap::ReleaseEnvironmentSlots, Company,          [Y, Y, Y, N, N, N, Y, N, N]),
        (Cap::ReleaseEnvironmentSlots, Sm,               [Y, N, Y, N, N, N, N, N, N]),
        (Cap::ReleaseEnvironmentSlots, Cloud,            [Y, Y, N, N, N, N, N, N, N]),
        (Cap::ReleaseEnvironmentSlots, Odc,              [Y, N, N, N, N, N, Y, N, N]),
        // Licenses: O11 self-managed only — not even admins get them elsewhere.
        (Cap::DownloadLicenses, Company,                 [Y, N, Y, N, N, N, N, N, N]),
        (Cap::DownloadLicenses, Sm,                      [Y, N, Y, N, N, N, N, N, N]),
        (Cap::DownloadLicenses, Cloud,                   [N, N, N, N, N, N, N, N, N]),
        (Cap::DownloadLicenses, Odc,                     [N, N, N, N, N, N, N, N, N]),
        // Notifications: disruptive events and license expiration for both admin levels
        // (an infrastructure narrows the infrastructure admins to its own) ...
        (Cap::ReceiveDisruptiveEventNotifications, Company, [Y, Y, Y, N, N, N, Y, N, N]),
        (Cap::ReceiveDisruptiveEventNotifications, Cloud,   [Y, Y, N, N, N, N, N, N, N]),
        (Cap::ReceiveLicenseExpirationEmails, Company,   [Y, Y, Y, N, N, N, Y, N, N]),
        (Cap::ReceiveLicenseExpirationEmails, Odc,       [Y, N, N, N, N, N, Y, N, N]),
        // ... maintenance only for infrastructure admins (not company admins).
        (Cap::ReceiveMaintenanceNotifications, Company, [N, Y, Y, N, N, N, Y, N, N]),
        (Cap::ReceiveMaintenanceNotifications, Cloud,   [N, Y, N, N, N, N, N, N, N]),
        (Cap::ReceiveMaintenanceNotifications, Odc,     [N, N, N, N, N, N, Y, N, N]),
        // Only company or infrastructure admins manage the security contact ...
        (Cap::ManageSecurityContact, Company,            [Y, Y, Y, N, N, N, Y, N, N]),
        (Cap::ManageSecurityContact, Cloud,              [Y, Y, N, N, N, N, N, N, N]),
        // ... who alone receives security communications.
        (Cap::ReceiveSecurityCommunications, Company,    [N, N, N, N, Y, N, N, N, N]),
        (Cap::ReceiveSecurityCommunications, Cloud,      [N, N, N, N, Y, N, N, N, N]),
    ]
}

/// The company of the capability table: every level, each person holding only their own.
struct Levels {
    company: String,
    sm: String,
    cloud: String,
    odc: String,
}

impl Levels {
    fn at(&self, at: At) -> String {
        match at {
            At::Company => String::new(),
            At::SelfManaged => self.sm.clone(),
            At::Cloud => self.cloud.clone(),
            At::Odc => self.odc.clone(),
        }
    }
}

async fn levels(w: &World) -> Levels {
    let org = identity_org(w, OA).await;
    invite(w, &org, OD, Some("developer")).await;
    let company = create_company(w, "Acme Inc", CA).await;
    let sm = create_infra(w, &company, Kind::O11SelfManaged, None).await;
    let cloud = create_infra(w, &company, Kind::O11Cloud, None).await;
    let odc = create_infra(w, &company, Kind::Odc, Some(&org)).await;
    use portal::CompanyPermission::Member as MEMBER;
    let mut ia = add_request(&company, IA, MEMBER, vec![access(&cloud, INFRA_ADMIN)]);
    ia.team_role = portal::TeamRole::Manager.into();
    add(w, CA, ia).await;
    add(
        w,
        CA,
        add_request(&company, SMA, MEMBER, vec![access(&sm, INFRA_ADMIN)]),
    )
    .await;
    add(
        w,
        CA,
        add_request(&company, M, MEMBER, vec![access(&cloud, INFRA_MEMBER)]),
    )
    .await;
    let sec = add(w, CA, add_request(&company, SEC, MEMBER, vec![])).await;
    let set_sec = |who: &'static str| {
        let name = sec.name.clone();
        async move {
            w.members(Some(who))
                .set_security_contact(portal::SetSecurityContactRequest {
                    name,
                    phone: "+351 210 000 000".into(),
                })
                .await
        }
    };
    // R70: neither a member nor the person themselves may; an infrastructure admin may.
    for who in [M, SEC] {
        assert_eq!(
            code(&set_sec(who).await),
            Some(Code::PermissionDenied),
            "{who}"
        );
    }
    let sec = set_sec(IA).await.unwrap().into_inner();
    assert_eq!(
        (sec.team_role(), sec.phone.as_str()),
        (portal::TeamRole::Security, "+351 210 000 000")
    );
    // The company admin associates themselves with the cloud infrastructure.
    let ca = member_of(w, &company, CA, CA).await.unwrap();
    w.members(Some(CA))
        .update_team_member(portal::UpdateTeamMemberRequest {
            member: Some(portal::TeamMember {
                name: ca.name,
                infrastructure_access: vec![access(&cloud, INFRA_MEMBER)],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["infrastructure_access".into()],
            }),
            grant_development_permissions: false,
        })
        .await
        .unwrap();
    // A member opens a case with an outside person in CC: a support contact.
    let case = w
        .support(M)
        .create_support_case(portal::CreateSupportCaseRequest {
            parent: company.clone(),
            support_case: Some(portal::SupportCase {
                infrastructure: cloud.clone(),
                subject: "Slow deployments".into(),
                cc: vec![SC.into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.state(), portal::SupportCaseState::Open);
    // identity's Administrator and Developer arrive through the sync.
    caught_up(w, &org, &odc).await;
    let odc_records: Vec<(
        String,
        portal::InfrastructurePermission,
        portal::PermissionSource,
    )> = team(w, &company, CA)
        .await
        .iter()
        .flat_map(|m| {
            m.infrastructure_access
                .iter()
                .filter(|a| a.infrastructure == odc)
                .map(|a| (m.email.clone(), a.permission(), a.source()))
        })
        .collect();
    assert_eq!(
        odc_records,
        [
            (
                OA.to_owned(),
                INFRA_ADMIN,
                portal::PermissionSource::SourceOdc
            ),
            (
                OD.to_owned(),
                INFRA_MEMBER,
                portal::PermissionSource::SourceOdc
            ),
        ]
    );
    Levels {
        company,
        sm,
        cloud,
        odc,
    }
}

async fn check(
    w: &World,
    l: &Levels,
    who: &str,
    cap: Cap,
    at: At,
) -> portal::CheckCapabilityResponse {
    w.capabilities()
        .check_capability(portal::CheckCapabilityRequest {
            parent: l.company.clone(),
            email: who.into(),
            capability: cap.into(),
            infrastructure: l.at(at),
        })
        .await
        .unwrap_or_else(|e| panic!("{cap:?} at {at:?} for {who}: {e:?}"))
        .into_inner()
}

async fn every_capability_of_every_access_level(b: Backend) {
    let w = World::start(b).await;
    let l = levels(&w).await;
    let table = capability_table();

    // The table covers every capability of the contract, the scoped ones at every place.
    let all: BTreeSet<i32> = (1..100).filter(|i| Cap::try_from(*i).is_ok()).collect();
    let covered: BTreeSet<i32> = table.iter().map(|r| i32::from(r.0)).collect();
    assert_eq!(covered, all, "every capability but UNSPECIFIED");
    assert_eq!(all.len(), 20);
    for cap in SCOPED {
        let places: BTreeSet<At> = table.iter().filter(|r| r.0 == cap).map(|r| r.1).collect();
        assert_eq!(places.len(), 4, "{cap:?} at every place");
    }

    for (cap, at, expected) in &table {
        for (who, allowed) in PEOPLE.iter().zip(expected) {
            let r = check(&w, &l, who, *cap, *at).await;
            assert_eq!(r.allowed, *allowed, "{cap:?} at {at:?} for {who}: {r:?}");
            if r.allowed {
                assert!(
                    !r.granted_by.is_empty() && r.denial_reason.is_empty(),
                    "{cap:?} at {at:?} for {who}: why: {r:?}"
                );
            } else {
                assert!(
                    r.granted_by.is_empty() && !r.denial_reason.is_empty(),
                    "{cap:?} at {at:?} for {who}: why not: {r:?}"
                );
            }
        }
    }

    // "Why": the level that grants it.
    let why = [
        (
            CA,
            Cap::ManageCompanyAdmins,
            At::Company,
            vec!["company admin".to_owned()],
        ),
        (
            CA,
            Cap::DownloadLicenses,
            At::SelfManaged,
            vec!["company admin".into()],
        ),
        (
            SMA,
            Cap::DownloadLicenses,
            At::SelfManaged,
            vec![format!("infrastructure admin of {}", l.sm)],
        ),
        (
            IA,
            Cap::ManageUsers,
            At::Cloud,
            vec![format!("infrastructure admin of {}", l.cloud)],
        ),
        (
            OA,
            Cap::ViewAllCases,
            At::Odc,
            vec![format!("infrastructure admin of {}", l.odc)],
        ),
        (M, Cap::ViewHome, At::Company, vec!["member".into()]),
        (
            OD,
            Cap::RegisterSupportCases,
            At::Odc,
            vec!["member".into()],
        ),
        (
            SC,
            Cap::ViewOwnCases,
            At::Company,
            vec!["support contact".into()],
        ),
        (
            SEC,
            Cap::ReceiveSecurityCommunications,
            At::Company,
            vec!["security contact".into()],
        ),
    ];
    for (who, cap, at, granted_by) in why {
        let r = check(&w, &l, who, cap, at).await;
        assert_eq!(r.granted_by, granted_by, "{cap:?} at {at:?} for {who}");
    }
    let r = check(&w, &l, CA, Cap::DownloadLicenses, At::Cloud).await;
    assert!(r.denial_reason.contains("self-managed"), "{r:?}");

    // Notification recipients, by kind, for the company and for each infrastructure.
    use portal::NotificationKind as K;
    let recipients: [(K, At, &[&str]); 16] = [
        (K::DisruptiveEvents, At::Company, &[OA, CA, IA, SMA]),
        (K::DisruptiveEvents, At::SelfManaged, &[CA, SMA]),
        (K::DisruptiveEvents, At::Cloud, &[CA, IA]),
        (K::DisruptiveEvents, At::Odc, &[OA, CA]),
        (K::Maintenance, At::Company, &[OA, IA, SMA]),
        (K::Maintenance, At::SelfManaged, &[SMA]),
        (K::Maintenance, At::Cloud, &[IA]),
        (K::Maintenance, At::Odc, &[OA]),
        (K::LicenseExpiration, At::Company, &[OA, CA, IA, SMA]),
        (K::LicenseExpiration, At::SelfManaged, &[CA, SMA]),
        (K::LicenseExpiration, At::Cloud, &[CA, IA]),
        (K::LicenseExpiration, At::Odc, &[OA, CA]),
        (K::SecurityCommunications, At::Company, &[SEC]),
        (K::SecurityCommunications, At::SelfManaged, &[SEC]),
        (K::SecurityCommunications, At::Cloud, &[SEC]),
        (K::SecurityCommunications, At::Odc, &[SEC]),
    ];
    let kinds: BTreeSet<i32> = recipients.iter().map(|r| i32::from(r.0)).collect();
    let all_kinds: BTreeSet<i32> = (1..100).filter(|i| K::try_from(*i).is_ok()).collect();
    assert_eq!(kinds, all_kinds, "every kind of notification");
    for (kind, at, expected) in recipients {
        let got = w
            .capabilities()
            .list_notification_recipients(portal::ListNotificationRecipientsRequest {
                parent: l.company.clone(),
                kind: kind.into(),
                infrastructure: l.at(at),
            })
            .await
            .unwrap()
            .into_inner()
            .emails;
        assert_eq!(got, expected, "{kind:?} at {at:?}");
    }

    // Emails are matched normalized.
    let r = check(
        &w,
        &l,
        " CA@Acme.EXAMPLE ",
        Cap::ManageCompanyAdmins,
        At::Company,
    )
    .await;
    assert!(r.allowed, "{r:?}");

    // The API shows what the levels allow. The Team screen: company admins see everyone,
    // infrastructure admins the members of their infrastructures and the company admins,
    // members nothing (they may read their own record).
    let emails =
        |list: Vec<portal::TeamMember>| list.into_iter().map(|m| m.email).collect::<Vec<_>>();
    assert_eq!(
        emails(team(&w, &l.company, CA).await),
        [OA, CA, OD, IA, M, SEC, SMA]
    );
    assert_eq!(emails(team(&w, &l.company, IA).await), [CA, IA, M]);
    assert_eq!(emails(team(&w, &l.company, SMA).await), [CA, SMA]);
    assert_eq!(emails(team(&w, &l.company, OA).await), [OA, CA, OD]);
    for who in [M, SEC, OD, SC, X] {
        let r = w
            .members(Some(who))
            .list_team_members(portal::ListTeamMembersRequest {
                parent: l.company.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(&r), Some(Code::PermissionDenied), "{who}: {r:?}");
    }
    let all = team(&w, &l.company, CA).await;
    let name_of = |email: &str| {
        all.iter()
            .find(|m| m.email == email)
            .map(|m| m.name.clone())
            .unwrap()
    };
    for (who, whom, visible) in [
        (M, M, true),
        (M, SEC, false),
        (IA, M, true),
        (IA, SMA, false),
        (SMA, CA, true),
        (OA, OD, true),
        (OA, M, false),
        (SC, M, false),
    ] {
        let r = w
            .members(Some(who))
            .get_team_member(portal::GetTeamMemberRequest {
                name: name_of(whom),
            })
            .await;
        if visible {
            assert_eq!(r.unwrap().into_inner().email, whom, "{who} reads {whom}");
        } else {
            assert_eq!(code(&r), Some(Code::PermissionDenied), "{who} reads {whom}");
        }
    }
    // Cases: members and support contacts their own, infrastructure admins all of theirs.
    for (who, sees) in [(M, 1), (SC, 1), (IA, 1), (SMA, 0), (OA, 0), (CA, 0)] {
        let cases = w
            .support(who)
            .list_support_cases(portal::ListSupportCasesRequest {
                parent: l.company.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .support_cases;
        assert_eq!(cases.len(), sees, "{who}: {cases:?}");
    }

    // The security contact: cleared only by admins; then nobody receives security
    // communications, and the member keeps everything else (R71).
    let clear = |who: &'static str| {
        let name = name_of(SEC);
        let w = &w;
        async move {
            w.members(Some(who))
                .clear_security_contact(portal::ClearSecurityContactRequest { name })
                .await
        }
    };
    for who in [M, SEC, OD] {
        assert_eq!(
            code(&clear(who).await),
            Some(Code::PermissionDenied),
            "{who}"
        );
    }
    let cleared = clear(OA).await.unwrap().into_inner();
    assert_eq!(
        (cleared.team_role(), cleared.phone.as_str()),
        (portal::TeamRole::Other, "")
    );
    let r = check(&w, &l, SEC, Cap::ReceiveSecurityCommunications, At::Company).await;
    assert!(!r.allowed, "{r:?}");
    let r = check(&w, &l, SEC, Cap::ViewHome, At::Company).await;
    assert!(r.allowed, "{r:?}");
    let got = w
        .capabilities()
        .list_notification_recipients(portal::ListNotificationRecipientsRequest {
            parent: l.company.clone(),
            kind: K::SecurityCommunications.into(),
            infrastructure: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .emails;
    assert!(got.is_empty(), "{got:?}");

    // The API enforces what the capabilities say: only company admins remove contacts.
    let remove_sc = |who: &'static str| {
        let company = l.company.clone();
        let w = &w;
        async move {
            w.support(who)
                .remove_support_contact(portal::RemoveSupportContactRequest {
                    parent: company,
                    email: SC.into(),
                })
                .await
        }
    };
    for who in [IA, SMA, M, SEC, OA, OD] {
        assert_eq!(
            code(&remove_sc(who).await),
            Some(Code::PermissionDenied),
            "{who}"
        );
    }
    let contacts = |w: &World| {
        let company = l.company.clone();
        let mut s = w.support(CA);
        async move {
            s.list_support_contacts(portal::ListSupportContactsRequest { parent: company })
                .await
                .unwrap()
                .into_inner()
                .emails
        }
    };
    assert_eq!(contacts(&w).await, [SC]);
    remove_sc(CA).await.unwrap();
    assert!(contacts(&w).await.is_empty());
    let r = check(&w, &l, SC, Cap::ViewOwnCases, At::Company).await;
    assert!(!r.allowed, "a removed contact has no cases left: {r:?}");
}

/// RemoveSupportContact "removes a support contact from every case of the company and from the
/// contact list": afterwards they are no support contact and see nothing — whether they were
/// in CC or opened a case themselves.
async fn a_removed_support_contact_has_no_access_left(b: Backend) {
    const REQUESTER: &str = "requester@partner.example";
    let w = World::start(b).await;
    let company = create_company(&w, "Acme Inc", CA).await;
    let cloud = create_infra(&w, &company, Kind::O11Cloud, None).await;
    add(
        &w,
        CA,
        add_request(
            &company,
            M,
            portal::CompanyPermission::Member,
            vec![access(&cloud, INFRA_MEMBER)],
        ),
    )
    .await;
    let open_case = |who: &'static str, cc: &[&str]| {
        let req = portal::CreateSupportCaseRequest {
            parent: company.clone(),
            support_case: Some(portal::SupportCase {
                infrastructure: cloud.clone(),
                subject: "Help".into(),
                cc: cc.iter().map(|c| (*c).to_owned()).collect(),
                ..Default::default()
            }),
        };
        let w = &w;
        async move {
            w.support(who)
                .create_support_case(req)
                .await
                .unwrap()
                .into_inner()
        }
    };
    open_case(M, &[SC]).await;
    // An outside requester's case is held; once approved, they are an approved contact.
    let held = open_case(REQUESTER, &[]).await;
    assert_eq!(held.state(), portal::SupportCaseState::AwaitingApproval);
    w.support(CA)
        .approve_support_case(portal::ApproveSupportCaseRequest {
            name: held.name.clone(),
        })
        .await
        .unwrap();
    let contacts = || {
        let mut s = w.support(CA);
        let parent = company.clone();
        async move {
            s.list_support_contacts(portal::ListSupportContactsRequest { parent })
                .await
                .unwrap()
                .into_inner()
                .emails
        }
    };
    assert_eq!(contacts().await, [REQUESTER, SC]);

    for who in [SC, REQUESTER] {
        w.support(CA)
            .remove_support_contact(portal::RemoveSupportContactRequest {
                parent: company.clone(),
                email: who.into(),
            })
            .await
            .unwrap();
        // Both the CC'd contact and the one who opened a case lose every case: a removed
        // creator's case stays in the company's records, hidden from them.
        assert!(
            !contacts().await.iter().any(|c| c == who),
            "{who} is no longer a support contact"
        );
        let r = check_in(&w, &company, who, Cap::ViewOwnCases).await;
        assert!(!r.allowed, "{who} has no cases left: {r:?}");
        let r = w
            .support(who)
            .list_support_cases(portal::ListSupportCasesRequest {
                parent: company.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(&r), Some(Code::PermissionDenied), "{who}: {r:?}");
    }
    // No longer on the contact list: the requester's next case is held again.
    let again = open_case(REQUESTER, &[]).await;
    assert_eq!(again.state(), portal::SupportCaseState::AwaitingApproval);
}

// ---------------------------------------------------------------------------------------------
// 2. The O11 add-member flow (R72–R75) and company admins (R69).

async fn o11_add_member_flow(b: Backend) {
    use portal::CompanyPermission::Member as MEMBER;
    let w = World::start(b).await;
    let org = identity_org(&w, OA).await;
    let company = create_company(&w, "Acme Inc", CA).await;
    let cloud = create_infra(&w, &company, Kind::O11Cloud, None).await;
    let hybrid = create_infra(&w, &company, Kind::O11Hybrid, None).await;
    let sentry = create_infra(&w, &company, Kind::O11Sentry, None).await;
    let sm = create_infra(&w, &company, Kind::O11SelfManaged, None).await;
    let odc = create_infra(&w, &company, Kind::Odc, Some(&org)).await;
    add(
        &w,
        CA,
        add_request(&company, IA, MEMBER, vec![access(&cloud, INFRA_ADMIN)]),
    )
    .await;
    // The sync has brought identity's Administrator (so it writes nothing meanwhile).
    caught_up(&w, &org, &odc).await;
    let ca = || w.members(Some(CA));

    // R72: email, team role and company permission are required — all named at once, and
    // each on its own. Nothing is added.
    let team_before = team(&w, &company, CA).await;
    let events_before = events(&w, &company).await;
    let full = add_request(
        &company,
        "new@acme.example",
        MEMBER,
        vec![access(&cloud, INFRA_MEMBER)],
    );
    let none = portal::AddTeamMemberRequest {
        parent: company.clone(),
        ..Default::default()
    };
    assert_eq!(
        set(&bad(ca().add_team_member(none).await)),
        set(&["email", "team_role", "company_permission"])
    );
    let missing = [
        (
            "email",
            portal::AddTeamMemberRequest {
                email: String::new(),
                ..full.clone()
            },
        ),
        (
            "email",
            portal::AddTeamMemberRequest {
                email: "not-an-email".into(),
                ..full.clone()
            },
        ),
        (
            "team_role",
            portal::AddTeamMemberRequest {
                team_role: 0,
                ..full.clone()
            },
        ),
        (
            "company_permission",
            portal::AddTeamMemberRequest {
                company_permission: 0,
                ..full.clone()
            },
        ),
    ];
    for (field, req) in missing {
        assert_eq!(bad(ca().add_team_member(req).await), [field]);
    }
    assert_eq!(team(&w, &company, CA).await, team_before, "nothing added");
    assert_eq!(events(&w, &company).await, events_before);
    // Per-infrastructure permissions are optional.
    let plain = add(
        &w,
        CA,
        add_request(&company, "noinfra@acme.example", MEMBER, vec![]),
    )
    .await;
    assert!(plain.infrastructure_access.is_empty());

    // R73: the LifeTime invitation only for O11 Cloud and hybrid; the username is the email.
    let lifetime = [
        ("cloud", &cloud, &[][..]),
        ("hybrid", &hybrid, &[]),
        ("sentry", &sentry, &["invite_to_lifetime"]),
        ("self-managed", &sm, &["invite_to_lifetime"]),
        (
            "odc",
            &odc,
            &[
                "infrastructure_access[0].infrastructure",
                "invite_to_lifetime",
            ],
        ),
    ];
    for (kind, infra, refused) in lifetime {
        let email = format!("lt-{kind}@acme.example");
        let mut req = add_request(
            &company,
            &format!(" LT-{kind}@Acme.example "),
            MEMBER,
            vec![access(infra, INFRA_MEMBER)],
        );
        req.invite_to_lifetime = true;
        let r = ca().add_team_member(req).await;
        if refused.is_empty() {
            let m = r.unwrap().into_inner();
            assert_eq!(
                (m.email.as_str(), m.lifetime_username.as_str()),
                (&*email, &*email)
            );
            assert_eq!(m.status(), portal::MemberStatus::Pending);
            assert_eq!(
                m.infrastructure_access[0].source(),
                portal::PermissionSource::SourceManual
            );
        } else {
            assert_eq!(set(&bad(r)), set(refused), "{kind}");
            assert!(
                member_of(&w, &company, CA, &email).await.is_none(),
                "{kind}"
            );
        }
    }
    // Also refused when any infrastructure named is not Cloud or hybrid, or none is named.
    for infras in [vec![&cloud, &sentry], vec![]] {
        let mut req = add_request(
            &company,
            "lt-mixed@acme.example",
            MEMBER,
            infras.iter().map(|i| access(i, INFRA_MEMBER)).collect(),
        );
        req.invite_to_lifetime = true;
        assert_eq!(bad(ca().add_team_member(req).await), ["invite_to_lifetime"]);
    }
    // Sentry members are fine without the invitation.
    let s = add(
        &w,
        CA,
        add_request(
            &company,
            "lt-sentry@acme.example",
            MEMBER,
            vec![access(&sentry, INFRA_MEMBER)],
        ),
    )
    .await;
    assert!(s.lifetime_username.is_empty());

    // R74/R75: development permissions only when adding, audited as `Administrator` — when a
    // company admin adds, and when an infrastructure admin adds on their infrastructure.
    let with_dev = |email: &str| {
        let mut r = add_request(&company, email, MEMBER, vec![access(&cloud, INFRA_MEMBER)]);
        r.grant_development_permissions = true;
        r
    };
    let dp = add(&w, CA, with_dev("dp@acme.example")).await;
    let dp2 = add(&w, IA, with_dev("dp2@acme.example")).await;
    assert!(dp.development_permissions && dp2.development_permissions);
    let trail = events(&w, &company).await;
    for (m, by) in [(&dp, CA), (&dp2, IA)] {
        let of: Vec<(&str, &str)> = trail
            .iter()
            .filter(|e| e.target == m.name)
            .map(|e| (e.actor.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            of,
            [
                (by, "member.added"),
                ("Administrator", "development_permissions.granted")
            ],
            "{}",
            m.email
        );
    }
    let granted: Vec<&str> = trail
        .iter()
        .filter(|e| e.action == "development_permissions.granted")
        .map(|e| e.target.as_str())
        .collect();
    assert_eq!(granted, [dp.name.as_str(), dp2.name.as_str()]);

    // Never on update — whoever asks, with whatever mask; nothing changes.
    let target = member_of(&w, &company, CA, "lt-cloud@acme.example")
        .await
        .unwrap();
    assert!(!target.development_permissions);
    let trail_before = events(&w, &company).await;
    for (who, paths) in [
        (CA, vec!["display_name"]),
        (IA, vec!["display_name"]),
        (CA, vec!["infrastructure_access"]),
    ] {
        let r = w
            .members(Some(who))
            .update_team_member(portal::UpdateTeamMemberRequest {
                member: Some(portal::TeamMember {
                    name: target.name.clone(),
                    display_name: "Renamed".into(),
                    infrastructure_access: vec![access(&cloud, INFRA_MEMBER)],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
                grant_development_permissions: true,
            })
            .await;
        assert_eq!(bad(r), ["grant_development_permissions"], "{who} {paths:?}");
    }
    assert_eq!(
        member_of(&w, &company, CA, "lt-cloud@acme.example").await,
        Some(target.clone())
    );
    assert_eq!(events(&w, &company).await, trail_before);
    // The same edit without the flag works and grants nothing.
    let renamed = ca()
        .update_team_member(portal::UpdateTeamMemberRequest {
            member: Some(portal::TeamMember {
                name: target.name.clone(),
                display_name: "Renamed".into(),
                etag: target.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            grant_development_permissions: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "Renamed");
    assert!(!renamed.development_permissions);

    // An existing email is ALREADY_EXISTS, whatever its case.
    let e = ca()
        .add_team_member(add_request(&company, "DP@acme.example", MEMBER, vec![]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::AlreadyExists, "MEMBER_EXISTS")
    );
}

async fn only_company_admins_assign_or_remove_company_admins(b: Backend) {
    use portal::CompanyPermission::{Admin as ADMIN, Member as MEMBER};
    let w = World::start(b).await;
    let company = create_company(&w, "Acme Inc", CA).await;
    let cloud = create_infra(&w, &company, Kind::O11Cloud, None).await;
    add(
        &w,
        CA,
        add_request(&company, IA, MEMBER, vec![access(&cloud, INFRA_ADMIN)]),
    )
    .await;
    let m = add(
        &w,
        CA,
        add_request(&company, M, MEMBER, vec![access(&cloud, INFRA_MEMBER)]),
    )
    .await;
    let ca = member_of(&w, &company, CA, CA).await.unwrap();
    let team_before = team(&w, &company, CA).await;
    let events_before = events(&w, &company).await;

    // R69: an infrastructure admin and a member get PERMISSION_DENIED, and change nothing.
    for who in [IA, M] {
        let t = || w.members(Some(who));
        let r = t()
            .assign_company_admin(portal::AssignCompanyAdminRequest {
                name: m.name.clone(),
            })
            .await;
        assert_eq!(
            code(&r),
            Some(Code::PermissionDenied),
            "{who} assigns: {r:?}"
        );
        let r = t()
            .remove_company_admin(portal::RemoveCompanyAdminRequest {
                name: ca.name.clone(),
            })
            .await;
        assert_eq!(
            code(&r),
            Some(Code::PermissionDenied),
            "{who} removes: {r:?}"
        );
        // Nor by adding one, or by editing or removing one.
        let r = t()
            .add_team_member(add_request(
                &company,
                "boss@acme.example",
                ADMIN,
                vec![access(&cloud, INFRA_MEMBER)],
            ))
            .await;
        assert_eq!(code(&r), Some(Code::PermissionDenied), "{who} adds: {r:?}");
        let r = t()
            .update_team_member(portal::UpdateTeamMemberRequest {
                member: Some(portal::TeamMember {
                    name: ca.name.clone(),
                    display_name: "Not the boss".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: false,
            })
            .await;
        assert_eq!(code(&r), Some(Code::PermissionDenied), "{who} edits: {r:?}");
        let r = t()
            .remove_team_member(portal::RemoveTeamMemberRequest {
                name: ca.name.clone(),
            })
            .await;
        assert_eq!(
            code(&r),
            Some(Code::PermissionDenied),
            "{who} deletes: {r:?}"
        );
    }
    assert_eq!(team(&w, &company, CA).await, team_before);
    assert_eq!(events(&w, &company).await, events_before);

    // A company admin assigns and removes; the last one cannot be removed.
    let promoted = w
        .members(Some(CA))
        .assign_company_admin(portal::AssignCompanyAdminRequest {
            name: m.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(promoted.company_permission(), ADMIN);
    assert_eq!(
        promoted.infrastructure_access, m.infrastructure_access,
        "only the company permission changes"
    );
    let r = check_in(&w, &company, M, Cap::ManageCompanyAdmins).await;
    assert!(r.allowed, "{r:?}");
    // The new company admin can now do it too.
    let demoted = w
        .members(Some(M))
        .remove_company_admin(portal::RemoveCompanyAdminRequest {
            name: ca.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(demoted.company_permission(), MEMBER);
    let e = w
        .members(Some(M))
        .remove_company_admin(portal::RemoveCompanyAdminRequest {
            name: m.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (Code::FailedPrecondition, "LAST_COMPANY_ADMIN")
    );
    let trail: Vec<(String, String, String)> = events(&w, &company)
        .await
        .into_iter()
        .skip(events_before.len())
        .map(|e| (e.actor, e.action, e.target))
        .collect();
    assert_eq!(
        trail,
        [
            (
                CA.to_owned(),
                "company_admin.assigned".to_owned(),
                m.name.clone()
            ),
            (
                M.to_owned(),
                "company_admin.removed".to_owned(),
                ca.name.clone()
            ),
        ]
    );
    // The former company admin lost the capability.
    let r = check_in(&w, &company, CA, Cap::ManageCompanyAdmins).await;
    assert!(!r.allowed, "{r:?}");
}

async fn check_in(
    w: &World,
    company: &str,
    who: &str,
    cap: Cap,
) -> portal::CheckCapabilityResponse {
    w.capabilities()
        .check_capability(portal::CheckCapabilityRequest {
            parent: company.into(),
            email: who.into(),
            capability: cap.into(),
            infrastructure: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

// ---------------------------------------------------------------------------------------------
// 3. Security: authentication, isolation between companies, validation.

/// portal-sync started alone on `backend`, reached through raw channels. The server comes
/// first: fields drop in order, so it stops before its data directory and database go away.
pub(crate) struct Bare {
    _server: TestServer,
    pub(crate) channel: Channel,
    pub(crate) operator: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pg: Option<TestDatabase>,
}

/// The service token acting for `who`.
pub(crate) fn person(who: &str) -> Creds {
    Creds::new(Some(SERVICE_TOKEN), Some(who))
}

/// Names of existing resources of one company, the targets of the tables' requests.
pub(crate) struct Targets {
    pub(crate) company: String,
    pub(crate) cloud: String,
    pub(crate) odc: String,
    /// The company admin: member name and email.
    pub(crate) admin: String,
    pub(crate) admin_email: String,
    /// A plain member with member access to `cloud`.
    pub(crate) member: String,
    pub(crate) member_email: String,
    /// A case of an outside requester, awaiting approval.
    pub(crate) case: String,
    /// A support contact (CC on `case`).
    pub(crate) contact: String,
}

/// A snapshot of everything a company has, to check that refused calls changed nothing.
#[derive(Debug, PartialEq)]
struct State {
    events: Vec<portal::PortalEvent>,
    members: Vec<portal::TeamMember>,
    cases: Vec<portal::SupportCase>,
    contacts: Vec<String>,
    infrastructures: Vec<portal::Infrastructure>,
}

impl Bare {
    pub(crate) async fn start(backend: Backend) -> Bare {
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let admin = pg::admin_url("e2e_portal_api")
                    .expect("the e2e_tests! macro skips PostgreSQL tests when TEST_PG_URL=off");
                Some(TestDatabase::create(&admin, "e2e_portal_api").await)
            }
        };
        let operator = format!("psync_op_{}", uuid::Uuid::new_v4().simple());
        let mut s = portal_sync_svc::config::Settings::default();
        s.data_dir = dir.path().to_path_buf();
        s.database_url = pg.as_ref().map(|db| db.url().to_owned());
        s.operator_token = Some(shared::auth::Secret::new(operator.clone()));
        s.service_tokens = vec![shared::auth::Secret::new(SERVICE_TOKEN.to_owned())];
        // No identity: the ODC infrastructure of the fixture is only a target here.
        s.sync.identity_url = "http://127.0.0.1:9".into();
        let server = TestServer::start(None, |listener, shutdown| {
            portal_sync_svc::serve(listener, s, shutdown)
        })
        .await;
        Bare {
            channel: server.channel(),
            _server: server,
            operator,
            dir,
            pg,
        }
    }

    fn op(&self) -> Creds {
        Creds::new(Some(&self.operator), None)
    }
    fn companies(&self, c: Creds) -> portal::companies_client::CompaniesClient<Authed> {
        portal::companies_client::CompaniesClient::with_interceptor(self.channel.clone(), c)
    }
    fn members(&self, c: Creds) -> portal::team_members_client::TeamMembersClient<Authed> {
        portal::team_members_client::TeamMembersClient::with_interceptor(self.channel.clone(), c)
    }
    fn community(
        &self,
        c: Creds,
    ) -> portal::community_accounts_client::CommunityAccountsClient<Authed> {
        portal::community_accounts_client::CommunityAccountsClient::with_interceptor(
            self.channel.clone(),
            c,
        )
    }
    fn support(&self, c: Creds) -> portal::support_client::SupportClient<Authed> {
        portal::support_client::SupportClient::with_interceptor(self.channel.clone(), c)
    }
    fn capabilities(&self, c: Creds) -> portal::capabilities_client::CapabilitiesClient<Authed> {
        portal::capabilities_client::CapabilitiesClient::with_interceptor(self.channel.clone(), c)
    }
    fn sync(&self, c: Creds) -> portal::sync_client::SyncClient<Authed> {
        portal::sync_client::SyncClient::with_interceptor(self.channel.clone(), c)
    }

    /// A company `admin@{domain}` administers, with an O11 cloud and an ODC infrastructure, a
    /// member, a held case of an outside requester and a support contact.
    pub(crate) async fn fixture(&self, domain: &str) -> Targets {
        let admin_email = format!("admin@{domain}");
        let member_email = format!("member@{domain}");
        let contact = format!("cc.{domain}@partner.example");
        let company = self
            .companies(self.op())
            .create_company(portal::CreateCompanyRequest {
                company: Some(portal::Company {
                    display_name: domain.into(),
                    ..Default::default()
                }),
                first_admin_email: admin_email.clone(),
                first_admin_display_name: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .name;
        let infra = |kind: Kind, org: &str, token: &str| {
            let mut c = self.companies(self.op());
            let req = portal::CreateInfrastructureRequest {
                parent: company.clone(),
                infrastructure: Some(portal::Infrastructure {
                    display_name: format!("{kind:?}"),
                    kind: kind.into(),
                    identity_organization: org.into(),
                    ..Default::default()
                }),
                identity_token: token.into(),
            };
            async move {
                c.create_infrastructure(req)
                    .await
                    .unwrap()
                    .into_inner()
                    .name
            }
        };
        let cloud = infra(Kind::O11Cloud, "", "").await;
        let odc = infra(
            Kind::Odc,
            &format!("organizations/{}", uuid::Uuid::new_v4()),
            "odc_sa_not_used",
        )
        .await;
        let admin = self
            .members(person(&admin_email))
            .list_team_members(portal::ListTeamMembersRequest {
                parent: company.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .members[0]
            .name
            .clone();
        let member = self
            .members(person(&admin_email))
            .add_team_member(add_request(
                &company,
                &member_email,
                portal::CompanyPermission::Member,
                vec![access(&cloud, INFRA_MEMBER)],
            ))
            .await
            .unwrap()
            .into_inner()
            .name;
        let case = self
            .support(person(&format!("requester.{domain}@partner.example")))
            .create_support_case(portal::CreateSupportCaseRequest {
                parent: company.clone(),
                support_case: Some(portal::SupportCase {
                    infrastructure: cloud.clone(),
                    subject: "Please help".into(),
                    cc: vec![contact.clone()],
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(case.state(), portal::SupportCaseState::AwaitingApproval);
        Targets {
            company,
            cloud,
            odc,
            admin,
            admin_email,
            member,
            member_email,
            case: case.name,
            contact,
        }
    }

    async fn state(&self, t: &Targets) -> State {
        let admin = || person(&t.admin_email);
        let events = self
            .sync(self.op())
            .list_portal_events(portal::ListPortalEventsRequest {
                parent: t.company.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let members = self
            .members(admin())
            .list_team_members(portal::ListTeamMembersRequest {
                parent: t.company.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .members;
        let cases = self
            .support(admin())
            .list_support_cases(portal::ListSupportCasesRequest {
                parent: t.company.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .support_cases;
        let contacts = self
            .support(admin())
            .list_support_contacts(portal::ListSupportContactsRequest {
                parent: t.company.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .emails;
        let infrastructures = self
            .companies(self.op())
            .list_infrastructures(portal::ListInfrastructuresRequest {
                parent: t.company.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .infrastructures;
        State {
            events,
            members,
            cases,
            contacts,
            infrastructures,
        }
    }
}

/// Who may call an RPC, as its proto comment says ("Needs: ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// The operator token.
    Operator,
    /// The service token, for no one in particular.
    Service,
    /// The operator or the service token.
    OperatorOrService,
    /// The operator, or the service token acting for a person of the company.
    OperatorOrPerson,
    /// The service token acting for a person (`x-acting-for`).
    Person,
}

type Fut<'a> = Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>>;
type Call = for<'a> fn(&'a Bare, Creds, &'a Targets) -> Fut<'a>;

macro_rules! rpc {
    ($name:literal, $needs:ident, $client:ident . $method:ident, |$t:ident| $req:expr) => {
        ($name, Needs::$needs, {
            fn call<'a>(p: &'a Bare, c: Creds, $t: &'a Targets) -> Fut<'a> {
                Box::pin(async move { p.$client(c).$method($req).await.map(|_| ()) })
            }
            call as Call
        })
    };
}

/// One well-formed request per RPC of `portal.v1`, aimed at `Targets`.
fn table() -> Vec<(&'static str, Needs, Call)> {
    vec![
        rpc!(
            "portal.v1.Companies/CreateCompany",
            Operator,
            companies.create_company,
            |_t| portal::CreateCompanyRequest {
                company: Some(portal::Company {
                    display_name: "New".into(),
                    ..Default::default()
                }),
                first_admin_email: "new@new.example".into(),
                first_admin_display_name: String::new(),
            }
        ),
        rpc!(
            "portal.v1.Companies/GetCompany",
            OperatorOrPerson,
            companies.get_company,
            |t| portal::GetCompanyRequest {
                name: t.company.clone()
            }
        ),
        rpc!(
            "portal.v1.Companies/CreateInfrastructure",
            Operator,
            companies.create_infrastructure,
            |t| portal::CreateInfrastructureRequest {
                parent: t.company.clone(),
                infrastructure: Some(portal::Infrastructure {
                    display_name: "Sentry".into(),
                    kind: Kind::O11Sentry.into(),
                    ..Default::default()
                }),
                identity_token: String::new(),
            }
        ),
        rpc!(
            "portal.v1.Companies/SetIdentityToken",
            Operator,
            companies.set_identity_token,
            |t| portal::SetIdentityTokenRequest {
                name: t.odc.clone(),
                identity_token: "psync-replacement".into(),
            }
        ),
        rpc!(
            "portal.v1.Companies/ListInfrastructures",
            OperatorOrPerson,
            companies.list_infrastructures,
            |t| portal::ListInfrastructuresRequest {
                parent: t.company.clone()
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/ListTeamMembers",
            Person,
            members.list_team_members,
            |t| portal::ListTeamMembersRequest {
                parent: t.company.clone(),
                ..Default::default()
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/GetTeamMember",
            Person,
            members.get_team_member,
            |t| portal::GetTeamMemberRequest {
                name: t.member.clone()
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/AddTeamMember",
            Person,
            members.add_team_member,
            |t| add_request(
                &t.company,
                "added@new.example",
                portal::CompanyPermission::Member,
                vec![access(&t.cloud, INFRA_MEMBER)],
            )
        ),
        rpc!(
            "portal.v1.TeamMembers/UpdateTeamMember",
            Person,
            members.update_team_member,
            |t| portal::UpdateTeamMemberRequest {
                member: Some(portal::TeamMember {
                    name: t.member.clone(),
                    display_name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: false,
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/RemoveTeamMember",
            Person,
            members.remove_team_member,
            |t| portal::RemoveTeamMemberRequest {
                name: t.member.clone()
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/AssignCompanyAdmin",
            Person,
            members.assign_company_admin,
            |t| portal::AssignCompanyAdminRequest {
                name: t.member.clone()
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/RemoveCompanyAdmin",
            Person,
            members.remove_company_admin,
            |t| portal::RemoveCompanyAdminRequest {
                name: t.admin.clone()
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/SetSecurityContact",
            Person,
            members.set_security_contact,
            |t| portal::SetSecurityContactRequest {
                name: t.member.clone(),
                phone: "+351 912 345 678".into(),
            }
        ),
        rpc!(
            "portal.v1.TeamMembers/ClearSecurityContact",
            Person,
            members.clear_security_contact,
            |t| portal::ClearSecurityContactRequest {
                name: t.member.clone()
            }
        ),
        rpc!(
            "portal.v1.CommunityAccounts/RegisterCommunityAccount",
            OperatorOrService,
            community.register_community_account,
            |t| portal::RegisterCommunityAccountRequest {
                email: t.member_email.clone()
            }
        ),
        rpc!(
            "portal.v1.CommunityAccounts/RemoveCommunityAccount",
            OperatorOrService,
            community.remove_community_account,
            |t| portal::RemoveCommunityAccountRequest {
                email: t.member_email.clone()
            }
        ),
        rpc!(
            "portal.v1.Support/CreateSupportCase",
            Person,
            support.create_support_case,
            |t| portal::CreateSupportCaseRequest {
                parent: t.company.clone(),
                support_case: Some(portal::SupportCase {
                    infrastructure: t.cloud.clone(),
                    subject: "Down".into(),
                    ..Default::default()
                }),
            }
        ),
        rpc!(
            "portal.v1.Support/ListSupportCases",
            Person,
            support.list_support_cases,
            |t| portal::ListSupportCasesRequest {
                parent: t.company.clone(),
                ..Default::default()
            }
        ),
        rpc!(
            "portal.v1.Support/ApproveSupportCase",
            Person,
            support.approve_support_case,
            |t| portal::ApproveSupportCaseRequest {
                name: t.case.clone()
            }
        ),
        rpc!(
            "portal.v1.Support/ListSupportContacts",
            Person,
            support.list_support_contacts,
            |t| portal::ListSupportContactsRequest {
                parent: t.company.clone()
            }
        ),
        rpc!(
            "portal.v1.Support/RemoveSupportContact",
            Person,
            support.remove_support_contact,
            |t| portal::RemoveSupportContactRequest {
                parent: t.company.clone(),
                email: t.contact.clone(),
            }
        ),
        rpc!(
            "portal.v1.Capabilities/CheckCapability",
            Service,
            capabilities.check_capability,
            |t| portal::CheckCapabilityRequest {
                parent: t.company.clone(),
                email: t.member_email.clone(),
                capability: Cap::AccessPortal.into(),
                infrastructure: String::new(),
            }
        ),
        rpc!(
            "portal.v1.Capabilities/ListNotificationRecipients",
            Service,
            capabilities.list_notification_recipients,
            |t| portal::ListNotificationRecipientsRequest {
                parent: t.company.clone(),
                kind: portal::NotificationKind::Maintenance.into(),
                infrastructure: String::new(),
            }
        ),
        rpc!(
            "portal.v1.Sync/GetSyncStatus",
            OperatorOrService,
            sync.get_sync_status,
            |t| portal::GetSyncStatusRequest {
                infrastructure: t.odc.clone()
            }
        ),
        rpc!("portal.v1.Sync/Resync", Operator, sync.resync, |t| {
            portal::ResyncRequest {
                infrastructure: t.odc.clone(),
            }
        }),
        // The proto says "Needs: a company admin"; the operator may read it too (the service's
        // rule table, and how the sync tests read it).
        rpc!(
            "portal.v1.Sync/ListPortalEvents",
            OperatorOrPerson,
            sync.list_portal_events,
            |t| portal::ListPortalEventsRequest {
                parent: t.company.clone(),
                ..Default::default()
            }
        ),
    ]
}

/// Every RPC of `portal.v1`, read from the proto.
fn portal_rpcs() -> BTreeSet<String> {
    let proto = include_str!("../../../proto/portal/v1/portal.proto");
    let mut service = "";
    let mut out = BTreeSet::new();
    for line in proto.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("service ") {
            service = rest.split_whitespace().next().unwrap_or_default();
        } else if let Some(rest) = line.strip_prefix("rpc ") {
            let method = rest.split('(').next().unwrap_or_default().trim();
            out.insert(format!("portal.v1.{service}/{method}"));
        }
    }
    out
}

async fn every_rpc_authenticates_its_caller(b: Backend) {
    let p = Bare::start(b).await;
    let t = p.fixture("acme.example").await;
    let rpcs = table();
    let named: BTreeSet<String> = rpcs.iter().map(|r| r.0.to_owned()).collect();
    assert_eq!(named, portal_rpcs(), "the table has every RPC, once");
    assert_eq!(named.len(), rpcs.len());
    let before = p.state(&t).await;

    let admin = Some(t.admin_email.as_str());
    for (method, needs, call) in rpcs {
        // No token (even naming a person), a forged one: UNAUTHENTICATED.
        for creds in [
            Creds::new(None, None),
            Creds::new(None, admin),
            Creds::new(Some("psync_svc_forged"), admin),
            Creds::new(Some(""), admin),
        ] {
            let r = call(&p, creds.clone(), &t).await;
            assert_eq!(
                code(&r),
                Some(Code::Unauthenticated),
                "{method} with {creds:?}: {r:?}"
            );
        }
        // A service acting for a person must say whom, with an email.
        if matches!(needs, Needs::Person | Needs::OperatorOrPerson) {
            for who in [None, Some("not-an-email")] {
                let r = call(&p, Creds::new(Some(SERVICE_TOKEN), who), &t).await;
                assert_eq!(bad(r), ["x-acting-for"], "{method} acting for {who:?}");
            }
        }
        // The operator does not act for people, nor ask what the service asks.
        if matches!(needs, Needs::Person | Needs::Service) {
            for who in [None, admin] {
                let r = call(&p, Creds::new(Some(&p.operator), who), &t).await;
                assert_eq!(
                    code(&r),
                    Some(Code::PermissionDenied),
                    "{method} by the operator: {r:?}"
                );
            }
        }
        // Services (for anyone) do not do what only the operator does.
        if needs == Needs::Operator {
            for who in [None, admin] {
                let r = call(&p, Creds::new(Some(SERVICE_TOKEN), who), &t).await;
                assert_eq!(
                    code(&r),
                    Some(Code::PermissionDenied),
                    "{method} by a service: {r:?}"
                );
            }
        }
    }
    assert_eq!(p.state(&t).await, before, "nothing changed");
}

async fn a_person_of_one_company_gets_nothing_of_another(b: Backend) {
    let p = Bare::start(b).await;
    let a = p.fixture("a.example").await;
    let bt = p.fixture("b.example").await;
    let before = p.state(&bt).await;

    // A's company admin and A's member, acting on B's names: refused everywhere. The
    // service-level RPCs act for no one (x-acting-for plays no part), and anyone may open a
    // case (held for approval: below).
    for who in [&a.admin_email, &a.member_email] {
        for (method, needs, call) in table() {
            if matches!(needs, Needs::Service | Needs::OperatorOrService)
                || method == "portal.v1.Support/CreateSupportCase"
            {
                continue;
            }
            let r = call(&p, person(who), &bt).await;
            assert_eq!(
                code(&r),
                Some(Code::PermissionDenied),
                "{who} on {method} of B: {r:?}"
            );
        }
    }
    assert_eq!(p.state(&bt).await, before, "nothing of B changed");

    // A company that does not exist is refused the same way to people (no existence leak);
    // the operator learns it is not there.
    let ghost = format!("companies/{}", uuid::Uuid::new_v4());
    let r = p
        .companies(person(&a.admin_email))
        .get_company(portal::GetCompanyRequest {
            name: ghost.clone(),
        })
        .await;
    assert_eq!(code(&r), Some(Code::PermissionDenied), "{r:?}");
    let r = p
        .companies(p.op())
        .get_company(portal::GetCompanyRequest { name: ghost })
        .await;
    assert_eq!(code(&r), Some(Code::NotFound), "{r:?}");

    // Requests about A that name B's resources: B's infrastructures are not A's, B's member
    // is not found under A.
    let ca = || person(&a.admin_email);
    let r = p
        .members(ca())
        .add_team_member(add_request(
            &a.company,
            "x@a.example",
            portal::CompanyPermission::Member,
            vec![access(&bt.cloud, INFRA_MEMBER)],
        ))
        .await;
    assert_eq!(bad(r), ["infrastructure_access[0].infrastructure"]);
    let r = p
        .members(ca())
        .update_team_member(portal::UpdateTeamMemberRequest {
            member: Some(portal::TeamMember {
                name: a.member.clone(),
                infrastructure_access: vec![access(&bt.cloud, INFRA_ADMIN)],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["infrastructure_access".into()],
            }),
            grant_development_permissions: false,
        })
        .await;
    assert_eq!(bad(r), ["member.infrastructure_access[0].infrastructure"]);
    let r = p
        .members(ca())
        .list_team_members(portal::ListTeamMembersRequest {
            parent: a.company.clone(),
            infrastructure: bt.cloud.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(bad(r), ["infrastructure"]);
    let r = p
        .support(ca())
        .create_support_case(portal::CreateSupportCaseRequest {
            parent: a.company.clone(),
            support_case: Some(portal::SupportCase {
                infrastructure: bt.cloud.clone(),
                subject: "Theirs".into(),
                ..Default::default()
            }),
        })
        .await;
    assert_eq!(bad(r), ["support_case.infrastructure"]);
    let r = p
        .capabilities(Creds::new(Some(SERVICE_TOKEN), None))
        .check_capability(portal::CheckCapabilityRequest {
            parent: a.company.clone(),
            email: a.admin_email.clone(),
            capability: Cap::ManageUsers.into(),
            infrastructure: bt.cloud.clone(),
        })
        .await;
    assert_eq!(bad(r), ["infrastructure"]);
    let r = p
        .capabilities(Creds::new(Some(SERVICE_TOKEN), None))
        .list_notification_recipients(portal::ListNotificationRecipientsRequest {
            parent: a.company.clone(),
            kind: portal::NotificationKind::Maintenance.into(),
            infrastructure: bt.cloud.clone(),
        })
        .await;
    assert_eq!(bad(r), ["infrastructure"]);
    let b_member_id = bt.member.rsplit('/').next().unwrap();
    let r = p
        .members(ca())
        .get_team_member(portal::GetTeamMemberRequest {
            name: format!("{}/members/{b_member_id}", a.company),
        })
        .await;
    assert_eq!(code(&r), Some(Code::NotFound), "{r:?}");
    assert_eq!(p.state(&bt).await, before, "nothing of B changed");

    // Anyone may open a case at B, held for approval (R76): A's admin becomes a support
    // contact of B, who sees that case and nothing else.
    let held = p
        .support(ca())
        .create_support_case(portal::CreateSupportCaseRequest {
            parent: bt.company.clone(),
            support_case: Some(portal::SupportCase {
                infrastructure: bt.cloud.clone(),
                subject: "From outside".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.state(), portal::SupportCaseState::AwaitingApproval);
    let seen = p
        .support(ca())
        .list_support_cases(portal::ListSupportCasesRequest {
            parent: bt.company.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .support_cases;
    assert_eq!(seen, std::slice::from_ref(&held));
    let r = p
        .members(ca())
        .list_team_members(portal::ListTeamMembersRequest {
            parent: bt.company.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(&r), Some(Code::PermissionDenied), "{r:?}");
    let after = p.state(&bt).await;
    assert_eq!(after.members, before.members);
    assert_eq!(after.cases.len(), before.cases.len() + 1);
}

async fn bad_input_names_the_field_and_changes_nothing(b: Backend) {
    let p = Bare::start(b).await;
    let t = p.fixture("acme.example").await;
    let before = p.state(&t).await;
    let ca = || person(&t.admin_email);
    let svc = || Creds::new(Some(SERVICE_TOKEN), None);
    let long = "x".repeat(101);
    let adding = |f: &dyn Fn(&mut portal::AddTeamMemberRequest)| {
        let mut r = add_request(
            &t.company,
            "new@acme.example",
            portal::CompanyPermission::Member,
            vec![access(&t.cloud, INFRA_MEMBER)],
        );
        f(&mut r);
        r
    };
    let update = |paths: &[&str], f: &dyn Fn(&mut portal::TeamMember)| {
        let mut m = portal::TeamMember {
            name: t.member.clone(),
            ..Default::default()
        };
        f(&mut m);
        portal::UpdateTeamMemberRequest {
            member: Some(m),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            grant_development_permissions: false,
        }
    };
    let case = |f: &dyn Fn(&mut portal::SupportCase)| {
        let mut c = portal::SupportCase {
            infrastructure: t.cloud.clone(),
            subject: "Help".into(),
            ..Default::default()
        };
        f(&mut c);
        portal::CreateSupportCaseRequest {
            parent: t.company.clone(),
            support_case: Some(c),
        }
    };
    let unknown_infra = format!("{}/infrastructures/{}", t.company, uuid::Uuid::new_v4());
    let infra = |f: &dyn Fn(&mut portal::CreateInfrastructureRequest)| {
        let mut r = portal::CreateInfrastructureRequest {
            parent: t.company.clone(),
            infrastructure: Some(portal::Infrastructure {
                display_name: "New".into(),
                kind: Kind::O11Cloud.into(),
                ..Default::default()
            }),
            identity_token: String::new(),
        };
        f(&mut r);
        r
    };
    let list = |f: &dyn Fn(&mut portal::ListTeamMembersRequest)| {
        let mut r = portal::ListTeamMembersRequest {
            parent: t.company.clone(),
            ..Default::default()
        };
        f(&mut r);
        r
    };

    let cases: Vec<(&str, Result<(), Status>, &[&str])> = vec![
        (
            "add: email",
            p.members(ca())
                .add_team_member(adding(&|r| r.email = "not-an-email".into()))
                .await
                .map(drop),
            &["email"],
        ),
        (
            "add: display name",
            p.members(ca())
                .add_team_member(adding(&|r| r.display_name.clone_from(&long)))
                .await
                .map(drop),
            &["display_name"],
        ),
        (
            "add: unknown team role",
            p.members(ca())
                .add_team_member(adding(&|r| r.team_role = 99))
                .await
                .map(drop),
            &["team_role"],
        ),
        (
            "add: unknown infrastructure",
            p.members(ca())
                .add_team_member(adding(&|r| {
                    r.infrastructure_access[0]
                        .infrastructure
                        .clone_from(&unknown_infra);
                }))
                .await
                .map(drop),
            &["infrastructure_access[0].infrastructure"],
        ),
        (
            "add: no permission",
            p.members(ca())
                .add_team_member(adding(&|r| r.infrastructure_access[0].permission = 0))
                .await
                .map(drop),
            &["infrastructure_access[0].permission"],
        ),
        (
            "add: an infrastructure twice",
            p.members(ca())
                .add_team_member(adding(&|r| {
                    r.infrastructure_access.push(access(&t.cloud, INFRA_ADMIN));
                }))
                .await
                .map(drop),
            &["infrastructure_access[1].infrastructure"],
        ),
        (
            "update: mask",
            p.members(ca())
                .update_team_member(update(&["email"], &|m| m.email = "x@y.example".into()))
                .await
                .map(drop),
            &["update_mask"],
        ),
        (
            "update: display name",
            p.members(ca())
                .update_team_member(update(&["display_name"], &|m| {
                    m.display_name.clone_from(&long);
                }))
                .await
                .map(drop),
            &["member.display_name"],
        ),
        (
            "update: team role",
            p.members(ca())
                .update_team_member(update(&["team_role"], &|m| m.team_role = 0))
                .await
                .map(drop),
            &["member.team_role"],
        ),
        (
            "update: name",
            p.members(ca())
                .update_team_member(update(&["display_name"], &|m| {
                    m.name = format!("{}/members/nope", t.company);
                }))
                .await
                .map(drop),
            &["member.name"],
        ),
        (
            "security contact: phone",
            p.members(ca())
                .set_security_contact(portal::SetSecurityContactRequest {
                    name: t.member.clone(),
                    phone: "12".into(),
                })
                .await
                .map(drop),
            &["phone"],
        ),
        (
            "security contact: no phone",
            p.members(ca())
                .set_security_contact(portal::SetSecurityContactRequest {
                    name: t.member.clone(),
                    phone: String::new(),
                })
                .await
                .map(drop),
            &["phone"],
        ),
        (
            "list: page size",
            p.members(ca())
                .list_team_members(list(&|r| r.page_size = -1))
                .await
                .map(drop),
            &["page_size"],
        ),
        (
            "list: page token",
            p.members(ca())
                .list_team_members(list(&|r| r.page_token = "garbage".into()))
                .await
                .map(drop),
            &["page_token"],
        ),
        (
            "list: permission without infrastructure",
            p.members(ca())
                .list_team_members(list(&|r| {
                    r.infrastructure_permission = INFRA_ADMIN.into();
                }))
                .await
                .map(drop),
            &["infrastructure_permission"],
        ),
        (
            "list: parent",
            p.members(ca())
                .list_team_members(list(&|r| r.parent = "companies/not-a-uuid".into()))
                .await
                .map(drop),
            &["parent"],
        ),
        (
            "get company: name",
            p.companies(ca())
                .get_company(portal::GetCompanyRequest {
                    name: format!("{}/extra", t.company),
                })
                .await
                .map(drop),
            &["name"],
        ),
        (
            "case: subject",
            p.support(ca())
                .create_support_case(case(&|c| c.subject = "  ".into()))
                .await
                .map(drop),
            &["support_case.subject"],
        ),
        (
            "case: cc",
            p.support(ca())
                .create_support_case(case(&|c| c.cc = vec!["nope".into()]))
                .await
                .map(drop),
            &["support_case.cc[0]"],
        ),
        (
            "case: infrastructure",
            p.support(ca())
                .create_support_case(case(&|c| c.infrastructure = String::new()))
                .await
                .map(drop),
            &["support_case.infrastructure"],
        ),
        (
            "remove contact: email",
            p.support(ca())
                .remove_support_contact(portal::RemoveSupportContactRequest {
                    parent: t.company.clone(),
                    email: "nope".into(),
                })
                .await
                .map(drop),
            &["email"],
        ),
        (
            "events: page size",
            p.sync(ca())
                .list_portal_events(portal::ListPortalEventsRequest {
                    parent: t.company.clone(),
                    page_size: -5,
                    ..Default::default()
                })
                .await
                .map(drop),
            &["page_size"],
        ),
        (
            "company: name and admin",
            p.companies(p.op())
                .create_company(portal::CreateCompanyRequest {
                    company: None,
                    first_admin_email: "nope".into(),
                    first_admin_display_name: String::new(),
                })
                .await
                .map(drop),
            &["company.display_name", "first_admin_email"],
        ),
        (
            "infrastructure: kind",
            p.companies(p.op())
                .create_infrastructure(infra(&|r| {
                    if let Some(i) = r.infrastructure.as_mut() {
                        i.kind = 0;
                    }
                }))
                .await
                .map(drop),
            &["infrastructure.kind"],
        ),
        (
            "infrastructure: display name",
            p.companies(p.op())
                .create_infrastructure(infra(&|r| {
                    if let Some(i) = r.infrastructure.as_mut() {
                        i.display_name = String::new();
                    }
                }))
                .await
                .map(drop),
            &["infrastructure.display_name"],
        ),
        (
            "infrastructure: ODC without organization and token",
            p.companies(p.op())
                .create_infrastructure(infra(&|r| {
                    if let Some(i) = r.infrastructure.as_mut() {
                        i.kind = Kind::Odc.into();
                    }
                }))
                .await
                .map(drop),
            &["infrastructure.identity_organization", "identity_token"],
        ),
        (
            "infrastructure: O11 with a token",
            p.companies(p.op())
                .create_infrastructure(infra(&|r| r.identity_token = "odc_sa_x".into()))
                .await
                .map(drop),
            &["identity_token"],
        ),
        (
            "check: capability",
            p.capabilities(svc())
                .check_capability(portal::CheckCapabilityRequest {
                    parent: t.company.clone(),
                    email: t.member_email.clone(),
                    capability: 0,
                    infrastructure: String::new(),
                })
                .await
                .map(drop),
            &["capability"],
        ),
        (
            "check: email and infrastructure",
            p.capabilities(svc())
                .check_capability(portal::CheckCapabilityRequest {
                    parent: t.company.clone(),
                    email: "nope".into(),
                    capability: Cap::ManageUsers.into(),
                    infrastructure: unknown_infra.clone(),
                })
                .await
                .map(drop),
            &["email", "infrastructure"],
        ),
        (
            "recipients: kind",
            p.capabilities(svc())
                .list_notification_recipients(portal::ListNotificationRecipientsRequest {
                    parent: t.company.clone(),
                    kind: 0,
                    infrastructure: String::new(),
                })
                .await
                .map(drop),
            &["kind"],
        ),
        (
            "community: email",
            p.community(svc())
                .register_community_account(portal::RegisterCommunityAccountRequest {
                    email: " ".into(),
                })
                .await
                .map(drop),
            &["email"],
        ),
    ];
    for (label, r, fields) in cases {
        assert_eq!(set(&bad(r)), set(fields), "{label}");
    }
    assert_eq!(p.state(&t).await, before, "nothing changed");
}

// ---------------------------------------------------------------------------------------------
// 4. R64: the sync never creates, removes or upgrades support contacts.

/// What a support contact is and has: the contact list, the cases each sees, and every
/// capability's answer for them.
#[derive(Debug, PartialEq)]
struct ContactsView {
    contacts: Vec<String>,
    cases: Vec<Vec<portal::SupportCase>>,
    answers: Vec<portal::CheckCapabilityResponse>,
    member_emails: Vec<String>,
}

async fn contacts_view(w: &World, company: &str, admin: &str, who: &[&str]) -> ContactsView {
    let contacts = w
        .support(admin)
        .list_support_contacts(portal::ListSupportContactsRequest {
            parent: company.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .emails;
    let mut cases = Vec::new();
    let mut answers = Vec::new();
    for person in who {
        cases.push(
            w.support(person)
                .list_support_cases(portal::ListSupportCasesRequest {
                    parent: company.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .support_cases,
        );
        for cap in (1..100).filter_map(|i| Cap::try_from(i).ok()) {
            answers.push(check_in(w, company, person, cap).await);
        }
    }
    let member_emails = team(w, company, admin)
        .await
        .into_iter()
        .map(|m| m.email)
        .collect();
    ContactsView {
        contacts,
        cases,
        answers,
        member_emails,
    }
}

async fn the_sync_never_touches_support_contacts(b: Backend) {
    /// CC'd on a case; also an identity user whose roles map to nothing.
    const CC: &str = "cc@acme.example";
    /// Opened a case (held for approval); also an identity user without a role.
    const REQUESTER: &str = "requester@acme.example";
    let w = World::start(b).await;
    let org = identity_org(&w, OA).await;
    let company = create_company(&w, "Acme Inc", CA).await;
    let odc = create_infra(&w, &company, Kind::Odc, Some(&org)).await;
    caught_up(&w, &org, &odc).await;
    assert!(member_of(&w, &company, CA, OA).await.is_some());

    // identity's Administrator (infrastructure admin through the sync) opens a case with CC in
    // CC; REQUESTER, nobody of the company, opens one that waits for approval.
    let open = w
        .support(OA)
        .create_support_case(portal::CreateSupportCaseRequest {
            parent: company.clone(),
            support_case: Some(portal::SupportCase {
                infrastructure: odc.clone(),
                subject: "Deploy fails".into(),
                cc: vec![CC.into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.state(), portal::SupportCaseState::Open);
    let held = w
        .support(REQUESTER)
        .create_support_case(portal::CreateSupportCaseRequest {
            parent: company.clone(),
            support_case: Some(portal::SupportCase {
                infrastructure: odc.clone(),
                subject: "Locked out".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.state(), portal::SupportCaseState::AwaitingApproval);

    let people = [CC, REQUESTER];
    let before = contacts_view(&w, &company, CA, &people).await;
    assert_eq!(before.contacts, [CC, REQUESTER]);
    assert_eq!(before.cases, [vec![open.clone()], vec![held.clone()]]);
    assert!(
        before
            .answers
            .iter()
            .filter(|r| r.allowed)
            .all(|r| r.granted_by == ["support contact"]),
        "support contacts have only their cases: {:?}",
        before.answers
    );
    let mentions = |events: &[portal::PortalEvent]| {
        events
            .iter()
            .filter(|e| people.iter().any(|p| e.detail.contains(p) || e.actor == *p))
            .cloned()
            .collect::<Vec<_>>()
    };
    let events_before = mentions(&events(&w, &company).await);

    // In identity they become users whose roles map to nothing.
    let builder = custom_role(
        &w,
        &org.name,
        &org.admin_token,
        "Builder",
        &["asset.create"],
    )
    .await;
    let viewer = custom_role(&w, &org.name, &org.admin_token, "Viewer", &["asset.open"]).await;
    let cc_user = invite(&w, &org, CC, Some(&builder)).await;
    let requester_user = invite(&w, &org, REQUESTER, None).await;
    caught_up(&w, &org, &odc).await;
    assert_eq!(
        contacts_view(&w, &company, CA, &people).await,
        before,
        "not created as members, not removed, not upgraded"
    );

    // Role changes that still map to nothing, deactivation and deletion: still untouched. A
    // Developer invited in the same batch shows the sync did process it.
    let assign = |principal: String, role: String| {
        let w = &w;
        let org = &org;
        async move {
            w.id_access(&org.admin_token)
                .assign_role(id::AssignRoleRequest {
                    parent: org.name.clone(),
                    principal,
                    role,
                    scope: org_scope(),
                    grant_period: None,
                })
                .await
                .unwrap();
        }
    };
    assign(cc_user.clone(), viewer.clone()).await;
    assign(requester_user.clone(), builder.clone()).await;
    w.id_roles(&org.admin_token)
        .update_role(id::UpdateRoleRequest {
            role: Some(id::Role {
                name: viewer,
                grants: vec![id::PermissionGrant {
                    permission: "asset.change".into(),
                    stages: vec![],
                }],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["grants".into()],
            }),
        })
        .await
        .unwrap();
    w.id_users(Some(&org.admin_token))
        .deactivate_user(id::DeactivateUserRequest {
            name: requester_user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    invite(&w, &org, OD, Some("developer")).await;
    caught_up(&w, &org, &odc).await;
    let od = member_of(&w, &company, CA, OD).await;
    assert_eq!(
        od.map(|m| m
            .infrastructure_access
            .iter()
            .map(portal::InfrastructureAccess::permission)
            .collect::<Vec<_>>()),
        Some(vec![INFRA_MEMBER]),
        "the sync ran"
    );
    let mut now = contacts_view(&w, &company, CA, &people).await;
    now.member_emails.retain(|e| e != OD);
    assert_eq!(now, before);

    w.id_users(Some(&org.admin_token))
        .activate_user(id::ActivateUserRequest {
            name: requester_user,
            etag: String::new(),
        })
        .await
        .unwrap();
    w.id_users(Some(&org.admin_token))
        .delete_user(id::DeleteUserRequest {
            name: cc_user,
            etag: String::new(),
        })
        .await
        .unwrap();
    caught_up(&w, &org, &odc).await;
    let mut now = contacts_view(&w, &company, CA, &people).await;
    now.member_emails.retain(|e| e != OD);
    assert_eq!(now, before);
    // The sync wrote nothing about them: the held case is still held, and no event since.
    assert_eq!(mentions(&events(&w, &company).await), events_before);
}
