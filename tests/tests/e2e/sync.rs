//! The ODC sync: identity changes become Customer Portal records, and only those.

use std::collections::BTreeMap;

use rand::{RngExt as _, SeedableRng as _};
use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use tonic::Code;

use crate::harness::*;

crate::e2e_tests!(
    odc_records_follow_organization_roles,
    pending_until_a_community_account_and_the_sync_touches_only_odc_access,
    random_mutations_with_restarts_converge_to_a_fresh_derivation,
    with_identity_stopped_the_lag_is_reported_and_sync_recovers,
    a_revoked_identity_token_is_reported_and_a_replaced_one_takes_over,
    an_odc_security_contact_whose_user_is_deleted_stops_receiving_security_communications,
);

/// The company admin acted for in portal calls.
const COMPANY_ADMIN: &str = "ca@acme.example";

pub(crate) struct Setup {
    pub(crate) org: Org,
    pub(crate) company: String,
    pub(crate) infra: String,
}

fn org_scope() -> Option<id::Scope> {
    Some(id::Scope {
        kind: Some(id::scope::Kind::Organization(true)),
    })
}

/// An identity organization, its portal company and an ODC infrastructure linked to it.
pub(crate) async fn setup(w: &World) -> Setup {
    let org = w.create_org("Acme", "admin@acme.example").await;
    // The display name is set after the sync created the (then nameless) member: the sync
    // fills it in.
    let (admin_user, admin_token) = w
        .accept_and_login(&org, "admin@acme.example", "Ada Admin")
        .await;
    // A read-only service account for portal-sync.
    let reader = w
        .id_roles(&admin_token)
        .create_role(id::CreateRoleRequest {
            parent: org.clone(),
            role: Some(id::Role {
                display_name: "Portal sync".into(),
                grants: vec![id::PermissionGrant {
                    permission: "org.view_audit_trail".into(),
                    stages: vec![],
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let sa = w
        .id_service_accounts(&admin_token)
        .create_service_account(id::CreateServiceAccountRequest {
            parent: org.clone(),
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
            parent: org.clone(),
            principal: sa.name.clone(),
            role: reader.name,
            scope: org_scope(),
            grant_period: None,
        })
        .await
        .unwrap();
    let created = w
        .id_service_accounts(&admin_token)
        .create_service_account_token(id::CreateServiceAccountTokenRequest {
            parent: sa.name,
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let sync_token = created.secret;
    let sync_token_name = created.token.map(|t| t.name).unwrap_or_default();
    let company = w
        .companies(&w.portal_operator, None)
        .create_company(portal::CreateCompanyRequest {
            company: Some(portal::Company {
                display_name: "Acme Inc".into(),
                ..Default::default()
            }),
            first_admin_email: COMPANY_ADMIN.into(),
            first_admin_display_name: "Carla".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let infra = w
        .companies(&w.portal_operator, None)
        .create_infrastructure(portal::CreateInfrastructureRequest {
            parent: company.clone(),
            infrastructure: Some(portal::Infrastructure {
                display_name: "ODC".into(),
                kind: portal::InfrastructureKind::Odc.into(),
                identity_organization: org.clone(),
                ..Default::default()
            }),
            identity_token: sync_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    Setup {
        org: Org {
            name: org,
            admin_token,
            admin_user,
            sync_token,
            sync_token_name,
        },
        company,
        infra,
    }
}

/// The ODC records of the infrastructure: email → permission.
pub(crate) async fn records(
    w: &World,
    s: &Setup,
) -> BTreeMap<String, portal::InfrastructurePermission> {
    let mut out = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = w
            .members(Some(COMPANY_ADMIN))
            .list_team_members(portal::ListTeamMembersRequest {
                parent: s.company.clone(),
                infrastructure: s.infra.clone(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for m in page.members {
            for a in &m.infrastructure_access {
                if a.infrastructure == s.infra && a.source() == portal::PermissionSource::SourceOdc
                {
                    assert!(
                        out.insert(m.email.clone(), a.permission()).is_none(),
                        "duplicate record for {}",
                        m.email
                    );
                }
            }
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Identity's current sequence.
async fn identity_seq(w: &World, s: &Setup) -> i64 {
    w.id_audit(&s.org.admin_token)
        .get_snapshot(id::GetSnapshotRequest {
            parent: s.org.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sequence
}

/// Waits until portal-sync has applied everything identity has committed.
pub(crate) async fn caught_up(w: &World, s: &Setup) {
    let target = identity_seq(w, s).await;
    eventually("portal-sync to catch up", || async {
        let st = w
            .sync(&w.portal_operator)
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: s.infra.clone(),
            })
            .await
            .ok()?
            .into_inner();
        (st.cursor >= target).then_some(())
    })
    .await;
}

/// A fresh full derivation from identity's snapshot, independent of the sync's code.
pub(crate) async fn fresh_derivation(
    w: &World,
    s: &Setup,
) -> BTreeMap<String, portal::InfrastructurePermission> {
    let snap = w
        .id_audit(&s.org.admin_token)
        .get_snapshot(id::GetSnapshotRequest {
            parent: s.org.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let level = |role: &str| -> Option<portal::InfrastructurePermission> {
        let r = snap.roles.iter().find(|r| r.name == role)?;
        let has = |p: &str| r.grants.iter().any(|g| g.permission == p);
        if r.name.ends_with("/roles/administrator") || has("support.view_all_cases") {
            Some(portal::InfrastructurePermission::InfrastructureAdmin)
        } else if r.name.ends_with("/roles/developer") || has("support.open_cases") {
            Some(portal::InfrastructurePermission::InfrastructureMember)
        } else {
            None
        }
    };
    let mut out = BTreeMap::new();
    for u in &snap.users {
        if u.state() == id::UserState::Inactive {
            continue;
        }
        let role = snap
            .role_assignments
            .iter()
            .find(|a| a.principal == u.name && a.scope == org_scope());
        if let Some(l) = role.and_then(|a| level(&a.role)) {
            out.insert(u.email.clone(), l);
        }
    }
    out
}

/// Asks portal-sync for a fresh snapshot of the setup's infrastructure.
async fn resync(w: &World, s: &Setup) {
    w.sync(&w.portal_operator)
        .resync(portal::ResyncRequest {
            infrastructure: s.infra.clone(),
        })
        .await
        .unwrap();
}

/// Every portal event of the setup's company, oldest first.
pub(crate) async fn portal_events(w: &World, s: &Setup) -> Vec<portal::PortalEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = w
            .sync(&w.portal_operator)
            .list_portal_events(portal::ListPortalEventsRequest {
                parent: s.company.clone(),
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

/// The display name `invite` gives a user.
fn display_name_of(email: &str) -> String {
    format!("Name of {email}")
}

/// Display name of each member holding an ODC record on the setup's infrastructure.
async fn synced_names(w: &World, s: &Setup) -> BTreeMap<String, String> {
    let page = w
        .members(Some(COMPANY_ADMIN))
        .list_team_members(portal::ListTeamMembersRequest {
            parent: s.company.clone(),
            infrastructure: s.infra.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(page.next_page_token.is_empty());
    page.members
        .into_iter()
        .filter(|m| {
            m.infrastructure_access.iter().any(|a| {
                a.infrastructure == s.infra && a.source() == portal::PermissionSource::SourceOdc
            })
        })
        .map(|m| (m.email, m.display_name))
        .collect()
}

pub(crate) async fn invite(w: &World, s: &Setup, email: &str, role: Option<&str>) -> String {
    w.id_users(Some(&s.org.admin_token))
        .invite_user(id::InviteUserRequest {
            parent: s.org.name.clone(),
            email: email.into(),
            display_name: display_name_of(email),
            organization_role: role
                .map(|r| {
                    if r.contains('/') {
                        r.to_owned()
                    } else {
                        format!("{}/roles/{r}", s.org.name)
                    }
                })
                .unwrap_or_default(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

async fn custom_role(w: &World, s: &Setup, name: &str, perms: &[&str]) -> String {
    w.id_roles(&s.org.admin_token)
        .create_role(id::CreateRoleRequest {
            parent: s.org.name.clone(),
            role: Some(id::Role {
                display_name: name.into(),
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

async fn set_role_perms(w: &World, s: &Setup, role: &str, perms: &[&str]) {
    w.id_roles(&s.org.admin_token)
        .update_role(id::UpdateRoleRequest {
            role: Some(id::Role {
                name: role.into(),
                grants: perms
                    .iter()
                    .map(|p| id::PermissionGrant {
                        permission: (*p).into(),
                        stages: vec![],
                    })
                    .collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["grants".into()],
            }),
        })
        .await
        .unwrap();
}

use portal::InfrastructurePermission::{
    InfrastructureAdmin as ADMIN, InfrastructureMember as MEMBER,
};

fn map(
    v: &[(&str, portal::InfrastructurePermission)],
) -> BTreeMap<String, portal::InfrastructurePermission> {
    v.iter().map(|(e, p)| ((*e).to_owned(), *p)).collect()
}

async fn odc_records_follow_organization_roles(b: Backend) {
    let w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    assert_eq!(
        records(&w, &s).await,
        map(&[("admin@acme.example", ADMIN)]),
        "Administrator → infrastructure admin"
    );

    let lead = custom_role(
        &w,
        &s,
        "Support lead",
        &["support.view_all_cases", "support.open_cases"],
    )
    .await;
    let opener = custom_role(&w, &s, "Opener", &["support.open_cases", "asset.open"]).await;
    let builder = custom_role(&w, &s, "Builder", &["asset.create"]).await;
    let dev = invite(&w, &s, "dev@acme.example", Some("developer")).await;
    let l = invite(&w, &s, "lead@acme.example", Some(&lead)).await;
    let o = invite(&w, &s, "opener@acme.example", Some(&opener)).await;
    invite(&w, &s, "builder@acme.example", Some(&builder)).await;
    invite(&w, &s, "enduser@acme.example", None).await;
    // Administrator on one app only does not count.
    let app = w
        .id_apps(&s.org.admin_token)
        .create_app(id::CreateAppRequest {
            parent: s.org.name.clone(),
            app: Some(id::App {
                display_name: "A".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let app_admin = invite(&w, &s, "appadmin@acme.example", None).await;
    w.id_access(&s.org.admin_token)
        .assign_role(id::AssignRoleRequest {
            parent: s.org.name.clone(),
            principal: app_admin,
            role: format!("{}/roles/administrator", s.org.name),
            scope: Some(id::Scope {
                kind: Some(id::scope::Kind::App(app)),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    caught_up(&w, &s).await;
    // INVITED users are synced.
    assert_eq!(
        records(&w, &s).await,
        map(&[
            ("admin@acme.example", ADMIN),
            ("dev@acme.example", MEMBER),
            ("lead@acme.example", ADMIN),
            ("opener@acme.example", MEMBER)
        ])
    );
    // Synced members carry the identity users' display names.
    let names = synced_names(&w, &s).await;
    assert_eq!(names["admin@acme.example"], "Ada Admin");
    for email in [
        "dev@acme.example",
        "lead@acme.example",
        "opener@acme.example",
    ] {
        assert_eq!(names[email], display_name_of(email), "{email}");
    }

    // Role change, removal, deactivation, deletion.
    let assign = |p: String, r: String| {
        let w = &w;
        let org = s.org.name.clone();
        let token = s.org.admin_token.clone();
        async move {
            w.id_access(&token)
                .assign_role(id::AssignRoleRequest {
                    parent: org,
                    principal: p,
                    role: r,
                    scope: org_scope(),
                    grant_period: None,
                })
                .await
                .unwrap();
        }
    };
    assign(dev.clone(), format!("{}/roles/administrator", s.org.name)).await;
    w.id_users(Some(&s.org.admin_token))
        .deactivate_user(id::DeactivateUserRequest {
            name: o.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    w.id_users(Some(&s.org.admin_token))
        .delete_user(id::DeleteUserRequest {
            name: l,
            etag: String::new(),
        })
        .await
        .unwrap();
    caught_up(&w, &s).await;
    assert_eq!(
        records(&w, &s).await,
        map(&[("admin@acme.example", ADMIN), ("dev@acme.example", ADMIN)])
    );
    w.id_users(Some(&s.org.admin_token))
        .activate_user(id::ActivateUserRequest {
            name: o,
            etag: String::new(),
        })
        .await
        .unwrap();
    w.id_access(&s.org.admin_token)
        .revoke_role(id::RevokeRoleRequest {
            parent: s.org.name.clone(),
            principal: dev,
            scope: org_scope(),
        })
        .await
        .unwrap();
    caught_up(&w, &s).await;
    assert_eq!(
        records(&w, &s).await,
        map(&[
            ("admin@acme.example", ADMIN),
            ("opener@acme.example", MEMBER)
        ])
    );

    // A role edited to gain, then lose, a Support permission re-derives all its holders.
    invite(&w, &s, "builder2@acme.example", Some(&builder)).await;
    set_role_perms(
        &w,
        &s,
        &builder,
        &["asset.create", "support.view_all_cases"],
    )
    .await;
    caught_up(&w, &s).await;
    let r = records(&w, &s).await;
    assert_eq!(r.get("builder@acme.example"), Some(&ADMIN));
    assert_eq!(r.get("builder2@acme.example"), Some(&ADMIN));
    set_role_perms(&w, &s, &builder, &["asset.create"]).await;
    caught_up(&w, &s).await;
    let r = records(&w, &s).await;
    assert!(
        !r.contains_key("builder@acme.example") && !r.contains_key("builder2@acme.example"),
        "{r:?}"
    );
    assert_eq!(r, fresh_derivation(&w, &s).await);
}

async fn pending_until_a_community_account_and_the_sync_touches_only_odc_access(b: Backend) {
    let w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    let find = |email: &'static str| {
        let w = &w;
        let company = s.company.clone();
        async move {
            let list = w
                .members(Some(COMPANY_ADMIN))
                .list_team_members(portal::ListTeamMembersRequest {
                    parent: company,
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            list.members.into_iter().find(|m| m.email == email).unwrap()
        }
    };
    // The company admin becomes the security contact, then also an ODC Developer.
    let ca = find(COMPANY_ADMIN).await;
    w.members(Some(COMPANY_ADMIN))
        .set_security_contact(portal::SetSecurityContactRequest {
            name: ca.name.clone(),
            phone: "+351 210 000 000".into(),
        })
        .await
        .unwrap();
    invite(&w, &s, COMPANY_ADMIN, Some("developer")).await;
    caught_up(&w, &s).await;
    let after = find(COMPANY_ADMIN).await;
    assert_eq!(
        after.company_permission(),
        portal::CompanyPermission::Admin,
        "the sync never touches company admin"
    );
    assert_eq!(after.team_role(), portal::TeamRole::Security);
    assert_eq!(after.phone, "+351 210 000 000");
    assert_eq!(records(&w, &s).await.get(COMPANY_ADMIN), Some(&MEMBER));
    assert_eq!(after.status(), portal::MemberStatus::Pending);
    // A Community account flips it to ACTIVE with nothing else changed.
    w.community()
        .register_community_account(portal::RegisterCommunityAccountRequest {
            email: " CA@acme.example ".into(),
        })
        .await
        .unwrap();
    let active = find(COMPANY_ADMIN).await;
    assert_eq!(active.status(), portal::MemberStatus::Active);
    assert_eq!(
        (
            active.company_permission,
            active.team_role,
            active.phone.clone(),
            active.infrastructure_access.clone(),
            active.etag.clone()
        ),
        (
            after.company_permission,
            after.team_role,
            after.phone.clone(),
            after.infrastructure_access.clone(),
            after.etag.clone()
        )
    );
    // ODC records cannot be edited or removed through the portal.
    let admin_record = find("admin@acme.example").await;
    let r = w
        .members(Some(COMPANY_ADMIN))
        .update_team_member(portal::UpdateTeamMemberRequest {
            member: Some(portal::TeamMember {
                name: admin_record.name.clone(),
                infrastructure_access: vec![portal::InfrastructureAccess {
                    infrastructure: s.infra.clone(),
                    permission: MEMBER.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["infrastructure_access".into()],
            }),
            grant_development_permissions: false,
        })
        .await;
    assert_eq!(
        r.map_err(|e| e.code()).err(),
        Some(Code::FailedPrecondition)
    );
    let r = w
        .members(Some(COMPANY_ADMIN))
        .remove_team_member(portal::RemoveTeamMemberRequest {
            name: admin_record.name,
        })
        .await;
    assert_eq!(
        r.map_err(|e| e.code()).err(),
        Some(Code::FailedPrecondition)
    );
}

async fn random_mutations_with_restarts_converge_to_a_fresh_derivation(b: Backend) {
    let mut w = World::start(b).await;
    let s = setup(&w).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0DC0_5EED);
    let lead = custom_role(&w, &s, "Lead", &["support.view_all_cases"]).await;
    let opener = custom_role(&w, &s, "Opener", &["support.open_cases"]).await;
    let plain = custom_role(&w, &s, "Plain", &["asset.open"]).await;
    let roles = [
        format!("{}/roles/administrator", s.org.name),
        format!("{}/roles/developer", s.org.name),
        lead.clone(),
        opener.clone(),
        plain.clone(),
    ];
    let mut users: Vec<(String, String)> = Vec::new(); // (email, name)
    let mut next = 0;
    let mut restarts = 0;
    let total = 500;
    for step in 0..total {
        if rng.random_ratio(1, 100) || (step == total / 2 && restarts == 0) {
            w.stop_portal().await;
            restarts += 1;
            // Mutations continue while portal-sync is down; it restarts a few steps later.
            for _ in 0..rng.random_range(1..10) {
                mutate(&w, &s, &mut rng, &mut users, &mut next, &roles).await;
            }
            w.start_portal().await;
        }
        mutate(&w, &s, &mut rng, &mut users, &mut next, &roles).await;
    }
    assert!(restarts >= 1);
    caught_up(&w, &s).await;
    let expected = fresh_derivation(&w, &s).await;
    assert_eq!(
        records(&w, &s).await,
        expected,
        "after {total} mutations and {restarts} restarts"
    );

    // A second full derivation writes nothing.
    let before = portal_events(&w, &s).await.len();
    resync(&w, &s).await;
    eventually("the resync snapshot", || async {
        let st = w
            .sync(&w.portal_operator)
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: s.infra.clone(),
            })
            .await
            .ok()?
            .into_inner();
        (st.cursor > 0 && st.last_snapshot_time.is_some()).then_some(())
    })
    .await;
    caught_up(&w, &s).await;
    assert_eq!(records(&w, &s).await, expected);
    assert_eq!(
        portal_events(&w, &s).await.len(),
        before,
        "an unchanged re-derivation writes no record"
    );
}

/// One random identity mutation; refusals by identity's rules (e.g. the last administrator)
/// are part of the game.
async fn mutate(
    w: &World,
    s: &Setup,
    rng: &mut rand::rngs::StdRng,
    users: &mut Vec<(String, String)>,
    next: &mut usize,
    roles: &[String],
) {
    let op = if users.len() < 5 {
        0
    } else {
        rng.random_range(0..8)
    };
    let pick_role = |rng: &mut rand::rngs::StdRng| roles[rng.random_range(0..roles.len())].clone();
    let result: Result<(), tonic::Status> = match op {
        0 => {
            *next += 1;
            let email = format!("u{next}@acme.example");
            let role = rng.random_ratio(4, 5).then(|| pick_role(rng));
            let name = invite(w, s, &email, role.as_deref()).await;
            users.push((email, name));
            Ok(())
        }
        1 | 2 => {
            let (_, u) = users[rng.random_range(0..users.len())].clone();
            let role = pick_role(rng);
            w.id_access(&s.org.admin_token)
                .assign_role(id::AssignRoleRequest {
                    parent: s.org.name.clone(),
                    principal: u,
                    role,
                    scope: org_scope(),
                    grant_period: None,
                })
                .await
                .map(|_| ())
        }
        3 => {
            let (_, u) = users[rng.random_range(0..users.len())].clone();
            w.id_access(&s.org.admin_token)
                .revoke_role(id::RevokeRoleRequest {
                    parent: s.org.name.clone(),
                    principal: u,
                    scope: org_scope(),
                })
                .await
                .map(|_| ())
        }
        4 => {
            let (_, u) = users[rng.random_range(0..users.len())].clone();
            w.id_users(Some(&s.org.admin_token))
                .deactivate_user(id::DeactivateUserRequest {
                    name: u,
                    etag: String::new(),
                })
                .await
                .map(|_| ())
        }
        5 => {
            let (_, u) = users[rng.random_range(0..users.len())].clone();
            w.id_users(Some(&s.org.admin_token))
                .activate_user(id::ActivateUserRequest {
                    name: u,
                    etag: String::new(),
                })
                .await
                .map(|_| ())
        }
        6 => {
            let i = rng.random_range(0..users.len());
            let (_, u) = users.remove(i);
            w.id_users(Some(&s.org.admin_token))
                .delete_user(id::DeleteUserRequest {
                    name: u,
                    etag: String::new(),
                })
                .await
                .map(|_| ())
        }
        _ => {
            // Edit a custom role: gain or lose Support permissions.
            let custom = &roles[2 + rng.random_range(0..3)];
            let perms: &[&str] = match rng.random_range(0..3) {
                0 => &["support.view_all_cases"],
                1 => &["support.open_cases", "asset.open"],
                _ => &["asset.open"],
            };
            set_role_perms(w, s, custom, perms).await;
            Ok(())
        }
    };
    if let Err(e) = result {
        assert!(
            matches!(e.code(), Code::FailedPrecondition | Code::NotFound),
            "unexpected refusal: {e:?}"
        );
    }
}

/// The sync status of the setup's infrastructure.
async fn sync_status(w: &World, s: &Setup) -> Option<portal::SyncStatus> {
    w.sync(&w.portal_operator)
        .get_sync_status(portal::GetSyncStatusRequest {
            infrastructure: s.infra.clone(),
        })
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

/// A status's staleness (None when unset).
fn secs(d: Option<&prost_types::Duration>) -> Option<std::time::Duration> {
    let d = d?;
    Some(
        std::time::Duration::from_secs(u64::try_from(d.seconds).ok()?)
            + std::time::Duration::from_nanos(u64::try_from(d.nanos).ok()?),
    )
}

/// Identity stops for a while: the status and the metrics say the sync is blind (staleness
/// growing, lag unknown) rather than caught up; once identity is back the sync resumes from its
/// cursor with the mirror it has (no new snapshot) and what changed arrives. Resync still takes
/// a snapshot.
async fn with_identity_stopped_the_lag_is_reported_and_sync_recovers(b: Backend) {
    // Installs the metrics recorder before the servers record into it.
    let _ = gauge("portal_sync_lag_events{infrastructure=\"none\"}");
    let mut w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    // The feed tells identity's last sequence when it opens.
    let head = identity_seq(&w, &s).await;
    let feed = w
        .id_audit(&s.org.admin_token)
        .watch_changes(id::WatchChangesRequest {
            parent: s.org.name.clone(),
            after_sequence: 0,
        })
        .await
        .unwrap();
    let told = feed.metadata().get("x-consistency-token").unwrap();
    assert_eq!(told.to_str().unwrap(), head.to_string());
    drop(feed);
    let before = eventually("the feed to be open", || async {
        let st = sync_status(&w, &s).await?;
        (st.lag_known && st.lag == 0).then_some(st)
    })
    .await;
    assert_eq!(
        secs(before.staleness.as_ref()),
        Some(std::time::Duration::ZERO),
        "{before:?}"
    );
    let staleness = format!(
        "portal_sync_staleness_seconds{{infrastructure=\"{}\"}}",
        s.infra
    );
    let lag = format!("portal_sync_lag_events{{infrastructure=\"{}\"}}", s.infra);

    w.stop_identity().await;
    // First the feed ends (identity says it is shutting down), then identity is unreachable.
    let st = eventually("the error to show", || async {
        let st = sync_status(&w, &s).await?;
        st.last_error.contains("unreachable").then_some(st)
    })
    .await;
    assert!(st.cursor > 0, "{st:?}");
    assert!(!st.lag_known, "blind, not caught up: {st:?}");
    assert_eq!(st.health(), portal::SyncHealth::Retrying, "{st:?}");
    assert!(
        st.last_error.starts_with("identity at http://") && st.last_error.contains("unreachable"),
        "{st:?}"
    );
    assert!(
        !st.last_error.contains("Status {") && !st.last_error.contains("Error("),
        "{st:?}"
    );
    let first = secs(st.staleness.as_ref()).expect("a staleness");
    eventually("the staleness to grow", || async {
        let st = sync_status(&w, &s).await?;
        (secs(st.staleness.as_ref())? > first && !st.lag_known).then_some(())
    })
    .await;
    eventually("the gauges to say blind", || async {
        (gauge(&staleness)? > 0.0 && gauge(&lag)?.is_nan()).then_some(())
    })
    .await;

    w.start_identity().await;
    invite(&w, &s, "back@acme.example", Some("developer")).await;
    caught_up(&w, &s).await;
    assert_eq!(
        records(&w, &s).await.get("back@acme.example"),
        Some(&MEMBER)
    );
    let st = eventually("the sync to follow again", || async {
        let st = sync_status(&w, &s).await?;
        (st.lag_known && st.last_error.is_empty()).then_some(st)
    })
    .await;
    assert_eq!(st.lag, 0, "{st:?}");
    assert_eq!(
        secs(st.staleness.as_ref()),
        Some(std::time::Duration::ZERO),
        "{st:?}"
    );
    assert_eq!(st.health(), portal::SyncHealth::Syncing);
    assert_eq!(
        st.last_snapshot_time, before.last_snapshot_time,
        "resumed from the cursor, no new snapshot"
    );
    eventually("the gauges to recover", || async {
        (gauge(&staleness)? == 0.0 && gauge(&lag)? == 0.0).then_some(())
    })
    .await;

    // Resync takes a snapshot.
    resync(&w, &s).await;
    let snapshot = |st: &portal::SyncStatus| st.last_snapshot_time.map(|t| (t.seconds, t.nanos));
    eventually("the resync snapshot", || async {
        let st = sync_status(&w, &s).await?;
        (st.cursor > 0 && snapshot(&st) > snapshot(&before)).then_some(())
    })
    .await;
    caught_up(&w, &s).await;
}

/// The sync's service-account token is revoked in identity: the open change feed ends, and
/// the worker says so in its status (an operator's sentence, health REFUSED) and in the
/// refusals metric, retrying with back-off, until the operator gives it a new token with
/// `Companies.SetIdentityToken`, which it uses at once; what changed meanwhile is synced.
async fn a_revoked_identity_token_is_reported_and_a_replaced_one_takes_over(b: Backend) {
    const REFUSED: &str = r#"portal_sync_identity_refusals_total{code="UNAUTHENTICATED"}"#;
    let refusals_before = counter(REFUSED);
    let w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    let status = || async {
        w.sync(&w.portal_operator)
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: s.infra.clone(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(status().await.health(), portal::SyncHealth::Syncing);

    // Revoke the token: the open change feed ends, nothing else is needed.
    w.id_service_accounts(&s.org.admin_token)
        .revoke_service_account_token(id::RevokeServiceAccountTokenRequest {
            name: s.org.sync_token_name.clone(),
        })
        .await
        .unwrap();
    let st = eventually("the sync to report the refused token", || async {
        let st = status().await;
        (st.health() == portal::SyncHealth::Refused).then_some(st)
    })
    .await;
    assert!(
        st.last_error
            .starts_with("identity refused the infrastructure's token: it was revoked")
            && st.last_error.contains("Companies.SetIdentityToken"),
        "{st:?}"
    );
    assert!(!st.last_error.contains("Status {"), "{st:?}");
    let refused_at = counter(REFUSED);
    assert!(
        refused_at > refusals_before,
        "{refused_at} refusals counted"
    );
    invite(&w, &s, "late@acme.example", Some("developer")).await;

    // A token that is not a token: refused, nothing changes.
    let r = w
        .companies(&w.portal_operator, None)
        .set_identity_token(portal::SetIdentityTokenRequest {
            name: s.infra.clone(),
            identity_token: "  ".into(),
        })
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);

    // A new token for the same service account.
    let sa = s
        .org
        .sync_token_name
        .rsplit_once("/tokens/")
        .map(|(sa, _)| sa.to_owned())
        .unwrap();
    let fresh = w
        .id_service_accounts(&s.org.admin_token)
        .create_service_account_token(id::CreateServiceAccountTokenRequest {
            parent: sa,
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let infra = w
        .companies(&w.portal_operator, None)
        .set_identity_token(portal::SetIdentityTokenRequest {
            name: s.infra.clone(),
            identity_token: fresh.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(infra.name, s.infra);
    // Meanwhile the worker retried with back-off, not in a loop (a few tries a second at most,
    // counting the tests running alongside).
    let retried = counter(REFUSED) - refused_at;
    assert!(
        retried < 40,
        "{retried} refusals while the token was revoked"
    );
    caught_up(&w, &s).await;
    assert_eq!(
        records(&w, &s).await.get("late@acme.example"),
        Some(&MEMBER),
        "the change made while the token was revoked is synced"
    );
    let st = status().await;
    assert!(st.last_error.is_empty(), "{st:?}");
    assert_eq!(st.health(), portal::SyncHealth::Syncing);

    // The replacement is in the company's audit trail, without the token.
    let events = portal_events(&w, &s).await;
    let replaced: Vec<_> = events
        .iter()
        .filter(|e| e.action == "infrastructure.identity_token_replaced")
        .collect();
    assert_eq!(replaced.len(), 1, "{events:?}");
    assert_eq!(replaced[0].target, s.infra);
    assert!(events.iter().all(|e| !format!("{e:?}").contains(&fresh)));
}

/// Team role and security contact are the portal's own attributes, also on a member the sync
/// created (only the ODC-derived permission is read-only); when that member's identity user is
/// deleted the record goes, security contact or not, and security communications stop.
async fn an_odc_security_contact_whose_user_is_deleted_stops_receiving_security_communications(
    b: Backend,
) {
    const SEC: &str = "sec@acme.example";
    let w = World::start(b).await;
    let s = setup(&w).await;
    let user = invite(&w, &s, SEC, Some("developer")).await;
    caught_up(&w, &s).await;
    let member = |email: &'static str| {
        let w = &w;
        let company = s.company.clone();
        async move {
            w.members(Some(COMPANY_ADMIN))
                .list_team_members(portal::ListTeamMembersRequest {
                    parent: company,
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .members
                .into_iter()
                .find(|m| m.email == email)
        }
    };
    let synced = member(SEC).await.expect("the sync created the member");
    let recipients = || async {
        w.capabilities()
            .list_notification_recipients(portal::ListNotificationRecipientsRequest {
                parent: s.company.clone(),
                kind: portal::NotificationKind::SecurityCommunications.into(),
                infrastructure: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .emails
    };

    // The team role of an ODC member is the portal's: an admin may change it.
    let updated = w
        .members(Some(COMPANY_ADMIN))
        .update_team_member(portal::UpdateTeamMemberRequest {
            member: Some(portal::TeamMember {
                name: synced.name.clone(),
                team_role: portal::TeamRole::Manager.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["team_role".into()],
            }),
            grant_development_permissions: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.team_role(), portal::TeamRole::Manager);
    assert_eq!(updated.infrastructure_access, synced.infrastructure_access);
    w.members(Some(COMPANY_ADMIN))
        .set_security_contact(portal::SetSecurityContactRequest {
            name: synced.name.clone(),
            phone: "+351 210 000 001".into(),
        })
        .await
        .unwrap();
    assert_eq!(recipients().await, vec![SEC.to_owned()]);

    // The identity user is deleted: the record goes, and with it the security contact.
    w.id_users(Some(&s.org.admin_token))
        .delete_user(id::DeleteUserRequest {
            name: user,
            etag: String::new(),
        })
        .await
        .unwrap();
    caught_up(&w, &s).await;
    assert!(member(SEC).await.is_none(), "the record is removed");
    assert!(recipients().await.is_empty());
    let events = portal_events(&w, &s).await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "security_contact.removed_by_sync" && e.target == synced.name),
        "{events:?}"
    );
}
