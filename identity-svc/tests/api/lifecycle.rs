//! The user lifecycle: invitations, acceptance, login, activation, deletion, restart (the waits
//! after wrong passwords are in `abuse`).

use std::time::Duration;

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    an_invitation_expires_after_seven_days_and_the_user_stays_invited,
    resending_invalidates_the_old_token_and_a_token_works_once,
    acceptance_enforces_the_password_policy,
    a_deactivated_users_session_stops_at_once_and_activation_restores_access,
    nobody_can_deactivate_or_delete_themselves,
    the_last_active_administrator_is_protected,
    deleting_a_user_removes_everything_and_frees_the_email,
    created_users_are_active_unless_asked_otherwise,
    deactivating_an_invited_user_blocks_acceptance_until_activated,
    data_survives_a_restart,
    logout_ends_the_session,
    a_request_id_answers_with_the_first_result_even_when_requests_race,
);

fn invite(by: &Session, email: &str) -> pb::InviteUserRequest {
    pb::InviteUserRequest {
        parent: by.org.clone(),
        email: email.into(),
        organization_role: role(&by.org, "developer"),
        ..Default::default()
    }
}

fn accept(token: String) -> pb::AcceptInvitationRequest {
    pb::AcceptInvitationRequest {
        invitation_token: token,
        password: PASSWORD.into(),
        display_name: String::new(),
    }
}

async fn state_of(app: &TestApp, by: &Session, name: &str) -> pb::UserState {
    let u = app
        .users(Some(&by.token))
        .get_user(pb::GetUserRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    u.state()
}

async fn an_invitation_expires_after_seven_days_and_the_user_stays_invited(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let late = app
        .users(Some(&admin.token))
        .invite_user(invite(&admin, "late@acme.example"))
        .await
        .unwrap()
        .into_inner();
    let on_time = app
        .users(Some(&admin.token))
        .invite_user(invite(&admin, "ontime@acme.example"))
        .await
        .unwrap()
        .into_inner();
    assert!(late.invitation_expire_time.is_some());
    app.clock.advance(Duration::from_mins(10079));
    app.users(None)
        .accept_invitation(accept(app.invitation_token("ontime@acme.example")))
        .await
        .unwrap();
    app.clock.advance(Duration::from_secs(61));
    assert_code(
        app.users(None)
            .accept_invitation(accept(app.invitation_token("late@acme.example")))
            .await,
        Code::Unauthenticated,
        None,
    );
    // Sessions last 12 hours: a week later the administrator signs in again.
    let admin = app
        .login(&admin.org, "admin@acme.example", &admin.user)
        .await;
    assert_eq!(
        state_of(&app, &admin, &late.name).await,
        pb::UserState::Invited
    );
    assert_eq!(
        state_of(&app, &admin, &on_time.name).await,
        pb::UserState::Active
    );
}

async fn resending_invalidates_the_old_token_and_a_token_works_once(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let u = app
        .users(Some(&admin.token))
        .invite_user(invite(&admin, "r@acme.example"))
        .await
        .unwrap()
        .into_inner();
    let old = app.invitation_token("r@acme.example");
    app.users(Some(&admin.token))
        .resend_invitation(pb::ResendInvitationRequest {
            name: u.name.clone(),
        })
        .await
        .unwrap();
    let new = app.invitation_token("r@acme.example");
    assert_ne!(old, new);
    assert_code(
        app.users(None).accept_invitation(accept(old)).await,
        Code::Unauthenticated,
        None,
    );
    assert_eq!(
        state_of(&app, &admin, &u.name).await,
        pb::UserState::Invited
    );
    app.users(None)
        .accept_invitation(accept(new.clone()))
        .await
        .unwrap();
    assert_code(
        app.users(None).accept_invitation(accept(new)).await,
        Code::Unauthenticated,
        None,
    );
    assert_code(
        app.users(Some(&admin.token))
            .resend_invitation(pb::ResendInvitationRequest {
                name: u.name.clone(),
            })
            .await,
        Code::FailedPrecondition,
        Some("NOT_INVITED"),
    );
}

async fn acceptance_enforces_the_password_policy(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let u = app
        .users(Some(&admin.token))
        .invite_user(invite(&admin, "p@acme.example"))
        .await
        .unwrap()
        .into_inner();
    let token = app.invitation_token("p@acme.example");
    for bad in ["Short1A", "nouppercase12345", "NoDigitsAtAllHere"] {
        let r = app
            .users(None)
            .accept_invitation(pb::AcceptInvitationRequest {
                invitation_token: token.clone(),
                password: bad.into(),
                display_name: String::new(),
            })
            .await;
        assert_bad_field(r, "password");
    }
    assert_eq!(
        state_of(&app, &admin, &u.name).await,
        pb::UserState::Invited
    );
    app.users(None)
        .accept_invitation(accept(token))
        .await
        .unwrap();
}

async fn a_deactivated_users_session_stops_at_once_and_activation_restores_access(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "dev@acme.example", "developer").await;
    let stages = pb::ListStagesRequest {
        parent: admin.org.clone(),
    };
    app.stages(Some(&dev.token))
        .list_stages(stages.clone())
        .await
        .unwrap();
    let before = app
        .check(&admin, &dev.user, "asset.change", "development", "")
        .await;
    assert!(before);
    let u = app
        .users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: dev.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.state(), pb::UserState::Inactive);
    assert!(u.is_member, "assignments are kept");
    assert_code(
        app.stages(Some(&dev.token))
            .list_stages(stages.clone())
            .await,
        Code::Unauthenticated,
        None,
    );
    assert!(
        !app.check(&admin, &dev.user, "asset.change", "development", "")
            .await
    );
    let login = pb::LoginRequest {
        organization: admin.org.clone(),
        email: "dev@acme.example".into(),
        password: PASSWORD.into(),
    };
    assert_code(
        app.users(None).login(login.clone()).await,
        Code::Unauthenticated,
        None,
    );
    app.users(Some(&admin.token))
        .activate_user(pb::ActivateUserRequest {
            name: dev.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert!(
        app.check(&admin, &dev.user, "asset.change", "development", "")
            .await,
        "the same access is back"
    );
    assert_code(
        app.stages(Some(&dev.token))
            .list_stages(stages.clone())
            .await,
        Code::Unauthenticated,
        None,
    );
    let fresh = app
        .users(None)
        .login(login)
        .await
        .unwrap()
        .into_inner()
        .session_token;
    app.stages(Some(&fresh)).list_stages(stages).await.unwrap();
}

async fn nobody_can_deactivate_or_delete_themselves(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let _second = app
        .member(&admin, "second@acme.example", "administrator")
        .await;
    assert_code(
        app.users(Some(&admin.token))
            .deactivate_user(pb::DeactivateUserRequest {
                name: admin.user.clone(),
                etag: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        Some("SELF_ACTION"),
    );
    assert_code(
        app.users(Some(&admin.token))
            .delete_user(pb::DeleteUserRequest {
                name: admin.user.clone(),
                etag: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        Some("SELF_ACTION"),
    );
}

async fn the_last_active_administrator_is_protected(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let managers = app
        .roles(Some(&admin.token))
        .create_role(pb::CreateRoleRequest {
            parent: admin.org.clone(),
            role: Some(pb::Role {
                display_name: "User managers".into(),
                grants: vec![
                    pb::PermissionGrant {
                        permission: "users.manage".into(),
                        stages: vec![],
                    },
                    pb::PermissionGrant {
                        permission: "users.manage_member_access".into(),
                        stages: vec![],
                    },
                ],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = app.member(&admin, "m@acme.example", &managers.name).await;
    let org_scope = Some(pb::Scope {
        kind: Some(pb::scope::Kind::Organization(true)),
    });
    assert_code(
        app.users(Some(&m.token))
            .deactivate_user(pb::DeactivateUserRequest {
                name: admin.user.clone(),
                etag: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        Some("LAST_ADMINISTRATOR"),
    );
    assert_code(
        app.users(Some(&m.token))
            .delete_user(pb::DeleteUserRequest {
                name: admin.user.clone(),
                etag: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        Some("LAST_ADMINISTRATOR"),
    );
    assert_code(
        app.access(Some(&m.token))
            .revoke_role(pb::RevokeRoleRequest {
                parent: admin.org.clone(),
                principal: admin.user.clone(),
                scope: org_scope.clone(),
            })
            .await,
        Code::FailedPrecondition,
        Some("LAST_ADMINISTRATOR"),
    );
    assert_code(
        app.access(Some(&m.token))
            .assign_role(pb::AssignRoleRequest {
                parent: admin.org.clone(),
                principal: admin.user.clone(),
                role: role(&admin.org, "developer"),
                scope: org_scope.clone(),
                grant_period: None,
            })
            .await,
        Code::FailedPrecondition,
        Some("LAST_ADMINISTRATOR"),
    );
    // With a second ACTIVE administrator, the first can lose the role.
    let second = app
        .member(&admin, "second@acme.example", "administrator")
        .await;
    app.access(Some(&second.token))
        .revoke_role(pb::RevokeRoleRequest {
            parent: admin.org.clone(),
            principal: admin.user.clone(),
            scope: org_scope,
        })
        .await
        .unwrap();
}

async fn deleting_a_user_removes_everything_and_frees_the_email(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "gone@acme.example", "developer").await;
    app.users(Some(&admin.token))
        .delete_user(pb::DeleteUserRequest {
            name: dev.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_code(
        app.users(Some(&admin.token))
            .get_user(pb::GetUserRequest {
                name: dev.user.clone(),
            })
            .await,
        Code::NotFound,
        None,
    );
    assert_code(
        app.stages(Some(&dev.token))
            .list_stages(pb::ListStagesRequest {
                parent: admin.org.clone(),
            })
            .await,
        Code::Unauthenticated,
        None,
    );
    let assignments = app
        .access(Some(&admin.token))
        .list_role_assignments(pb::ListRoleAssignmentsRequest {
            parent: admin.org.clone(),
            principal: dev.user.clone(),
            ..Default::default()
        })
        .await;
    // The principal no longer exists in the organization: its name does not parse as one.
    assert!(
        assignments.is_err()
            || assignments
                .unwrap()
                .into_inner()
                .role_assignments
                .is_empty()
    );
    let again = app
        .users(Some(&admin.token))
        .invite_user(invite(&admin, "gone@acme.example"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(again.name, dev.user, "a new user");
    assert_code(
        app.users(Some(&admin.token))
            .delete_user(pb::DeleteUserRequest {
                name: dev.user.clone(),
                etag: String::new(),
            })
            .await,
        Code::NotFound,
        None,
    );
}

async fn created_users_are_active_unless_asked_otherwise(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let mk = |email: &str, active: Option<bool>| pb::CreateUserRequest {
        parent: admin.org.clone(),
        user: Some(pb::User {
            email: email.into(),
            ..Default::default()
        }),
        active,
        initial_password: PASSWORD.into(),
        request_id: String::new(),
    };
    let a = app
        .users(Some(&admin.token))
        .create_user(mk("a@acme.example", None))
        .await
        .unwrap()
        .into_inner();
    let b2 = app
        .users(Some(&admin.token))
        .create_user(mk("b@acme.example", Some(false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.state(), pb::UserState::Active);
    assert_eq!(b2.state(), pb::UserState::Inactive);
    assert!(!a.is_member && !a.is_end_user);
    app.login(&admin.org, "a@acme.example", &a.name).await;
}

async fn deactivating_an_invited_user_blocks_acceptance_until_activated(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let u = app
        .users(Some(&admin.token))
        .invite_user(invite(&admin, "i@acme.example"))
        .await
        .unwrap()
        .into_inner();
    let token = app.invitation_token("i@acme.example");
    app.users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: u.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_code(
        app.users(None)
            .accept_invitation(accept(token.clone()))
            .await,
        Code::FailedPrecondition,
        Some("NOT_INVITED"),
    );
    let back = app
        .users(Some(&admin.token))
        .activate_user(pb::ActivateUserRequest {
            name: u.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        back.state(),
        pb::UserState::Invited,
        "never registered: back to INVITED"
    );
    app.users(None)
        .accept_invitation(accept(token))
        .await
        .unwrap();
}

async fn data_survives_a_restart(b: Backend) {
    let mut app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "dev@acme.example", "developer").await;
    app.stop().await;
    app.start().await;
    // Sessions, users and assignments are all still there.
    assert!(
        app.check(&admin, &dev.user, "asset.change", "development", "")
            .await
    );
    let again = app.login(&admin.org, "dev@acme.example", &dev.user).await;
    assert!(app.check(&again, "", "asset.open", "production", "").await);
}

async fn logout_ends_the_session(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    app.users(Some(&admin.token))
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();
    assert_code(
        app.stages(Some(&admin.token))
            .list_stages(pb::ListStagesRequest {
                parent: admin.org.clone(),
            })
            .await,
        Code::Unauthenticated,
        None,
    );
}

/// AIP-155 on every create that takes a `request_id` (CreateUser, InviteUser, CreateGroup,
/// CreateRole): two identical requests sent at once both answer with the one resource the first
/// created, and so does a later retry; a key used by another kind of create is refused.
async fn a_request_id_answers_with_the_first_result_even_when_requests_race(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let t = Some(admin.token.as_str());
    let org = admin.org.clone();
    let (mut users, mut users2) = (app.users(t), app.users(t));
    let (mut inviter, mut inviter2) = (app.users(t), app.users(t));
    let (mut groups, mut groups2) = (app.groups(t), app.groups(t));
    let (mut roles, mut roles2) = (app.roles(t), app.roles(t));
    let mut created = Vec::new();
    for round in 0..6 {
        let user = pb::CreateUserRequest {
            parent: org.clone(),
            user: Some(pb::User {
                email: format!("u{round}@acme.example"),
                ..Default::default()
            }),
            request_id: format!("user-{round}"),
            ..Default::default()
        };
        let invitation = pb::InviteUserRequest {
            request_id: format!("invite-{round}"),
            ..invite(&admin, &format!("i{round}@acme.example"))
        };
        let group = pb::CreateGroupRequest {
            parent: org.clone(),
            group: Some(pb::Group {
                display_name: format!("Group {round}"),
                stage: stage(&org, "development"),
                ..Default::default()
            }),
            request_id: format!("group-{round}"),
        };
        let custom = pb::CreateRoleRequest {
            parent: org.clone(),
            role: Some(pb::Role {
                display_name: format!("Role {round}"),
                grants: vec![pb::PermissionGrant {
                    permission: "asset.open".into(),
                    stages: vec![],
                }],
                ..Default::default()
            }),
            request_id: format!("role-{round}"),
        };
        let (u1, u2, i1, i2, g1, g2, r1, r2) = tokio::join!(
            users.create_user(user.clone()),
            users2.create_user(user.clone()),
            inviter.invite_user(invitation.clone()),
            inviter2.invite_user(invitation.clone()),
            groups.create_group(group.clone()),
            groups2.create_group(group.clone()),
            roles.create_role(custom.clone()),
            roles2.create_role(custom.clone()),
        );
        let pairs = [
            (
                "CreateUser",
                u1.map(|r| r.into_inner().name),
                u2.map(|r| r.into_inner().name),
            ),
            (
                "InviteUser",
                i1.map(|r| r.into_inner().name),
                i2.map(|r| r.into_inner().name),
            ),
            (
                "CreateGroup",
                g1.map(|r| r.into_inner().name),
                g2.map(|r| r.into_inner().name),
            ),
            (
                "CreateRole",
                r1.map(|r| r.into_inner().name),
                r2.map(|r| r.into_inner().name),
            ),
        ];
        for (rpc, first, second) in pairs {
            let (first, second) = (
                first.unwrap(),
                second.unwrap_or_else(|e| panic!("{rpc}: {e:?}")),
            );
            assert_eq!(
                first, second,
                "{rpc} round {round}: two resources for one request_id"
            );
            created.push(first);
        }
        // A retry afterwards answers the same.
        let again = users.create_user(user).await.unwrap().into_inner();
        assert_eq!(again.name, created[created.len() - 4]);
        let again = roles.create_role(custom).await.unwrap().into_inner();
        assert_eq!(again.name, created[created.len() - 1]);
    }
    // One resource per request id, and nothing else was created.
    let listed = users
        .list_users(pb::ListUsersRequest {
            parent: org.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(listed.len(), 1 + 12, "{listed:?}");
    let listed = groups
        .list_groups(pb::ListGroupsRequest {
            parent: org.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(listed.len(), 6, "{listed:?}");
    // The key of a user is not a group's.
    let mut group = pb::CreateGroupRequest {
        parent: org.clone(),
        group: Some(pb::Group {
            display_name: "Other".into(),
            stage: stage(&org, "development"),
            ..Default::default()
        }),
        request_id: "user-0".into(),
    };
    assert_bad_field(groups.create_group(group.clone()).await, "request_id");
    group.request_id = "group-0".into();
    assert_eq!(
        groups.create_group(group).await.unwrap().into_inner().name,
        created[2]
    );
}
