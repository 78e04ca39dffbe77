//! Role assignments, end-user grants, checks with explanations and reverse lookups.

use std::collections::BTreeSet;

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    assigning_again_replaces_at_organization_and_at_app_scope,
    the_three_role_scenarios_hold,
    deleting_an_app_removes_its_app_scope_assignments_and_end_user_roles,
    a_developer_invites_end_users_only_in_development_and_never_grants_organization_roles,
    an_administrator_has_everything_including_stages_and_apps_added_later,
    a_check_explains_the_assignment_role_and_implication_chain,
    permission_holders_are_listed_with_reasons_and_paged,
    end_user_roles_are_granted_per_stage,
    a_stage_scopable_permission_is_checked_in_a_stage,
);

fn org_scope() -> Option<pb::Scope> {
    Some(pb::Scope {
        kind: Some(pb::scope::Kind::Organization(true)),
    })
}

fn app_scope(app: &str) -> Option<pb::Scope> {
    Some(pb::Scope {
        kind: Some(pb::scope::Kind::App(app.into())),
    })
}

async fn assign(
    app: &TestApp,
    by: &Session,
    principal: &str,
    role_id: &str,
    scope: Option<pb::Scope>,
) -> pb::RoleAssignment {
    let r = if role_id.contains('/') {
        role_id.to_owned()
    } else {
        role(&by.org, role_id)
    };
    app.access(Some(&by.token))
        .assign_role(pb::AssignRoleRequest {
            parent: by.org.clone(),
            principal: principal.into(),
            role: r,
            scope,
            grant_period: None,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn assignments_of(app: &TestApp, by: &Session, principal: &str) -> Vec<(String, pb::Scope)> {
    app.access(Some(&by.token))
        .list_role_assignments(pb::ListRoleAssignmentsRequest {
            parent: by.org.clone(),
            principal: principal.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .role_assignments
        .into_iter()
        .map(|a| (a.role, a.scope.unwrap()))
        .collect()
}

async fn assigning_again_replaces_at_organization_and_at_app_scope(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let u = app.member(&admin, "u@acme.example", "developer").await;
    let a = app.app(&admin, "A").await;
    assign(&app, &admin, &u.user, "administrator", org_scope()).await;
    assert_eq!(
        assignments_of(&app, &admin, &u.user).await,
        vec![(role(&admin.org, "administrator"), org_scope().unwrap())]
    );
    assign(&app, &admin, &u.user, "developer", app_scope(&a)).await;
    assign(&app, &admin, &u.user, "administrator", app_scope(&a)).await;
    let all = assignments_of(&app, &admin, &u.user).await;
    assert_eq!(
        all.len(),
        2,
        "one at organization scope, one on the app: {all:?}"
    );
    assert!(all.contains(&(role(&admin.org, "administrator"), app_scope(&a).unwrap())));
    app.access(Some(&admin.token))
        .revoke_role(pb::RevokeRoleRequest {
            parent: admin.org.clone(),
            principal: u.user.clone(),
            scope: app_scope(&a),
        })
        .await
        .unwrap();
    app.access(Some(&admin.token))
        .revoke_role(pb::RevokeRoleRequest {
            parent: admin.org.clone(),
            principal: u.user.clone(),
            scope: org_scope(),
        })
        .await
        .unwrap();
    assert!(
        assignments_of(&app, &admin, &u.user).await.is_empty(),
        "No role"
    );
    assert_code(
        app.access(Some(&admin.token))
            .revoke_role(pb::RevokeRoleRequest {
                parent: admin.org.clone(),
                principal: u.user.clone(),
                scope: org_scope(),
            })
            .await,
        Code::NotFound,
        None,
    );
}

async fn the_three_role_scenarios_hold(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let a = app.app(&admin, "A").await;
    let other = app.app(&admin, "B").await;
    // 1. Developer at organization scope + Administrator on A.
    let s1 = app.member(&admin, "s1@acme.example", "developer").await;
    assign(&app, &admin, &s1.user, "administrator", app_scope(&a)).await;
    assert!(
        app.check(&admin, &s1.user, "config.edit_asset", "production", &a)
            .await
    );
    assert!(
        !app.check(&admin, &s1.user, "config.edit_asset", "production", &other)
            .await
    );
    // 2. Administrator at organization scope + Developer on A: still everything on A.
    let s2 = app.member(&admin, "s2@acme.example", "administrator").await;
    assign(&app, &admin, &s2.user, "developer", app_scope(&a)).await;
    for p in ["config.edit_asset", "asset.delete", "monitoring.user_info"] {
        assert!(
            app.check(&admin, &s2.user, p, "production", &a).await,
            "{p}"
        );
    }
    assert!(app.check(&admin, &s2.user, "users.manage", "", "").await);
    // 3. Administrator on A only: no organization-only permission, nothing on B.
    let s3 = app
        .invite_and_login(&admin, "s3@acme.example", |r| {
            r.app_roles = vec![pb::AppRoleAssignment {
                app: a.clone(),
                role: role(&admin.org, "administrator"),
            }];
        })
        .await;
    assert!(
        app.check(&admin, &s3.user, "asset.change", "production", &a)
            .await
    );
    for p in ["users.manage", "roles.manage", "support.view_all_cases"] {
        assert!(!app.check(&admin, &s3.user, p, "", &a).await, "{p}");
    }
    assert!(
        !app.check(&admin, &s3.user, "asset.open", "development", &other)
            .await
    );
}

async fn deleting_an_app_removes_its_app_scope_assignments_and_end_user_roles(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let a = app.app(&admin, "A").await;
    let keep = app.app(&admin, "Keep").await;
    let clerk = app.end_user_role(&admin, &a, "Clerk").await;
    let only = app
        .invite_and_login(&admin, "only@acme.example", |r| {
            r.app_roles = vec![pb::AppRoleAssignment {
                app: a.clone(),
                role: role(&admin.org, "developer"),
            }];
            r.end_user_roles = vec![pb::EndUserRoleInStage {
                end_user_role: clerk.clone(),
                stage: stage(&admin.org, "production"),
            }];
        })
        .await;
    let both = app
        .invite_and_login(&admin, "both@acme.example", |r| {
            r.app_roles = vec![
                pb::AppRoleAssignment {
                    app: a.clone(),
                    role: role(&admin.org, "developer"),
                },
                pb::AppRoleAssignment {
                    app: keep.clone(),
                    role: role(&admin.org, "developer"),
                },
            ];
        })
        .await;
    app.apps(Some(&admin.token))
        .delete_app(pb::DeleteAppRequest { name: a.clone() })
        .await
        .unwrap();
    assert!(assignments_of(&app, &admin, &only.user).await.is_empty());
    assert_eq!(
        assignments_of(&app, &admin, &both.user).await,
        vec![(role(&admin.org, "developer"), app_scope(&keep).unwrap())]
    );
    let u = app
        .users(Some(&admin.token))
        .get_user(pb::GetUserRequest {
            name: only.user.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!u.is_member && !u.is_end_user, "no access left: {u:?}");
    assert_code(
        app.apps(Some(&admin.token))
            .get_app(pb::GetAppRequest { name: a.clone() })
            .await,
        Code::NotFound,
        None,
    );
    let events = app
        .audit(Some(&admin.token))
        .list_change_events(pb::ListChangeEventsRequest {
            parent: admin.org.clone(),
            target: only.user.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let actions: BTreeSet<_> = events.events.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains("role_assignment.deleted") && actions.contains("end_user_grant.deleted"),
        "{actions:?}"
    );
}

async fn a_developer_invites_end_users_only_in_development_and_never_grants_organization_roles(
    b: Backend,
) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "dev@acme.example", "developer").await;
    let a = app.app(&admin, "A").await;
    let clerk = app.end_user_role(&admin, &a, "Clerk").await;
    let invite = |email: &str, st: &str| pb::InviteUserRequest {
        parent: admin.org.clone(),
        email: email.into(),
        end_user_roles: vec![pb::EndUserRoleInStage {
            end_user_role: clerk.clone(),
            stage: stage(&admin.org, st),
        }],
        ..Default::default()
    };
    app.users(Some(&dev.token))
        .invite_user(invite("e1@acme.example", "development"))
        .await
        .unwrap();
    for st in ["qa", "production"] {
        assert_code(
            app.users(Some(&dev.token))
                .invite_user(invite("e2@acme.example", st))
                .await,
            Code::PermissionDenied,
            None,
        );
    }
    let member = pb::InviteUserRequest {
        parent: admin.org.clone(),
        email: "m@acme.example".into(),
        organization_role: role(&admin.org, "developer"),
        ..Default::default()
    };
    assert_code(
        app.users(Some(&dev.token)).invite_user(member).await,
        Code::PermissionDenied,
        None,
    );
    let r = app
        .access(Some(&dev.token))
        .assign_role(pb::AssignRoleRequest {
            parent: admin.org.clone(),
            principal: dev.user.clone(),
            role: role(&admin.org, "administrator"),
            scope: org_scope(),
            grant_period: None,
        })
        .await;
    assert_code(r, Code::PermissionDenied, None);
    // Nothing was created by the refused invitations.
    let list = app
        .users(Some(&admin.token))
        .list_users(pb::ListUsersRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let emails: BTreeSet<_> = list.users.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(
        emails,
        BTreeSet::from(["admin@acme.example", "dev@acme.example", "e1@acme.example"])
    );
}

async fn an_administrator_has_everything_including_stages_and_apps_added_later(b: Backend) {
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
    let later = app.app(&admin, "Later").await;
    let cat = app
        .roles(Some(&admin.token))
        .list_permissions(pb::ListPermissionsRequest {})
        .await
        .unwrap()
        .into_inner();
    for p in &cat.permissions {
        let st = if p.stage_scopable { "uat" } else { "" };
        assert!(app.check(&admin, "", &p.key, st, &later).await, "{}", p.key);
    }
}

async fn a_check_explains_the_assignment_role_and_implication_chain(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "dev@acme.example", "developer").await;
    let r = app
        .access(Some(&admin.token))
        .check_permission(pb::CheckPermissionRequest {
            parent: admin.org.clone(),
            principal: dev.user.clone(),
            permission: "release.deploy_assets".into(),
            stage: stage(&admin.org, "development"),
            app: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    assert_eq!(r.reasons.len(), 1);
    let why = &r.reasons[0];
    assert_eq!(why.role, role(&admin.org, "developer"));
    assert_eq!(why.scope, org_scope());
    assert_eq!(
        why.implication_chain,
        vec![
            "asset.change".to_owned(),
            "release.deploy_assets".to_owned()
        ]
    );
    assert_eq!(why.stages, vec![stage(&admin.org, "development")]);
    let no = app
        .access(Some(&admin.token))
        .check_permission(pb::CheckPermissionRequest {
            parent: admin.org.clone(),
            principal: dev.user.clone(),
            permission: "users.manage".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!no.allowed && no.reasons.is_empty() && no.denial_reason.contains("users.manage"));
    // Everyone may check themselves; checking others needs users.view_members.
    assert!(app.check(&dev, "", "asset.open", "production", "").await);
    let other = app
        .access(Some(&dev.token))
        .check_permission(pb::CheckPermissionRequest {
            parent: admin.org.clone(),
            principal: admin.user.clone(),
            permission: "users.manage".into(),
            ..Default::default()
        })
        .await;
    assert_code(other, Code::PermissionDenied, None);
}

async fn permission_holders_are_listed_with_reasons_and_paged(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let mut expected = BTreeSet::from([admin.user.clone()]);
    for i in 0..4 {
        expected.insert(
            app.member(&admin, &format!("d{i}@acme.example"), "developer")
                .await
                .user,
        );
    }
    // Not a holder: no role at all.
    app.users(Some(&admin.token))
        .create_user(pb::CreateUserRequest {
            parent: admin.org.clone(),
            user: Some(pb::User {
                email: "none@acme.example".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .access(Some(&admin.token))
            .list_permission_holders(pb::ListPermissionHoldersRequest {
                parent: admin.org.clone(),
                permission: "asset.change".into(),
                stage: stage(&admin.org, "development"),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.holders.len() <= 2);
        for h in &page.holders {
            assert!(!h.reasons.is_empty());
            seen.push(h.principal.clone());
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(seen.len(), expected.len(), "no duplicates across pages");
    let prod = app
        .access(Some(&admin.token))
        .list_permission_holders(pb::ListPermissionHoldersRequest {
            parent: admin.org.clone(),
            permission: "asset.change".into(),
            stage: stage(&admin.org, "production"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        prod.holders
            .iter()
            .map(|h| h.principal.clone())
            .collect::<Vec<_>>(),
        vec![admin.user.clone()]
    );
}

async fn end_user_roles_are_granted_per_stage(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let a = app.app(&admin, "X").await;
    let viewer = app.end_user_role(&admin, &a, "Viewer").await;
    let u = app
        .invite_and_login(&admin, "eu@acme.example", |_| {})
        .await;
    let grant = |st: &str| pb::EndUserRoleGrant {
        user: u.user.clone(),
        end_user_role: viewer.clone(),
        stage: stage(&admin.org, st),
    };
    app.access(Some(&admin.token))
        .grant_end_user_role(pb::GrantEndUserRoleRequest {
            parent: admin.org.clone(),
            grant: Some(grant("development")),
        })
        .await
        .unwrap();
    let check = |st: &str| pb::CheckEndUserRoleRequest {
        parent: admin.org.clone(),
        user: u.user.clone(),
        end_user_role: viewer.clone(),
        stage: stage(&admin.org, st),
    };
    assert!(
        app.access(Some(&admin.token))
            .check_end_user_role(check("development"))
            .await
            .unwrap()
            .into_inner()
            .direct
    );
    assert!(
        !app.access(Some(&admin.token))
            .check_end_user_role(check("production"))
            .await
            .unwrap()
            .into_inner()
            .has_role
    );
    app.access(Some(&admin.token))
        .revoke_end_user_role(pb::RevokeEndUserRoleRequest {
            parent: admin.org.clone(),
            grant: Some(grant("development")),
        })
        .await
        .unwrap();
    assert!(
        !app.access(Some(&admin.token))
            .check_end_user_role(check("development"))
            .await
            .unwrap()
            .into_inner()
            .has_role
    );
    assert_code(
        app.access(Some(&admin.token))
            .revoke_end_user_role(pb::RevokeEndUserRoleRequest {
                parent: admin.org.clone(),
                grant: Some(grant("development")),
            })
            .await,
        Code::NotFound,
        None,
    );
}

async fn a_stage_scopable_permission_is_checked_in_a_stage(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .access(Some(&admin.token))
        .check_permission(pb::CheckPermissionRequest {
            parent: admin.org.clone(),
            permission: "asset.change".into(),
            ..Default::default()
        })
        .await;
    assert_bad_field(r, "stage");
    let r = app
        .access(Some(&admin.token))
        .check_permission(pb::CheckPermissionRequest {
            parent: admin.org.clone(),
            permission: "asset.nope".into(),
            ..Default::default()
        })
        .await;
    assert_bad_field(r, "permission");
}
