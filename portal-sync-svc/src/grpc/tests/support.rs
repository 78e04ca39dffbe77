//! Support cases held for approval, approval, support contacts and capabilities.

use shared::proto::portal::v1 as pb;
use tonic::Code;

use super::*;

#[tokio::test]
async fn held_cases_and_approval() {
    let s = start().await;
    let f = company(&s, "Acme", "boss@acme.com").await;
    let mut team = pb::team_members_client::TeamMembersClient::new(s.channel.clone());
    let mut support = pb::support_client::SupportClient::new(s.channel.clone());
    team.add_team_member(as_(
        "boss@acme.com",
        pb::AddTeamMemberRequest {
            parent: f.company.clone(),
            email: "m@acme.com".into(),
            team_role: pb::TeamRole::Developer.into(),
            company_permission: pb::CompanyPermission::Member.into(),
            infrastructure_access: vec![access(
                &f.cloud,
                pb::InfrastructurePermission::InfrastructureMember,
            )],
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let case = |infra: &str| pb::CreateSupportCaseRequest {
        parent: f.company.clone(),
        support_case: Some(pb::SupportCase {
            infrastructure: infra.into(),
            subject: "It broke".into(),
            cc: vec!["cc@out.com".into()],
            ..Default::default()
        }),
    };
    let open = support
        .create_support_case(as_("m@acme.com", case(&f.cloud)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.state, i32::from(pb::SupportCaseState::Open));
    let e = support
        .create_support_case(as_("m@acme.com", case(&f.self_managed)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let held = support
        .create_support_case(as_("out@out.com", case(&f.cloud)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        held.state,
        i32::from(pb::SupportCaseState::AwaitingApproval)
    );

    let list = |who: &str| {
        let mut support = support.clone();
        let req = as_(
            who,
            pb::ListSupportCasesRequest {
                parent: f.company.clone(),
                ..Default::default()
            },
        );
        async move {
            support
                .list_support_cases(req)
                .await
                .unwrap()
                .into_inner()
                .support_cases
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("m@acme.com").await, [open.name.as_str()]);
    assert_eq!(
        list("cc@out.com").await,
        [open.name.clone(), held.name.clone()]
    );
    assert_eq!(list("out@out.com").await, [held.name.as_str()]);
    let e = support
        .approve_support_case(as_(
            "m@acme.com",
            pb::ApproveSupportCaseRequest {
                name: held.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let ok = support
        .approve_support_case(as_(
            "boss@acme.com",
            pb::ApproveSupportCaseRequest {
                name: held.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.state, i32::from(pb::SupportCaseState::Open));
    let next = support
        .create_support_case(as_("out@out.com", case(&f.cloud)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.state, i32::from(pb::SupportCaseState::Open));

    let contacts = support
        .list_support_contacts(as_(
            "boss@acme.com",
            pb::ListSupportContactsRequest {
                parent: f.company.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .emails;
    assert_eq!(contacts, ["cc@out.com", "out@out.com"]);

    // Capabilities, asked by the service.
    let mut caps = pb::capabilities_client::CapabilitiesClient::new(s.channel.clone());
    let check = |email: &str, c: pb::Capability, infra: &str| pb::CheckCapabilityRequest {
        parent: f.company.clone(),
        email: email.into(),
        capability: c.into(),
        infrastructure: infra.into(),
    };
    let r = caps
        .check_capability(svc(check(
            "boss@acme.com",
            pb::Capability::DownloadLicenses,
            &f.self_managed,
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    assert_eq!(r.granted_by, ["company admin"]);
    let r = caps
        .check_capability(svc(check(
            "m@acme.com",
            pb::Capability::ManageUsers,
            &f.cloud,
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.allowed);
    assert!(!r.denial_reason.is_empty());
    let e = caps
        .check_capability(as_(
            "boss@acme.com",
            check("boss@acme.com", pb::Capability::Unspecified, ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["capability"]);
}
