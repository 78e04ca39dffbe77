//! Bad input on every mutating RPC: INVALID_ARGUMENT with a `google.rpc.BadRequest` naming the
//! field, and nothing changed.

use shared::proto::identity::v1 as pb;
use tonic::Status;

use crate::helpers::*;
use crate::security::Targets;

crate::api_tests!(bad_input_on_every_mutating_rpc_names_the_field_and_changes_nothing);

type Fut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Status>> + Send + 'a>>;
type Call = for<'a> fn(&'a TestApp, &'a str, &'a Targets) -> Fut<'a>;

macro_rules! bad {
    ($field:literal, $client:ident . $method:ident, |$t:ident| $req:expr) => {
        ($field, stringify!($method), {
            fn call<'a>(app: &'a TestApp, tok: &'a str, $t: &'a Targets) -> Fut<'a> {
                Box::pin(async move { app.$client(Some(tok)).$method($req).await.map(|_| ()) })
            }
            call as Call
        })
    };
}

fn cases() -> Vec<(&'static str, &'static str, Call)> {
    vec![
        bad!("organization.name", orgs.update_organization, |_t| {
            pb::UpdateOrganizationRequest {
                organization: Some(pb::Organization {
                    name: "orgs/x".into(),
                    display_name: "x".into(),
                    ..Default::default()
                }),
                update_mask: None,
            }
        }),
        bad!("organization.display_name", orgs.update_organization, |t| {
            pb::UpdateOrganizationRequest {
                organization: Some(pb::Organization {
                    name: t.org.clone(),
                    display_name: "x".repeat(101),
                    ..Default::default()
                }),
                update_mask: None,
            }
        }),
        bad!("stage_id", stages.create_stage, |t| {
            pb::CreateStageRequest {
                parent: t.org.clone(),
                stage_id: "Not A Key".into(),
                stage: Some(pb::Stage {
                    display_name: "UAT".into(),
                    ..Default::default()
                }),
            }
        }),
        bad!("stage.display_name", stages.update_stage, |t| {
            pb::UpdateStageRequest {
                stage: Some(pb::Stage {
                    name: stage(&t.org, "qa"),
                    display_name: String::new(),
                    ..Default::default()
                }),
                update_mask: None,
            }
        }),
        bad!("stage_ids", stages.reorder_stages, |t| {
            pb::ReorderStagesRequest {
                parent: t.org.clone(),
                stage_ids: vec!["development".into(), "production".into()],
            }
        }),
        bad!("name", stages.delete_stage, |t| pb::DeleteStageRequest {
            name: format!("{}/stagez/qa", t.org)
        }),
        bad!("app.display_name", apps.create_app, |t| {
            pb::CreateAppRequest {
                parent: t.org.clone(),
                app: Some(pb::App::default()),
            }
        }),
        bad!("name", apps.delete_app, |t| pb::DeleteAppRequest {
            name: format!("{}/apps/not-a-uuid", t.org)
        }),
        bad!(
            "end_user_role.display_name",
            apps.create_end_user_role,
            |t| pb::CreateEndUserRoleRequest {
                parent: t.app.clone(),
                end_user_role: None
            }
        ),
        bad!("name", apps.delete_end_user_role, |t| {
            pb::DeleteEndUserRoleRequest {
                name: format!("{}/endUserRoles/x", t.app),
            }
        }),
        bad!("email", users.invite_user, |t| pb::InviteUserRequest {
            parent: t.org.clone(),
            email: "not an email".into(),
            ..Default::default()
        }),
        bad!("end_user_roles[0].stage", users.invite_user, |t| {
            pb::InviteUserRequest {
                parent: t.org.clone(),
                email: "ok@x.example".into(),
                end_user_roles: vec![pb::EndUserRoleInStage {
                    end_user_role: t.end_user_role.clone(),
                    stage: "production".into(),
                }],
                ..Default::default()
            }
        }),
        bad!("name", users.resend_invitation, |t| {
            pb::ResendInvitationRequest {
                name: format!("{}/users/nope", t.org),
            }
        }),
        bad!("invitation_token", users.accept_invitation, |_t| {
            pb::AcceptInvitationRequest {
                invitation_token: String::new(),
                password: PASSWORD.into(),
                display_name: String::new(),
            }
        }),
        bad!("user.email", users.create_user, |t| pb::CreateUserRequest {
            parent: t.org.clone(),
            user: Some(pb::User {
                email: "@x".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        bad!("initial_password", users.create_user, |t| {
            pb::CreateUserRequest {
                parent: t.org.clone(),
                user: Some(pb::User {
                    email: "pw@x.example".into(),
                    ..Default::default()
                }),
                initial_password: "weak".into(),
                ..Default::default()
            }
        }),
        bad!("update_mask", users.update_user, |t| {
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    name: t.user.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["state".into()],
                }),
            }
        }),
        bad!("name", users.activate_user, |t| pb::ActivateUserRequest {
            name: format!("{}/users", t.org),
            etag: String::new()
        }),
        bad!("name", users.deactivate_user, |t| {
            pb::DeactivateUserRequest {
                name: format!("{}/users/x", t.org),
                etag: String::new(),
            }
        }),
        bad!("name", users.delete_user, |t| pb::DeleteUserRequest {
            name: format!("{}/groups/{}", t.org, uuid::Uuid::new_v4()),
            etag: String::new()
        }),
        bad!("email", users.login, |t| pb::LoginRequest {
            organization: t.org.clone(),
            email: "x".into(),
            password: "p".into()
        }),
        bad!("role.grants[0].permission", roles.create_role, |t| {
            pb::CreateRoleRequest {
                parent: t.org.clone(),
                role: Some(pb::Role {
                    display_name: "R".into(),
                    grants: vec![pb::PermissionGrant {
                        permission: "nope".into(),
                        stages: vec![],
                    }],
                    ..Default::default()
                }),
                request_id: String::new(),
            }
        }),
        bad!("role.grants", roles.update_role, |t| {
            pb::UpdateRoleRequest {
                role: Some(pb::Role {
                    name: t.role.clone(),
                    grants: vec![],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["grants".into()],
                }),
            }
        }),
        bad!("name", roles.duplicate_role, |t| pb::DuplicateRoleRequest {
            name: format!("{}/roles/not-a-role", t.org)
        }),
        bad!("name", roles.delete_role, |t| pb::DeleteRoleRequest {
            name: "roles/x".replace("roles", &format!("{}/rolez", t.org)),
            etag: String::new()
        }),
        bad!("scope", access.assign_role, |t| pb::AssignRoleRequest {
            parent: t.org.clone(),
            principal: t.user.clone(),
            role: t.role.clone(),
            scope: None,
            grant_period: None,
        }),
        bad!("principal", access.revoke_role, |t| pb::RevokeRoleRequest {
            parent: t.org.clone(),
            principal: "someone".into(),
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::Organization(true))
            }),
        }),
        bad!("grant.end_user_role", access.grant_end_user_role, |t| {
            pb::GrantEndUserRoleRequest {
                parent: t.org.clone(),
                grant: Some(pb::EndUserRoleGrant {
                    user: t.user.clone(),
                    end_user_role: t.role.clone(),
                    stage: stage(&t.org, "production"),
                }),
            }
        }),
        bad!("grant.stage", access.revoke_end_user_role, |t| {
            pb::RevokeEndUserRoleRequest {
                parent: t.org.clone(),
                grant: Some(pb::EndUserRoleGrant {
                    user: t.user.clone(),
                    end_user_role: t.end_user_role.clone(),
                    stage: String::new(),
                }),
            }
        }),
        bad!("group.stage", groups.create_group, |t| {
            pb::CreateGroupRequest {
                parent: t.org.clone(),
                group: Some(pb::Group {
                    display_name: "G2".into(),
                    stage: "qa".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            }
        }),
        bad!("group.display_name", groups.update_group, |t| {
            pb::UpdateGroupRequest {
                group: Some(pb::Group {
                    name: t.group.clone(),
                    display_name: String::new(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            }
        }),
        bad!("name", groups.delete_group, |t| pb::DeleteGroupRequest {
            name: format!("{}/groups/x", t.org),
            etag: String::new()
        }),
        bad!("users", groups.add_group_members, |t| {
            pb::AddGroupMembersRequest {
                group: t.group.clone(),
                users: vec![],
            }
        }),
        bad!("users[0]", groups.remove_group_members, |t| {
            pb::RemoveGroupMembersRequest {
                group: t.group.clone(),
                users: vec!["bob".into()],
            }
        }),
        bad!(
            "end_user_roles[0].end_user_role",
            groups.add_group_roles,
            |t| pb::AddGroupRolesRequest {
                group: t.group.clone(),
                end_user_roles: vec![pb::EndUserRoleInStage {
                    end_user_role: t.role.clone(),
                    stage: String::new()
                }],
            }
        ),
        bad!("end_user_roles", groups.remove_group_roles, |t| {
            pb::RemoveGroupRolesRequest {
                group: t.group.clone(),
                end_user_roles: vec![],
            }
        }),
        bad!(
            "identity_provider.issuer",
            identity_providers.create_identity_provider,
            |t| pb::CreateIdentityProviderRequest {
                parent: t.org.clone(),
                identity_provider: Some(crate::security::identity_provider("Bad", "ftp:/x")),
            }
        ),
        bad!(
            "update_mask",
            identity_providers.update_identity_provider,
            |t| pb::UpdateIdentityProviderRequest {
                identity_provider: Some(pb::IdentityProvider {
                    name: t.identity_provider.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()]
                }),
            }
        ),
        bad!("name", identity_providers.delete_identity_provider, |t| {
            pb::DeleteIdentityProviderRequest {
                name: format!("{}/identityProviders/x", t.org),
                etag: String::new(),
            }
        }),
        bad!(
            "id_token",
            identity_providers.sign_in_with_identity_provider,
            |t| pb::SignInWithIdentityProviderRequest {
                identity_provider: t.identity_provider.clone(),
                id_token: String::new(),
                nonce: String::new(),
            }
        ),
        bad!(
            "service_account.display_name",
            service_accounts.create_service_account,
            |t| pb::CreateServiceAccountRequest {
                parent: t.org.clone(),
                service_account: None
            }
        ),
        bad!("name", service_accounts.delete_service_account, |t| {
            pb::DeleteServiceAccountRequest {
                name: format!("{}/serviceAccounts/x", t.org),
            }
        }),
        bad!(
            "ttl_seconds",
            service_accounts.create_service_account_token,
            |t| pb::CreateServiceAccountTokenRequest {
                parent: t.service_account.clone(),
                ttl_seconds: 5
            }
        ),
        bad!("name", service_accounts.revoke_service_account_token, |t| {
            pb::RevokeServiceAccountTokenRequest {
                name: format!("{}/tokens/x", t.service_account),
            }
        }),
    ]
}

async fn bad_input_on_every_mutating_rpc_names_the_field_and_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let (admin, t) = crate::security::populated_for_validation(&app).await;
    let before = crate::security::events(&app, &admin).await;
    for (field, method, call) in cases() {
        let r = call(&app, &admin.token, &t).await;
        let status = match r {
            Ok(()) => panic!("{method}: accepted bad {field}"),
            Err(s) => s,
        };
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{method} ({field}): {status:?}"
        );
        use tonic_types::StatusExt as _;
        let br = status
            .get_details_bad_request()
            .unwrap_or_else(|| panic!("{method}: no BadRequest"));
        assert!(
            br.field_violations.iter().any(|v| v.field == field),
            "{method}: {field} not in {:?}",
            br.field_violations
        );
    }
    // CreateOrganization is the operator's: both bad fields are reported at once.
    let orgs_before = app
        .orgs(Some(&app.operator))
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let r = app
        .orgs(Some(&app.operator))
        .create_organization(pb::CreateOrganizationRequest {
            organization: None,
            first_administrator_email: "nope".into(),
        })
        .await;
    use tonic_types::StatusExt as _;
    let s = r.unwrap_err();
    let fields: Vec<String> = s
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        vec![
            "organization.display_name".to_owned(),
            "first_administrator_email".to_owned()
        ]
    );
    let orgs_after = app
        .orgs(Some(&app.operator))
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(orgs_before, orgs_after);
    assert_eq!(
        crate::security::events(&app, &admin).await,
        before,
        "nothing changed"
    );
    // Every mutating RPC of the API appears above (reads and the feed are not mutations).
    let covered: std::collections::BTreeSet<&str> = cases().iter().map(|(_, m, _)| *m).collect();
    let reads = ["get_", "list_", "check_", "watch_", "logout", "noop"];
    for (method, _) in identity_svc::auth::RULES {
        let rpc = method.rsplit('/').next().unwrap();
        let snake = to_snake(rpc);
        if reads.iter().any(|r| snake.starts_with(r)) || snake == "create_organization" {
            continue;
        }
        assert!(
            covered.contains(snake.as_str()),
            "{method} has no bad-input case"
        );
    }
}

fn to_snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
