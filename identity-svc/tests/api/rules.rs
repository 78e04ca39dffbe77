//! The remaining rules of the ODC research notes (R3, R12–R14, R49, stages) and the snapshot.

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    an_invitation_creates_an_invited_member_with_a_seven_day_invitation,
    an_active_end_user_who_gains_an_organization_role_stays_active,
    users_without_roles_are_listed_only_with_manage_users,
    anyone_may_read_their_own_roles,
    stages_reorder_between_development_and_production_only,
    stages_are_added_renamed_and_deleted_when_unused,
    a_snapshot_and_the_feed_after_it_miss_nothing,
);

async fn an_invitation_creates_an_invited_member_with_a_seven_day_invitation(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let u = app
        .users(Some(&admin.token))
        .invite_user(pb::InviteUserRequest {
            parent: admin.org.clone(),
            email: "b@acme.example".into(),
            organization_role: role(&admin.org, "developer"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.state(), pb::UserState::Invited);
    assert!(u.is_member);
    let expires = u.invitation_expire_time.unwrap().seconds - u.create_time.unwrap().seconds;
    assert_eq!(expires, 7 * 24 * 3600);
    // The secret is delivered by mail only.
    assert!(!format!("{u:?}").contains(&app.invitation_token("b@acme.example")));
}

async fn an_active_end_user_who_gains_an_organization_role_stays_active(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let eu = app
        .invite_and_login(&admin, "eu@acme.example", |_| {})
        .await;
    app.access(Some(&admin.token))
        .assign_role(pb::AssignRoleRequest {
            parent: admin.org.clone(),
            principal: eu.user.clone(),
            role: role(&admin.org, "developer"),
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::Organization(true)),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    let u = app
        .users(Some(&admin.token))
        .get_user(pb::GetUserRequest {
            name: eu.user.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.state(), pb::UserState::Active);
    assert!(u.is_member);
}

async fn users_without_roles_are_listed_only_with_manage_users(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let viewers = app
        .roles(Some(&admin.token))
        .create_role(pb::CreateRoleRequest {
            parent: admin.org.clone(),
            role: Some(pb::Role {
                display_name: "Member viewers".into(),
                grants: vec![pb::PermissionGrant {
                    permission: "users.view_members".into(),
                    stages: vec![],
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let v = app.member(&admin, "v@acme.example", &viewers.name).await;
    app.users(Some(&admin.token))
        .create_user(pb::CreateUserRequest {
            parent: admin.org.clone(),
            user: Some(pb::User {
                email: "norole@acme.example".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let members = app
        .users(Some(&v.token))
        .list_users(pb::ListUsersRequest {
            parent: admin.org.clone(),
            facet: pb::UserFacet::FacetMember.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        members
            .users
            .iter()
            .all(|u| u.email != "norole@acme.example")
    );
    assert_code(
        app.users(Some(&v.token))
            .list_users(pb::ListUsersRequest {
                parent: admin.org.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        None,
    );
    let all = app
        .users(Some(&admin.token))
        .list_users(pb::ListUsersRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(all.users.iter().any(|u| u.email == "norole@acme.example"));
}

async fn anyone_may_read_their_own_roles(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "dev@acme.example", "developer").await;
    let mine = app
        .access(Some(&dev.token))
        .list_role_assignments(pb::ListRoleAssignmentsRequest {
            parent: admin.org.clone(),
            principal: dev.user.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.role_assignments.len(), 1);
    assert_eq!(mine.role_assignments[0].role, role(&admin.org, "developer"));
    let me = app
        .users(Some(&dev.token))
        .get_user(pb::GetUserRequest {
            name: dev.user.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.email, "dev@acme.example");
}

async fn stages_reorder_between_development_and_production_only(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    app.stages(Some(&admin.token))
        .create_stage(pb::CreateStageRequest {
            parent: admin.org.clone(),
            stage_id: "uat".into(),
            stage: Some(pb::Stage {
                display_name: "UAT".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let order = |v: &[&str]| pb::ReorderStagesRequest {
        parent: admin.org.clone(),
        stage_ids: v.iter().map(|s| (*s).to_owned()).collect(),
    };
    let swapped = app
        .stages(Some(&admin.token))
        .reorder_stages(order(&["development", "uat", "qa", "production"]))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = swapped
        .stages
        .iter()
        .map(|s| s.name.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(keys, vec!["development", "uat", "qa", "production"]);
    assert_code(
        app.stages(Some(&admin.token))
            .reorder_stages(order(&["uat", "development", "qa", "production"]))
            .await,
        Code::FailedPrecondition,
        Some("STAGE_LOCKED"),
    );
    assert_code(
        app.stages(Some(&admin.token))
            .reorder_stages(order(&["development", "qa", "production", "uat"]))
            .await,
        Code::FailedPrecondition,
        Some("STAGE_LOCKED"),
    );
}

async fn stages_are_added_renamed_and_deleted_when_unused(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let st = || app.stages(Some(&admin.token));
    for i in 0..9 {
        st().create_stage(pb::CreateStageRequest {
            parent: admin.org.clone(),
            stage_id: format!("s{i}"),
            stage: Some(pb::Stage {
                display_name: format!("S{i}"),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    // QA plus nine: ten non-production stages, the most there may be.
    let r = st()
        .create_stage(pb::CreateStageRequest {
            parent: admin.org.clone(),
            stage_id: "s9".into(),
            stage: Some(pb::Stage {
                display_name: "S9".into(),
                ..Default::default()
            }),
        })
        .await;
    assert_code(r, Code::FailedPrecondition, Some("TOO_MANY_STAGES"));
    let renamed = st()
        .update_stage(pb::UpdateStageRequest {
            stage: Some(pb::Stage {
                name: stage(&admin.org, "qa"),
                display_name: "Quality".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "Quality");
    app.groups(Some(&admin.token))
        .create_group(pb::CreateGroupRequest {
            parent: admin.org.clone(),
            group: Some(pb::Group {
                display_name: "G".into(),
                stage: stage(&admin.org, "qa"),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert_code(
        st().delete_stage(pb::DeleteStageRequest {
            name: stage(&admin.org, "qa"),
        })
        .await,
        Code::FailedPrecondition,
        Some("STAGE_IN_USE"),
    );
    assert_code(
        st().delete_stage(pb::DeleteStageRequest {
            name: stage(&admin.org, "production"),
        })
        .await,
        Code::FailedPrecondition,
        Some("STAGE_LOCKED"),
    );
    st().delete_stage(pb::DeleteStageRequest {
        name: stage(&admin.org, "s0"),
    })
    .await
    .unwrap();
    let all = st()
        .list_stages(pb::ListStagesRequest {
            parent: admin.org.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let orders: Vec<i32> = all.stages.iter().map(|s| s.order).collect();
    assert_eq!(
        orders,
        (0..i32::try_from(all.stages.len()).unwrap()).collect::<Vec<_>>(),
        "no gap in the order"
    );
}

async fn a_snapshot_and_the_feed_after_it_miss_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "dev@acme.example", "developer").await;
    let snap = app
        .audit(Some(&admin.token))
        .get_snapshot(pb::GetSnapshotRequest {
            parent: admin.org.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snap.users.len(), 2);
    assert_eq!(snap.roles.len(), 2);
    assert!(
        snap.role_assignments
            .iter()
            .any(|a| a.principal == dev.user && a.role == role(&admin.org, "developer"))
    );
    let mut stream = app
        .audit(Some(&admin.token))
        .watch_changes(pb::WatchChangesRequest {
            parent: admin.org.clone(),
            after_sequence: snap.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    app.users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: dev.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.sequence, snap.sequence + 1);
    assert_eq!(next.action, "user.deactivated");
    assert_eq!(next.affected_users, vec![dev.user.clone()]);
}
