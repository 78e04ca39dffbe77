//! Authentication and authorization over every RPC, table-driven: no token → UNAUTHENTICATED;
//! a principal without the permission → PERMISSION_DENIED; an administrator of organization A
//! gets nothing of organization B through any RPC, and changes nothing there.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use shared::proto::identity::v1 as pb;
use tonic::{Code, Status};

use crate::helpers::*;

crate::api_tests!(
    every_rpc_without_a_token_is_unauthenticated,
    every_rpc_refuses_a_principal_without_the_permission,
    an_administrator_of_one_organization_gets_nothing_of_another,
    a_service_account_token_authenticates_until_revoked,
);

/// Names of existing resources of one organization, used as request targets.
pub struct Targets {
    pub org: String,
    pub user: String,
    pub role: String,
    pub app: String,
    pub end_user_role: String,
    pub group: String,
    pub service_account: String,
    pub token: String,
}

type Fut<'a> = Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>>;
type Call = for<'a> fn(&'a TestApp, Option<&'a str>, &'a Targets) -> Fut<'a>;

macro_rules! rpc {
    ($name:literal, $client:ident . $method:ident, |$t:ident| $req:expr) => {
        ($name, {
            fn call<'a>(app: &'a TestApp, tok: Option<&'a str>, $t: &'a Targets) -> Fut<'a> {
                Box::pin(async move { app.$client(tok).$method($req).await.map(|_| ()) })
            }
            call as Call
        })
    };
}

fn scope_org() -> Option<pb::Scope> {
    Some(pb::Scope {
        kind: Some(pb::scope::Kind::Organization(true)),
    })
}

/// One well-formed request per RPC, aimed at `Targets`.
fn table() -> Vec<(&'static str, Call)> {
    vec![
        rpc!(
            "identity.v1.Organizations/CreateOrganization",
            orgs.create_organization,
            |_t| pb::CreateOrganizationRequest {
                organization: Some(pb::Organization {
                    display_name: "X".into(),
                    ..Default::default()
                }),
                first_administrator_email: "x@x.example".into(),
            }
        ),
        rpc!(
            "identity.v1.Organizations/GetOrganization",
            orgs.get_organization,
            |t| pb::GetOrganizationRequest {
                name: t.org.clone()
            }
        ),
        rpc!(
            "identity.v1.Organizations/ListOrganizations",
            orgs.list_organizations,
            |_t| pb::ListOrganizationsRequest::default()
        ),
        rpc!(
            "identity.v1.Organizations/UpdateOrganization",
            orgs.update_organization,
            |t| pb::UpdateOrganizationRequest {
                organization: Some(pb::Organization {
                    name: t.org.clone(),
                    display_name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: None,
            }
        ),
        rpc!("identity.v1.Stages/ListStages", stages.list_stages, |t| {
            pb::ListStagesRequest {
                parent: t.org.clone(),
            }
        }),
        rpc!("identity.v1.Stages/CreateStage", stages.create_stage, |t| {
            pb::CreateStageRequest {
                parent: t.org.clone(),
                stage_id: "uat".into(),
                stage: Some(pb::Stage {
                    display_name: "UAT".into(),
                    ..Default::default()
                }),
            }
        }),
        rpc!("identity.v1.Stages/UpdateStage", stages.update_stage, |t| {
            pb::UpdateStageRequest {
                stage: Some(pb::Stage {
                    name: stage(&t.org, "qa"),
                    display_name: "Quality".into(),
                    ..Default::default()
                }),
                update_mask: None,
            }
        }),
        rpc!(
            "identity.v1.Stages/ReorderStages",
            stages.reorder_stages,
            |_t| pb::ReorderStagesRequest {
                parent: _t.org.clone(),
                stage_ids: vec!["development".into(), "qa".into(), "production".into()],
            }
        ),
        rpc!("identity.v1.Stages/DeleteStage", stages.delete_stage, |t| {
            pb::DeleteStageRequest {
                name: stage(&t.org, "qa"),
            }
        }),
        rpc!("identity.v1.Apps/CreateApp", apps.create_app, |t| {
            pb::CreateAppRequest {
                parent: t.org.clone(),
                app: Some(pb::App {
                    display_name: "New app".into(),
                    ..Default::default()
                }),
            }
        }),
        rpc!("identity.v1.Apps/GetApp", apps.get_app, |t| {
            pb::GetAppRequest {
                name: t.app.clone(),
            }
        }),
        rpc!("identity.v1.Apps/ListApps", apps.list_apps, |t| {
            pb::ListAppsRequest {
                parent: t.org.clone(),
                ..Default::default()
            }
        }),
        rpc!("identity.v1.Apps/DeleteApp", apps.delete_app, |t| {
            pb::DeleteAppRequest {
                name: t.app.clone(),
            }
        }),
        rpc!(
            "identity.v1.Apps/CreateEndUserRole",
            apps.create_end_user_role,
            |t| pb::CreateEndUserRoleRequest {
                parent: t.app.clone(),
                end_user_role: Some(pb::EndUserRole {
                    display_name: "New".into(),
                    ..Default::default()
                }),
            }
        ),
        rpc!(
            "identity.v1.Apps/ListEndUserRoles",
            apps.list_end_user_roles,
            |t| pb::ListEndUserRolesRequest {
                parent: t.app.clone()
            }
        ),
        rpc!(
            "identity.v1.Apps/DeleteEndUserRole",
            apps.delete_end_user_role,
            |t| pb::DeleteEndUserRoleRequest {
                name: t.end_user_role.clone()
            }
        ),
        rpc!("identity.v1.Users/InviteUser", users.invite_user, |t| {
            pb::InviteUserRequest {
                parent: t.org.clone(),
                email: "new@x.example".into(),
                ..Default::default()
            }
        }),
        rpc!(
            "identity.v1.Users/ResendInvitation",
            users.resend_invitation,
            |t| pb::ResendInvitationRequest {
                name: t.user.clone()
            }
        ),
        rpc!(
            "identity.v1.Users/AcceptInvitation",
            users.accept_invitation,
            |_t| pb::AcceptInvitationRequest {
                invitation_token: "odc_inv_unknown".into(),
                password: PASSWORD.into(),
                display_name: String::new(),
            }
        ),
        rpc!("identity.v1.Users/CreateUser", users.create_user, |t| {
            pb::CreateUserRequest {
                parent: t.org.clone(),
                user: Some(pb::User {
                    email: "created@x.example".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }),
        rpc!("identity.v1.Users/GetUser", users.get_user, |t| {
            pb::GetUserRequest {
                name: t.user.clone(),
            }
        }),
        rpc!("identity.v1.Users/ListUsers", users.list_users, |t| {
            pb::ListUsersRequest {
                parent: t.org.clone(),
                ..Default::default()
            }
        }),
        rpc!("identity.v1.Users/UpdateUser", users.update_user, |t| {
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    name: t.user.clone(),
                    display_name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: None,
            }
        }),
        rpc!("identity.v1.Users/ActivateUser", users.activate_user, |t| {
            pb::ActivateUserRequest {
                name: t.user.clone(),
                etag: String::new(),
            }
        }),
        rpc!(
            "identity.v1.Users/DeactivateUser",
            users.deactivate_user,
            |t| pb::DeactivateUserRequest {
                name: t.user.clone(),
                etag: String::new()
            }
        ),
        rpc!("identity.v1.Users/DeleteUser", users.delete_user, |t| {
            pb::DeleteUserRequest {
                name: t.user.clone(),
                etag: String::new(),
            }
        }),
        rpc!("identity.v1.Users/Login", users.login, |t| {
            pb::LoginRequest {
                organization: t.org.clone(),
                email: "nobody@x.example".into(),
                password: PASSWORD.into(),
            }
        }),
        rpc!("identity.v1.Users/Logout", users.logout, |_t| {
            pb::LogoutRequest {}
        }),
        rpc!(
            "identity.v1.Roles/ListPermissions",
            roles.list_permissions,
            |_t| pb::ListPermissionsRequest {}
        ),
        rpc!("identity.v1.Roles/ListRoles", roles.list_roles, |t| {
            pb::ListRolesRequest {
                parent: t.org.clone(),
                ..Default::default()
            }
        }),
        rpc!("identity.v1.Roles/GetRole", roles.get_role, |t| {
            pb::GetRoleRequest {
                name: t.role.clone(),
            }
        }),
        rpc!("identity.v1.Roles/CreateRole", roles.create_role, |t| {
            pb::CreateRoleRequest {
                parent: t.org.clone(),
                role: Some(pb::Role {
                    display_name: "New role".into(),
                    grants: vec![pb::PermissionGrant {
                        permission: "mentor.use".into(),
                        stages: vec![],
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            }
        }),
        rpc!("identity.v1.Roles/UpdateRole", roles.update_role, |t| {
            pb::UpdateRoleRequest {
                role: Some(pb::Role {
                    name: t.role.clone(),
                    display_name: "Renamed role".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            }
        }),
        rpc!(
            "identity.v1.Roles/DuplicateRole",
            roles.duplicate_role,
            |t| pb::DuplicateRoleRequest {
                name: t.role.clone()
            }
        ),
        rpc!("identity.v1.Roles/DeleteRole", roles.delete_role, |t| {
            pb::DeleteRoleRequest {
                name: t.role.clone(),
                etag: String::new(),
            }
        }),
        rpc!("identity.v1.Access/AssignRole", access.assign_role, |t| {
            pb::AssignRoleRequest {
                parent: t.org.clone(),
                principal: t.user.clone(),
                role: t.role.clone(),
                scope: scope_org(),
                grant_period: None,
            }
        }),
        rpc!("identity.v1.Access/RevokeRole", access.revoke_role, |t| {
            pb::RevokeRoleRequest {
                parent: t.org.clone(),
                principal: t.user.clone(),
                scope: scope_org(),
            }
        }),
        rpc!(
            "identity.v1.Access/ListRoleAssignments",
            access.list_role_assignments,
            |t| pb::ListRoleAssignmentsRequest {
                parent: t.org.clone(),
                principal: t.user.clone(),
                ..Default::default()
            }
        ),
        rpc!(
            "identity.v1.Access/GrantEndUserRole",
            access.grant_end_user_role,
            |t| pb::GrantEndUserRoleRequest {
                parent: t.org.clone(),
                grant: Some(pb::EndUserRoleGrant {
                    user: t.user.clone(),
                    end_user_role: t.end_user_role.clone(),
                    stage: stage(&t.org, "production")
                }),
            }
        ),
        rpc!(
            "identity.v1.Access/RevokeEndUserRole",
            access.revoke_end_user_role,
            |t| pb::RevokeEndUserRoleRequest {
                parent: t.org.clone(),
                grant: Some(pb::EndUserRoleGrant {
                    user: t.user.clone(),
                    end_user_role: t.end_user_role.clone(),
                    stage: stage(&t.org, "production")
                }),
            }
        ),
        rpc!(
            "identity.v1.Access/CheckPermission",
            access.check_permission,
            |t| pb::CheckPermissionRequest {
                parent: t.org.clone(),
                principal: t.user.clone(),
                permission: "users.manage".into(),
                ..Default::default()
            }
        ),
        rpc!(
            "identity.v1.Access/ListEffectivePermissions",
            access.list_effective_permissions,
            |t| pb::ListEffectivePermissionsRequest {
                parent: t.org.clone(),
                principal: t.user.clone(),
            }
        ),
        rpc!(
            "identity.v1.Access/ListPermissionHolders",
            access.list_permission_holders,
            |t| pb::ListPermissionHoldersRequest {
                parent: t.org.clone(),
                permission: "users.manage".into(),
                ..Default::default()
            }
        ),
        rpc!(
            "identity.v1.Access/CheckEndUserRole",
            access.check_end_user_role,
            |t| pb::CheckEndUserRoleRequest {
                parent: t.org.clone(),
                user: t.user.clone(),
                end_user_role: t.end_user_role.clone(),
                stage: stage(&t.org, "production"),
            }
        ),
        rpc!("identity.v1.Access/Noop", access.noop, |t| {
            pb::NoopRequest {
                parent: t.org.clone(),
            }
        }),
        rpc!("identity.v1.Groups/CreateGroup", groups.create_group, |t| {
            pb::CreateGroupRequest {
                parent: t.org.clone(),
                group: Some(pb::Group {
                    display_name: "New group".into(),
                    stage: stage(&t.org, "production"),
                    ..Default::default()
                }),
                request_id: String::new(),
            }
        }),
        rpc!("identity.v1.Groups/GetGroup", groups.get_group, |t| {
            pb::GetGroupRequest {
                name: t.group.clone(),
            }
        }),
        rpc!("identity.v1.Groups/ListGroups", groups.list_groups, |t| {
            pb::ListGroupsRequest {
                parent: t.org.clone(),
                ..Default::default()
            }
        }),
        rpc!("identity.v1.Groups/UpdateGroup", groups.update_group, |t| {
            pb::UpdateGroupRequest {
                group: Some(pb::Group {
                    name: t.group.clone(),
                    display_name: "Renamed group".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            }
        }),
        rpc!("identity.v1.Groups/DeleteGroup", groups.delete_group, |t| {
            pb::DeleteGroupRequest {
                name: t.group.clone(),
                etag: String::new(),
            }
        }),
        rpc!(
            "identity.v1.Groups/AddGroupMembers",
            groups.add_group_members,
            |t| pb::AddGroupMembersRequest {
                group: t.group.clone(),
                users: vec![t.user.clone()]
            }
        ),
        rpc!(
            "identity.v1.Groups/RemoveGroupMembers",
            groups.remove_group_members,
            |t| pb::RemoveGroupMembersRequest {
                group: t.group.clone(),
                users: vec![t.user.clone()]
            }
        ),
        rpc!(
            "identity.v1.Groups/AddGroupRoles",
            groups.add_group_roles,
            |t| pb::AddGroupRolesRequest {
                group: t.group.clone(),
                end_user_roles: vec![pb::EndUserRoleInStage {
                    end_user_role: t.end_user_role.clone(),
                    stage: String::new()
                }],
            }
        ),
        rpc!(
            "identity.v1.Groups/RemoveGroupRoles",
            groups.remove_group_roles,
            |t| pb::RemoveGroupRolesRequest {
                group: t.group.clone(),
                end_user_roles: vec![t.end_user_role.clone()]
            }
        ),
        rpc!(
            "identity.v1.Groups/ListGroupMembers",
            groups.list_group_members,
            |t| pb::ListGroupMembersRequest {
                group: t.group.clone(),
                ..Default::default()
            }
        ),
        rpc!(
            "identity.v1.ServiceAccounts/CreateServiceAccount",
            service_accounts.create_service_account,
            |t| pb::CreateServiceAccountRequest {
                parent: t.org.clone(),
                service_account: Some(pb::ServiceAccount {
                    display_name: "New sa".into(),
                    ..Default::default()
                }),
            }
        ),
        rpc!(
            "identity.v1.ServiceAccounts/ListServiceAccounts",
            service_accounts.list_service_accounts,
            |t| pb::ListServiceAccountsRequest {
                parent: t.org.clone()
            }
        ),
        rpc!(
            "identity.v1.ServiceAccounts/DeleteServiceAccount",
            service_accounts.delete_service_account,
            |t| pb::DeleteServiceAccountRequest {
                name: t.service_account.clone()
            }
        ),
        rpc!(
            "identity.v1.ServiceAccounts/CreateServiceAccountToken",
            service_accounts.create_service_account_token,
            |t| pb::CreateServiceAccountTokenRequest {
                parent: t.service_account.clone(),
                ttl_seconds: 0,
            }
        ),
        rpc!(
            "identity.v1.ServiceAccounts/ListServiceAccountTokens",
            service_accounts.list_service_account_tokens,
            |t| pb::ListServiceAccountTokensRequest {
                parent: t.service_account.clone()
            }
        ),
        rpc!(
            "identity.v1.ServiceAccounts/RevokeServiceAccountToken",
            service_accounts.revoke_service_account_token,
            |t| pb::RevokeServiceAccountTokenRequest {
                name: t.token.clone()
            }
        ),
        rpc!(
            "identity.v1.Audit/ListChangeEvents",
            audit.list_change_events,
            |t| pb::ListChangeEventsRequest {
                parent: t.org.clone(),
                ..Default::default()
            }
        ),
        rpc!("identity.v1.Audit/GetSnapshot", audit.get_snapshot, |t| {
            pb::GetSnapshotRequest {
                parent: t.org.clone(),
            }
        }),
        rpc!("identity.v1.Audit/WatchChanges", audit.watch_changes, |t| {
            pb::WatchChangesRequest {
                parent: t.org.clone(),
                after_sequence: 0,
            }
        }),
    ]
}

#[test]
fn the_table_covers_every_rpc() {
    let table: BTreeSet<&str> = table().iter().map(|(m, _)| *m).collect();
    let rules: BTreeSet<&str> = identity_svc::auth::RULES.iter().map(|(m, _)| *m).collect();
    assert_eq!(table, rules);
}

/// An organization with one of everything; returns its administrator and the targets.
async fn populated(app: &TestApp, name: &str) -> (Session, Targets) {
    let admin = app.admin(name).await;
    let a = app.app(&admin, "App").await;
    let eur = app.end_user_role(&admin, &a, "Viewer").await;
    let r = app
        .roles(Some(&admin.token))
        .create_role(pb::CreateRoleRequest {
            parent: admin.org.clone(),
            role: Some(pb::Role {
                display_name: "Custom".into(),
                grants: vec![pb::PermissionGrant {
                    permission: "mentor.use".into(),
                    stages: vec![],
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let u = app
        .users(Some(&admin.token))
        .invite_user(pb::InviteUserRequest {
            parent: admin.org.clone(),
            email: format!("user@{name}.example"),
            organization_role: r.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let g = app
        .groups(Some(&admin.token))
        .create_group(pb::CreateGroupRequest {
            parent: admin.org.clone(),
            group: Some(pb::Group {
                display_name: "Group".into(),
                stage: stage(&admin.org, "production"),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let sa = app
        .service_accounts(Some(&admin.token))
        .create_service_account(pb::CreateServiceAccountRequest {
            parent: admin.org.clone(),
            service_account: Some(pb::ServiceAccount {
                display_name: "Robot".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let tok = app
        .service_accounts(Some(&admin.token))
        .create_service_account_token(pb::CreateServiceAccountTokenRequest {
            parent: sa.name.clone(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let targets = Targets {
        org: admin.org.clone(),
        user: u.name,
        role: r.name,
        app: a,
        end_user_role: eur,
        group: g.name,
        service_account: sa.name,
        token: tok.token.unwrap().name,
    };
    (admin, targets)
}

async fn event_count(app: &TestApp, by: &Session) -> usize {
    let mut n = 0;
    let mut token = String::new();
    loop {
        let page = app
            .audit(Some(&by.token))
            .list_change_events(pb::ListChangeEventsRequest {
                parent: by.org.clone(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        n += page.events.len();
        if page.next_page_token.is_empty() {
            return n;
        }
        token = page.next_page_token;
    }
}

const PUBLIC: [&str; 2] = [
    "identity.v1.Users/AcceptInvitation",
    "identity.v1.Users/Login",
];

async fn every_rpc_without_a_token_is_unauthenticated(b: Backend) {
    let app = spawn_app(b).await;
    let (admin, t) = populated(&app, "acme").await;
    let before = event_count(&app, &admin).await;
    for (method, call) in table() {
        if PUBLIC.contains(&method) {
            continue;
        }
        let r = call(&app, None, &t).await;
        assert_eq!(
            r.as_ref().map_err(Status::code),
            Err(Code::Unauthenticated),
            "{method}: {r:?}"
        );
        let r = call(&app, Some("odc_ses_forged"), &t).await;
        assert_eq!(
            r.as_ref().map_err(Status::code),
            Err(Code::Unauthenticated),
            "{method} (forged token): {r:?}"
        );
    }
    assert_eq!(event_count(&app, &admin).await, before, "nothing changed");
}

async fn every_rpc_refuses_a_principal_without_the_permission(b: Backend) {
    let app = spawn_app(b).await;
    let (admin, t) = populated(&app, "acme").await;
    // A user with no role at all.
    let nobody = app
        .users(Some(&admin.token))
        .create_user(pb::CreateUserRequest {
            parent: admin.org.clone(),
            user: Some(pb::User {
                email: "nobody@acme.example".into(),
                ..Default::default()
            }),
            initial_password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let nobody = app
        .login(&admin.org, "nobody@acme.example", &nobody.name)
        .await;
    // What any principal of the organization may do (reads that hold no one's secrets).
    let open = [
        "identity.v1.Organizations/GetOrganization",
        "identity.v1.Stages/ListStages",
        "identity.v1.Apps/GetApp",
        "identity.v1.Apps/ListApps",
        "identity.v1.Apps/ListEndUserRoles",
        "identity.v1.Roles/ListPermissions",
        "identity.v1.Roles/ListRoles",
        "identity.v1.Roles/GetRole",
        "identity.v1.Groups/ListGroups",
        "identity.v1.Users/Logout",
        "identity.v1.Access/Noop",
    ];
    let before = event_count(&app, &admin).await;
    for (method, call) in table() {
        if PUBLIC.contains(&method) || method == "identity.v1.Users/Logout" {
            continue;
        }
        let r = call(&app, Some(&nobody.token), &t).await;
        if open.contains(&method) {
            assert!(r.is_ok(), "{method}: {r:?}");
        } else {
            assert_eq!(
                r.as_ref().map_err(Status::code),
                Err(Code::PermissionDenied),
                "{method}: {r:?}"
            );
        }
    }
    assert_eq!(event_count(&app, &admin).await, before, "nothing changed");
    // ListGroups shows nothing of stages the caller cannot see.
    let groups = app
        .groups(Some(&nobody.token))
        .list_groups(pb::ListGroupsRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(groups.groups.is_empty());
}

async fn an_administrator_of_one_organization_gets_nothing_of_another(b: Backend) {
    let app = spawn_app(b).await;
    let (a_admin, _) = populated(&app, "alpha").await;
    let (b_admin, b) = populated(&app, "beta").await;
    let before = event_count(&app, &b_admin).await;
    // Global, or about the caller's own session: not organization data.
    let global = [
        "identity.v1.Roles/ListPermissions",
        "identity.v1.Users/Logout",
    ];
    for (method, call) in table() {
        if PUBLIC.contains(&method) || global.contains(&method) {
            continue;
        }
        let r = call(&app, Some(&a_admin.token), &b).await;
        assert_eq!(
            r.as_ref().map_err(Status::code),
            Err(Code::PermissionDenied),
            "{method}: {r:?}"
        );
    }
    assert_eq!(
        event_count(&app, &b_admin).await,
        before,
        "nothing of B changed"
    );
    // A's names inside a request about A that point into B are not found.
    let r = app
        .access(Some(&a_admin.token))
        .assign_role(pb::AssignRoleRequest {
            parent: a_admin.org.clone(),
            principal: b.user.clone(),
            role: role(&a_admin.org, "developer"),
            scope: scope_org(),
            grant_period: None,
        })
        .await;
    assert_code(r, Code::InvalidArgument, None);
    // The operator manages organizations, not their content.
    let r = app
        .stages(Some(&app.operator))
        .list_stages(pb::ListStagesRequest {
            parent: b.org.clone(),
        })
        .await;
    assert_code(r, Code::PermissionDenied, None);
}

async fn a_service_account_token_authenticates_until_revoked(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("acme").await;
    let sas = || app.service_accounts(Some(&admin.token));
    let (sa, tok) = app.service_account_with_token(&admin, "portal-sync").await;
    assert!(tok.secret.starts_with("odc_sa_"));
    let listed = sas()
        .list_service_account_tokens(pb::ListServiceAccountTokensRequest {
            parent: sa.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tokens.len(), 1);
    assert!(
        !format!("{listed:?}").contains(&tok.secret),
        "the secret is shown once"
    );
    // A service account may check anyone's permissions.
    assert!(
        app.check(
            &Session {
                token: tok.secret.clone(),
                user: sa.name.clone(),
                org: admin.org.clone()
            },
            &admin.user,
            "users.manage",
            "",
            ""
        )
        .await
    );
    sas()
        .revoke_service_account_token(pb::RevokeServiceAccountTokenRequest {
            name: tok.token.unwrap().name,
        })
        .await
        .unwrap();
    let r = app
        .stages(Some(&tok.secret))
        .list_stages(pb::ListStagesRequest {
            parent: admin.org.clone(),
        })
        .await;
    assert_code(r, Code::Unauthenticated, None);
}

/// The populated organization of the security tests, for the validation tests.
pub async fn populated_for_validation(app: &TestApp) -> (Session, Targets) {
    populated(app, "acme").await
}

/// Every stored event of `by`'s organization (to prove that nothing changed).
pub async fn events(app: &TestApp, by: &Session) -> usize {
    event_count(app, by).await
}
