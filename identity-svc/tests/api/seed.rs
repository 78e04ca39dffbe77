//! The sentences of the ODC user-management seed, literally.

use std::collections::BTreeSet;

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    a_role_granted_change_in_development_has_exactly_three_permissions_there,
    one_user_per_email_with_case_and_spaces_normalized,
    groups_hold_only_end_user_roles_of_their_own_stage,
    inviting_into_a_group_gives_every_app_of_the_group_on_acceptance,
    a_member_and_end_user_is_one_record,
    permissions_limited_to_the_lowest_level_view_all_change_one,
);

async fn a_role_granted_change_in_development_has_exactly_three_permissions_there(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let role = app
        .roles(Some(&admin.token))
        .create_role(pb::CreateRoleRequest {
            parent: admin.org.clone(),
            role: Some(pb::Role {
                display_name: "Changer".into(),
                grants: vec![pb::PermissionGrant {
                    // The seed-era name resolves to the current key.
                    permission: "Change Application".into(),
                    stages: vec![stage(&admin.org, "development")],
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(role.grants[0].permission, "asset.change");
    let user = app.member(&admin, "dev@acme.example", &role.name).await;
    let effective = app
        .access(Some(&user.token))
        .list_effective_permissions(pb::ListEffectivePermissionsRequest {
            parent: admin.org.clone(),
            principal: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let in_stage = |key: &str| -> BTreeSet<String> {
        let s = stage(&admin.org, key);
        effective
            .permissions
            .iter()
            .filter(|p| p.stages.is_empty() || p.stages.contains(&s))
            .map(|p| p.permission.clone())
            .collect()
    };
    assert_eq!(
        in_stage("development"),
        BTreeSet::from([
            "asset.change".into(),
            "asset.debug".into(),
            "release.deploy_assets".into()
        ])
    );
    assert!(in_stage("qa").is_empty(), "{:?}", in_stage("qa"));
    assert!(in_stage("production").is_empty());
    assert!(
        app.check(&user, "", "release.deploy_assets", "development", "")
            .await
    );
    assert!(
        !app.check(&user, "", "release.deploy_assets", "qa", "")
            .await
    );
}

async fn one_user_per_email_with_case_and_spaces_normalized(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let users = || app.users(Some(&admin.token));
    let invite = |email: &str| pb::InviteUserRequest {
        parent: admin.org.clone(),
        email: email.into(),
        ..Default::default()
    };
    let first = users()
        .invite_user(invite(" Ann@Example.COM "))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.email, "ann@example.com");
    assert_code(
        users().invite_user(invite("ann@example.com")).await,
        Code::FailedPrecondition,
        Some("INVITATION_PENDING"),
    );
    app.accept_and_login(&admin.org, "ann@example.com").await;
    assert_code(
        users().invite_user(invite("ANN@example.com")).await,
        Code::AlreadyExists,
        Some("EMAIL_TAKEN"),
    );
    let create = pb::CreateUserRequest {
        parent: admin.org.clone(),
        user: Some(pb::User {
            email: "  ann@EXAMPLE.com".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_code(
        users().create_user(create).await,
        Code::AlreadyExists,
        Some("EMAIL_TAKEN"),
    );
    let all = users()
        .list_users(pb::ListUsersRequest {
            parent: admin.org.clone(),
            email_prefix: "ann@".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.users.len(), 1);
}

async fn groups_hold_only_end_user_roles_of_their_own_stage(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let a = app.app(&admin, "Orders").await;
    let viewer = app.end_user_role(&admin, &a, "Viewer").await;
    let groups = || app.groups(Some(&admin.token));
    let g = groups()
        .create_group(pb::CreateGroupRequest {
            parent: admin.org.clone(),
            group: Some(pb::Group {
                display_name: "Marketing".into(),
                stage: stage(&admin.org, "development"),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let add = |role: &str, st: &str| pb::AddGroupRolesRequest {
        group: g.name.clone(),
        end_user_roles: vec![pb::EndUserRoleInStage {
            end_user_role: role.into(),
            stage: st.into(),
        }],
    };
    assert_bad_field(
        groups()
            .add_group_roles(add(&viewer, &stage(&admin.org, "production")))
            .await,
        "end_user_roles[0].stage",
    );
    assert_bad_field(
        groups()
            .add_group_roles(add(&role(&admin.org, "developer"), ""))
            .await,
        "end_user_roles[0].end_user_role",
    );
    let after = groups()
        .get_group(pb::GetGroupRequest {
            name: g.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        after.end_user_roles.is_empty(),
        "a refused add changed nothing"
    );
    let ok = groups()
        .add_group_roles(add(&viewer, &stage(&admin.org, "development")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.end_user_roles, vec![viewer]);
}

async fn inviting_into_a_group_gives_every_app_of_the_group_on_acceptance(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let orders = app.app(&admin, "Orders").await;
    let crm = app.app(&admin, "CRM").await;
    let r1 = app.end_user_role(&admin, &orders, "Clerk").await;
    let r2 = app.end_user_role(&admin, &crm, "Agent").await;
    let dev = stage(&admin.org, "development");
    let g = app
        .groups(Some(&admin.token))
        .create_group(pb::CreateGroupRequest {
            parent: admin.org.clone(),
            group: Some(pb::Group {
                display_name: "Sales".into(),
                stage: dev.clone(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let g = app
        .groups(Some(&admin.token))
        .add_group_roles(pb::AddGroupRolesRequest {
            group: g.name.clone(),
            end_user_roles: vec![
                pb::EndUserRoleInStage {
                    end_user_role: r1.clone(),
                    stage: String::new(),
                },
                pb::EndUserRoleInStage {
                    end_user_role: r2.clone(),
                    stage: dev.clone(),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        g.apps.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([orders.clone(), crm.clone()])
    );
    let invited = app
        .users(Some(&admin.token))
        .invite_user(pb::InviteUserRequest {
            parent: admin.org.clone(),
            email: "eve@acme.example".into(),
            groups: vec![g.name.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(invited.is_end_user && !invited.is_member);
    let members = app
        .groups(Some(&admin.token))
        .list_group_members(pb::ListGroupMembersRequest {
            group: g.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        members.users,
        vec![invited.name.clone()],
        "a member at once"
    );
    let check = |role: &str, st: &str| pb::CheckEndUserRoleRequest {
        parent: admin.org.clone(),
        user: invited.name.clone(),
        end_user_role: role.into(),
        stage: stage(&admin.org, st),
    };
    let before = app
        .access(Some(&admin.token))
        .check_end_user_role(check(&r1, "development"))
        .await
        .unwrap()
        .into_inner();
    assert!(!before.has_role && !before.active, "not before acceptance");
    app.accept_and_login(&admin.org, "eve@acme.example").await;
    for r in [&r1, &r2] {
        let c = app
            .access(Some(&admin.token))
            .check_end_user_role(check(r, "development"))
            .await
            .unwrap()
            .into_inner();
        assert!(c.has_role && !c.direct, "{c:?}");
        assert_eq!(c.groups, vec![g.name.clone()]);
        let p = app
            .access(Some(&admin.token))
            .check_end_user_role(check(r, "production"))
            .await
            .unwrap()
            .into_inner();
        assert!(!p.has_role, "only in the group's stage");
    }
}

async fn a_member_and_end_user_is_one_record(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let orders = app.app(&admin, "Orders").await;
    let clerk = app.end_user_role(&admin, &orders, "Clerk").await;
    let u = app
        .users(Some(&admin.token))
        .invite_user(pb::InviteUserRequest {
            parent: admin.org.clone(),
            email: "both@acme.example".into(),
            organization_role: role(&admin.org, "developer"),
            end_user_roles: vec![pb::EndUserRoleInStage {
                end_user_role: clerk,
                stage: stage(&admin.org, "production"),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(u.is_member && u.is_end_user);
    for facet in [
        pb::UserFacet::FacetMember,
        pb::UserFacet::FacetEndUser,
        pb::UserFacet::FacetAny,
    ] {
        let list = app
            .users(Some(&admin.token))
            .list_users(pb::ListUsersRequest {
                parent: admin.org.clone(),
                facet: facet.into(),
                email_prefix: "both@".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            list.users
                .iter()
                .map(|x| x.name.clone())
                .collect::<Vec<_>>(),
            vec![u.name.clone()],
            "{facet:?}"
        );
    }
}

async fn permissions_limited_to_the_lowest_level_view_all_change_one(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let a = app.app(&admin, "A").await;
    let other = app.app(&admin, "B").await;
    let mk = |name: &str, perm: &str| pb::CreateRoleRequest {
        parent: admin.org.clone(),
        role: Some(pb::Role {
            display_name: name.into(),
            grants: vec![pb::PermissionGrant {
                permission: perm.into(),
                stages: vec![],
            }],
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let viewer = app
        .roles(Some(&admin.token))
        .create_role(mk("Viewer", "asset.open"))
        .await
        .unwrap()
        .into_inner();
    let changer = app
        .roles(Some(&admin.token))
        .create_role(mk("Changer", "asset.change"))
        .await
        .unwrap()
        .into_inner();
    let user = app.member(&admin, "low@acme.example", &viewer.name).await;
    app.access(Some(&admin.token))
        .assign_role(pb::AssignRoleRequest {
            parent: admin.org.clone(),
            principal: user.user.clone(),
            role: changer.name.clone(),
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::App(a.clone())),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    for st in ["development", "qa", "production"] {
        assert!(app.check(&admin, &user.user, "asset.open", st, &a).await);
        assert!(
            app.check(&admin, &user.user, "asset.open", st, &other)
                .await
        );
        assert!(app.check(&admin, &user.user, "asset.change", st, &a).await);
        assert!(
            !app.check(&admin, &user.user, "asset.change", st, &other)
                .await
        );
    }
}
