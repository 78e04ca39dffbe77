//! Group claim mappings (R48) through a real OpenID provider: MAPPED memberships follow the ID
//! token's claims on every sign-in (with and without a delimiter, added and removed), removing
//! a MAPPED-only member is refused, an ASSIGNED and MAPPED member loses only the ASSIGNED type,
//! CheckEndUserRole and the feed see mapped memberships like the others, and a member with an
//! organization role is never mapped.

use serde_json::json;
use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::api_tests;
use crate::helpers::*;
use crate::oidc::{CLIENT, app_for_oidc, create_provider, provider_req, sign_in};
use shared::testkit::oidc_provider::Provider;

api_tests!(mapped_memberships_follow_the_claims_of_every_sign_in);

async fn group_with_mapping(
    app: &TestApp,
    admin: &Session,
    name: &str,
    mapping: pb::ClaimMapping,
) -> String {
    app.groups(Some(&admin.token))
        .create_group(pb::CreateGroupRequest {
            parent: admin.org.clone(),
            group: Some(pb::Group {
                display_name: name.into(),
                stage: stage(&admin.org, "development"),
                claim_mappings: vec![mapping],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

async fn members(app: &TestApp, admin: &Session, group: &str) -> Vec<String> {
    app.groups(Some(&admin.token))
        .list_group_members(pb::ListGroupMembersRequest {
            group: group.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .users
}

async fn has_role(app: &TestApp, admin: &Session, user: &str, role: &str) -> bool {
    app.access(Some(&admin.token))
        .check_end_user_role(pb::CheckEndUserRoleRequest {
            parent: admin.org.clone(),
            user: user.into(),
            end_user_role: role.into(),
            stage: stage(&admin.org, "development"),
        })
        .await
        .unwrap()
        .into_inner()
        .has_role
}

/// The group's members with their membership types, as ListGroupMembers shows them.
async fn typed_members(app: &TestApp, admin: &Session, group: &str) -> Vec<(String, Vec<i32>)> {
    let r = app
        .groups(Some(&admin.token))
        .list_group_members(pb::ListGroupMembersRequest {
            group: group.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.users,
        r.members.iter().map(|m| m.user.clone()).collect::<Vec<_>>()
    );
    r.members.into_iter().map(|m| (m.user, m.types)).collect()
}

fn membership_change(group: &str, users: Vec<String>) -> pb::AddGroupMembersRequest {
    pb::AddGroupMembersRequest {
        group: group.into(),
        users,
    }
}

async fn mapped_memberships_follow_the_claims_of_every_sign_in(backend: Backend) {
    let Some(op) = Provider::start("mapped_memberships", 3600).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Map").await;
    let p = create_provider(
        &app,
        &admin,
        provider_req(
            &admin.org,
            &op.issuer(),
            pb::EmailTrust::All,
            pb::ProfileLinking::None,
            true,
        ),
    )
    .await;
    let mapping = |claim: &str, value: &str, delimiter: &str| pb::ClaimMapping {
        identity_provider: p.name.clone(),
        claim: claim.into(),
        value: value.into(),
        value_delimiter: delimiter.into(),
    };
    let eng = group_with_mapping(&app, &admin, "Engineers", mapping("groups", "eng", ",")).await;
    let ops = group_with_mapping(&app, &admin, "Operators", mapping("dept", "ops", "")).await;
    let app_name = app.app(&admin, "Portal").await;
    let viewer = app.end_user_role(&admin, &app_name, "Viewer").await;
    app.groups(Some(&admin.token))
        .add_group_roles(pb::AddGroupRolesRequest {
            group: eng.clone(),
            end_user_roles: vec![pb::EndUserRoleInStage {
                end_user_role: viewer.clone(),
                stage: String::new(),
            }],
        })
        .await
        .unwrap();

    op.set_user(
        "m1",
        json!({"email": "m1@map.example", "groups": "qa, eng", "dept": "ops"}),
    )
    .await;
    let r = sign_in(&app, &p.name, op.id_token(CLIENT, "m1", "n").await, "n")
        .await
        .unwrap();
    let user = r.user.unwrap().name;
    assert_eq!(members(&app, &admin, &eng).await, vec![user.clone()]);
    assert_eq!(members(&app, &admin, &ops).await, vec![user.clone()]);
    assert!(
        has_role(&app, &admin, &user, &viewer).await,
        "through the mapped group"
    );

    let mut groups = app.groups(Some(&admin.token));
    let remove = |g: &str| pb::RemoveGroupMembersRequest {
        group: g.into(),
        users: vec![user.clone()],
    };
    assert_code(
        groups.remove_group_members(remove(&eng)).await,
        Code::FailedPrecondition,
        Some("MAPPED_MEMBERSHIP"),
    );
    // ASSIGNED and MAPPED: removing takes only the ASSIGNED type.
    groups
        .add_group_members(membership_change(&eng, vec![user.clone()]))
        .await
        .unwrap();
    let (assigned, mapped) = (
        i32::from(pb::MembershipType::Assigned),
        i32::from(pb::MembershipType::Mapped),
    );
    assert_eq!(
        typed_members(&app, &admin, &eng).await,
        vec![(user.clone(), vec![assigned, mapped])]
    );
    groups.remove_group_members(remove(&eng)).await.unwrap();
    assert_eq!(
        typed_members(&app, &admin, &eng).await,
        vec![(user.clone(), vec![mapped])]
    );
    groups
        .add_group_members(membership_change(&ops, vec![user.clone()]))
        .await
        .unwrap();

    // The claims change: eng is gone from the list, dept from the token.
    op.set_user("m1", json!({"email": "m1@map.example", "groups": ["qa"]}))
        .await;
    sign_in(&app, &p.name, op.id_token(CLIENT, "m1", "n").await, "n")
        .await
        .unwrap();
    assert!(
        members(&app, &admin, &eng).await.is_empty(),
        "mapped only: removed"
    );
    assert_eq!(
        members(&app, &admin, &ops).await,
        vec![user.clone()],
        "still assigned"
    );
    assert!(!has_role(&app, &admin, &user, &viewer).await);

    let events = app
        .audit(Some(&admin.token))
        .list_change_events(pb::ListChangeEventsRequest {
            parent: admin.org.clone(),
            target: ops.clone(),
            action: "group_member.updated".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let last = events.last().unwrap();
    let Some(pb::resource::Kind::GroupMember(m)) = last.after.as_ref().and_then(|r| r.kind.clone())
    else {
        panic!("a typed membership: {last:?}");
    };
    assert_eq!(m.types, vec![i32::from(pb::MembershipType::Assigned)]);
    assert_eq!(last.actor, p.name, "the sign-in re-evaluated it");

    // A member (an organization role) is never mapped into a group.
    app.access(Some(&admin.token))
        .assign_role(pb::AssignRoleRequest {
            parent: admin.org.clone(),
            principal: user.clone(),
            role: role(&admin.org, "developer"),
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::Organization(true)),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    op.set_user("m1", json!({"email": "m1@map.example", "groups": "eng"}))
        .await;
    sign_in(&app, &p.name, op.id_token(CLIENT, "m1", "n").await, "n")
        .await
        .unwrap();
    assert!(members(&app, &admin, &eng).await.is_empty());
}
