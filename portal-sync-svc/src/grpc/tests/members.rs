//! The O11 add-member flow, callers and their levels, isolation between companies, company
//! admins, the security contact and removal.

use shared::proto::portal::v1 as pb;
use tonic::Code;

use super::*;

#[tokio::test]
async fn o11_add_member_flow() {
    let s = start().await;
    let f = company(&s, "Acme", "boss@acme.com").await;
    let mut team = pb::team_members_client::TeamMembersClient::new(s.channel.clone());

    // The three required fields, all named at once.
    let e = team
        .add_team_member(as_(
            "boss@acme.com",
            pb::AddTeamMemberRequest {
                parent: f.company.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&e),
        ["email", "team_role", "company_permission"],
        "{e:?}"
    );

    let add = |email: &str, infra: &str, invite: bool| pb::AddTeamMemberRequest {
        parent: f.company.clone(),
        email: email.into(),
        team_role: pb::TeamRole::Developer.into(),
        company_permission: pb::CompanyPermission::Member.into(),
        infrastructure_access: vec![access(
            infra,
            pb::InfrastructurePermission::InfrastructureMember,
        )],
        invite_to_lifetime: invite,
        grant_development_permissions: invite,
        ..Default::default()
    };
    // LifeTime invitations: Cloud and hybrid only; never without an infrastructure.
    let e = team
        .add_team_member(as_(
            "boss@acme.com",
            add("dev@acme.com", &f.self_managed, true),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["invite_to_lifetime"]);
    let mut none = add("dev@acme.com", &f.cloud, true);
    none.infrastructure_access.clear();
    let e = team
        .add_team_member(as_("boss@acme.com", none))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["invite_to_lifetime"]);

    let m = team
        .add_team_member(as_(" Boss@Acme.com ", add(" Dev@Acme.com", &f.cloud, true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.email, "dev@acme.com");
    assert_eq!(m.lifetime_username, "dev@acme.com");
    assert!(m.development_permissions);
    assert_eq!(m.status, i32::from(pb::MemberStatus::Pending));
    assert_eq!(
        m.infrastructure_access[0].source,
        i32::from(pb::PermissionSource::SourceManual)
    );
    let e = team
        .add_team_member(as_("boss@acme.com", add("dev@acme.com", &f.cloud, false)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(reason(&e), "MEMBER_EXISTS");

    // The grant is audited as done by `Administrator`.
    let mut sync = pb::sync_client::SyncClient::new(s.channel.clone());
    let events = sync
        .list_portal_events(as_(
            "boss@acme.com",
            pb::ListPortalEventsRequest {
                parent: f.company.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert!(
        actions.contains(&("boss@acme.com", "member.added")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("Administrator", "development_permissions.granted")),
        "{actions:?}"
    );

    // Edits never grant development permissions.
    let e = team
        .update_team_member(as_(
            "boss@acme.com",
            pb::UpdateTeamMemberRequest {
                member: Some(pb::TeamMember {
                    name: m.name.clone(),
                    display_name: "Dev".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["grant_development_permissions"]);
    // A stale etag is ABORTED.
    let e = team
        .update_team_member(as_(
            "boss@acme.com",
            pb::UpdateTeamMemberRequest {
                member: Some(pb::TeamMember {
                    name: m.name.clone(),
                    display_name: "Dev".into(),
                    etag: "999".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let u = team
        .update_team_member(as_(
            "boss@acme.com",
            pb::UpdateTeamMemberRequest {
                member: Some(pb::TeamMember {
                    name: m.name.clone(),
                    display_name: "Dev".into(),
                    etag: m.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.display_name, "Dev");
    assert_ne!(u.etag, m.etag);

    // Registering the Community account flips the status, nothing else.
    let mut accounts =
        pb::community_accounts_client::CommunityAccountsClient::new(s.channel.clone());
    accounts
        .register_community_account(svc(pb::RegisterCommunityAccountRequest {
            email: "DEV@acme.com".into(),
        }))
        .await
        .unwrap();
    let g = team
        .get_team_member(as_(
            "dev@acme.com",
            pb::GetTeamMemberRequest {
                name: m.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.status, i32::from(pb::MemberStatus::Active));
    assert_eq!(g.etag, u.etag);
}

#[tokio::test]
async fn callers_levels_and_isolation() {
    let s = start().await;
    let a = company(&s, "A", "a@a.com").await;
    let b = company(&s, "B", "b@b.com").await;
    let mut companies = pb::companies_client::CompaniesClient::new(s.channel.clone());
    let mut team = pb::team_members_client::TeamMembersClient::new(s.channel.clone());
    let get = |name: &str| pb::GetCompanyRequest { name: name.into() };

    let e = companies
        .get_company(Request::new(get(&a.company)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = companies
        .get_company(svc(get(&a.company)))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["x-acting-for"]);
    assert!(
        companies
            .get_company(as_("a@a.com", get(&a.company)))
            .await
            .is_ok()
    );
    let e = companies
        .get_company(as_("a@a.com", get(&b.company)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = team
        .list_team_members(as_(
            "a@a.com",
            pb::ListTeamMembersRequest {
                parent: b.company.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The operator cannot act for people; services cannot create companies.
    let e = team
        .list_team_members(op(pb::ListTeamMembersRequest {
            parent: a.company.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = companies
        .create_company(svc(pb::CreateCompanyRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // An infrastructure admin adds members only on their infrastructure, never admins.
    let ia = team
        .add_team_member(as_(
            "a@a.com",
            pb::AddTeamMemberRequest {
                parent: a.company.clone(),
                email: "ia@a.com".into(),
                team_role: pb::TeamRole::Manager.into(),
                company_permission: pb::CompanyPermission::Member.into(),
                infrastructure_access: vec![access(
                    &a.cloud,
                    pb::InfrastructurePermission::InfrastructureAdmin,
                )],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let member_on = |infra: &str, p: pb::CompanyPermission| pb::AddTeamMemberRequest {
        parent: a.company.clone(),
        email: "new@a.com".into(),
        team_role: pb::TeamRole::Other.into(),
        company_permission: p.into(),
        infrastructure_access: vec![access(
            infra,
            pb::InfrastructurePermission::InfrastructureMember,
        )],
        ..Default::default()
    };
    for req in [
        member_on(&a.self_managed, pb::CompanyPermission::Member),
        member_on(&a.cloud, pb::CompanyPermission::Admin),
    ] {
        let e = team
            .add_team_member(as_("ia@a.com", req))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let new = team
        .add_team_member(as_(
            "ia@a.com",
            member_on(&a.cloud, pb::CompanyPermission::Member),
        ))
        .await
        .unwrap()
        .into_inner();
    // Company admins only: assign/remove company admins; never the last one.
    let e = team
        .assign_company_admin(as_(
            "ia@a.com",
            pb::AssignCompanyAdminRequest {
                name: new.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let list = team
        .list_team_members(as_(
            "a@a.com",
            pb::ListTeamMembersRequest {
                parent: a.company.clone(),
                company_permission: pb::CompanyPermission::Admin.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.members.len(), 1);
    let e = team
        .remove_company_admin(as_(
            "a@a.com",
            pb::RemoveCompanyAdminRequest {
                name: list.members[0].name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(reason(&e), "LAST_COMPANY_ADMIN");

    // Security contact: admins only; the phone is checked.
    let sc = |phone: &str| pb::SetSecurityContactRequest {
        name: new.name.clone(),
        phone: phone.into(),
    };
    let e = team
        .set_security_contact(as_("new@a.com", sc("+351912345678")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = team
        .set_security_contact(as_("ia@a.com", sc("12")))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["phone"]);
    let m = team
        .set_security_contact(as_("ia@a.com", sc("+351 912 345 678")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.team_role, i32::from(pb::TeamRole::Security));

    // Removal by the infrastructure admin of every infrastructure of the member.
    team.remove_team_member(as_(
        "ia@a.com",
        pb::RemoveTeamMemberRequest {
            name: new.name.clone(),
        },
    ))
    .await
    .unwrap();
    let e = team
        .remove_team_member(as_(
            "ia@a.com",
            pb::RemoveTeamMemberRequest {
                name: ia.name.clone(),
            },
        ))
        .await;
    assert!(
        e.is_ok(),
        "an infrastructure admin of every infrastructure: {e:?}"
    );
}
