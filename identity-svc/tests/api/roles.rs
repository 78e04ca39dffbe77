//! Organization roles: built-ins, custom roles, names, stages, edits, deletion, the catalog.

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    a_fresh_organization_has_exactly_two_read_only_built_in_roles,
    built_in_roles_cannot_be_changed_or_deleted,
    duplicating_developer_makes_an_editable_copy,
    a_custom_role_needs_a_name_and_a_permission,
    role_names_clash_with_built_ins_case_insensitively,
    deploy_limited_to_development_is_denied_in_qa,
    a_permission_that_is_not_stage_scopable_cannot_be_limited_to_stages,
    editing_a_role_changes_every_holder_at_once,
    deleting_an_assigned_role_is_refused_with_the_count,
    a_stale_etag_is_aborted,
    the_catalog_names_permissions_by_key_and_category,
);

fn grant(p: &str, stages: Vec<String>) -> pb::PermissionGrant {
    pb::PermissionGrant {
        permission: p.into(),
        stages,
    }
}

fn create(org: &str, name: &str, grants: Vec<pb::PermissionGrant>) -> pb::CreateRoleRequest {
    pb::CreateRoleRequest {
        parent: org.into(),
        role: Some(pb::Role {
            display_name: name.into(),
            grants,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn a_fresh_organization_has_exactly_two_read_only_built_in_roles(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let roles = app
        .roles(Some(&admin.token))
        .list_roles(pb::ListRolesRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = roles
        .roles
        .iter()
        .map(|r| (r.display_name.as_str(), r.built_in))
        .collect();
    assert_eq!(names, vec![("Administrator", true), ("Developer", true)]);
}

async fn built_in_roles_cannot_be_changed_or_deleted(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    for id in ["administrator", "developer"] {
        let update = pb::UpdateRoleRequest {
            role: Some(pb::Role {
                name: role(&admin.org, id),
                display_name: "Boss".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        };
        assert_code(
            app.roles(Some(&admin.token)).update_role(update).await,
            Code::FailedPrecondition,
            Some("BUILT_IN_ROLE"),
        );
        let delete = pb::DeleteRoleRequest {
            name: role(&admin.org, id),
            etag: String::new(),
        };
        assert_code(
            app.roles(Some(&admin.token)).delete_role(delete).await,
            Code::FailedPrecondition,
            Some("BUILT_IN_ROLE"),
        );
    }
}

async fn duplicating_developer_makes_an_editable_copy(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let roles = || app.roles(Some(&admin.token));
    let dev = roles()
        .get_role(pb::GetRoleRequest {
            name: role(&admin.org, "developer"),
        })
        .await
        .unwrap()
        .into_inner();
    let copy = roles()
        .duplicate_role(pb::DuplicateRoleRequest {
            name: dev.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(copy.display_name, "Developer-copy");
    assert!(!copy.built_in);
    assert_eq!(copy.grants, dev.grants);
    let copy2 = roles()
        .duplicate_role(pb::DuplicateRoleRequest {
            name: dev.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(copy2.display_name, "Developer-copy-2");
    let edited = roles()
        .update_role(pb::UpdateRoleRequest {
            role: Some(pb::Role {
                name: copy.name.clone(),
                grants: vec![grant("mentor.use", vec![])],
                etag: copy.etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["grants".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.grants, vec![grant("mentor.use", vec![])]);
}

async fn a_custom_role_needs_a_name_and_a_permission(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    assert_bad_field(
        app.roles(Some(&admin.token))
            .create_role(create(&admin.org, "  ", vec![grant("mentor.use", vec![])]))
            .await,
        "role.display_name",
    );
    assert_bad_field(
        app.roles(Some(&admin.token))
            .create_role(create(&admin.org, "Empty", vec![]))
            .await,
        "role.grants",
    );
    assert_bad_field(
        app.roles(Some(&admin.token))
            .create_role(create(
                &admin.org,
                "Typo",
                vec![grant("asset.chnage", vec![])],
            ))
            .await,
        "role.grants[0].permission",
    );
    let roles = app
        .roles(Some(&admin.token))
        .list_roles(pb::ListRolesRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(roles.roles.len(), 2, "nothing was created");
}

async fn role_names_clash_with_built_ins_case_insensitively(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    for name in ["administrator", "DEVELOPER"] {
        assert_code(
            app.roles(Some(&admin.token))
                .create_role(create(&admin.org, name, vec![grant("mentor.use", vec![])]))
                .await,
            Code::AlreadyExists,
            Some("ROLE_NAME_TAKEN"),
        );
    }
    let custom = app
        .roles(Some(&admin.token))
        .create_role(create(
            &admin.org,
            "Auditors",
            vec![grant("org.view_audit_trail", vec![])],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_code(
        app.roles(Some(&admin.token))
            .create_role(create(
                &admin.org,
                "auditors",
                vec![grant("mentor.use", vec![])],
            ))
            .await,
        Code::AlreadyExists,
        Some("ROLE_NAME_TAKEN"),
    );
    let rename = pb::UpdateRoleRequest {
        role: Some(pb::Role {
            name: custom.name.clone(),
            display_name: "Administrator".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    assert_code(
        app.roles(Some(&admin.token)).update_role(rename).await,
        Code::AlreadyExists,
        Some("ROLE_NAME_TAKEN"),
    );
}

async fn deploy_limited_to_development_is_denied_in_qa(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .roles(Some(&admin.token))
        .create_role(create(
            &admin.org,
            "Deployers",
            vec![grant(
                "release.deploy_assets",
                vec![stage(&admin.org, "development")],
            )],
        ))
        .await
        .unwrap()
        .into_inner();
    let u = app.member(&admin, "d@acme.example", &r.name).await;
    assert!(
        app.check(&u, "", "release.deploy_assets", "development", "")
            .await
    );
    assert!(!app.check(&u, "", "release.deploy_assets", "qa", "").await);
    let denied = app
        .access(Some(&u.token))
        .check_permission(pb::CheckPermissionRequest {
            parent: admin.org.clone(),
            permission: "release.deploy_assets".into(),
            stage: stage(&admin.org, "qa"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(denied.denial_reason.contains("qa"), "{denied:?}");
}

async fn a_permission_that_is_not_stage_scopable_cannot_be_limited_to_stages(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .roles(Some(&admin.token))
        .create_role(create(
            &admin.org,
            "Role admins",
            vec![grant(
                "roles.manage",
                vec![stage(&admin.org, "development")],
            )],
        ))
        .await;
    assert_bad_field(r, "role.grants[0].stages");
}

async fn editing_a_role_changes_every_holder_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .roles(Some(&admin.token))
        .create_role(create(
            &admin.org,
            "Support",
            vec![grant("support.open_cases", vec![])],
        ))
        .await
        .unwrap()
        .into_inner();
    let u1 = app.member(&admin, "u1@acme.example", &r.name).await;
    let u2 = app.member(&admin, "u2@acme.example", &r.name).await;
    assert!(
        !app.check(&admin, &u1.user, "support.view_all_cases", "", "")
            .await
    );
    app.roles(Some(&admin.token))
        .update_role(pb::UpdateRoleRequest {
            role: Some(pb::Role {
                name: r.name.clone(),
                grants: vec![grant("support.view_all_cases", vec![])],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["grants".into()],
            }),
        })
        .await
        .unwrap();
    for u in [&u1, &u2] {
        assert!(
            app.check(&admin, &u.user, "support.view_all_cases", "", "")
                .await
        );
        assert!(
            !app.check(&admin, &u.user, "support.open_cases", "", "")
                .await
        );
    }
}

async fn deleting_an_assigned_role_is_refused_with_the_count(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .roles(Some(&admin.token))
        .create_role(create(
            &admin.org,
            "Temp",
            vec![grant("mentor.use", vec![])],
        ))
        .await
        .unwrap()
        .into_inner();
    let u = app.member(&admin, "t@acme.example", &r.name).await;
    let s = assert_code(
        app.roles(Some(&admin.token))
            .delete_role(pb::DeleteRoleRequest {
                name: r.name.clone(),
                etag: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        Some("ROLE_IN_USE"),
    );
    assert!(s.message().contains("1 time"), "{}", s.message());
    app.access(Some(&admin.token))
        .revoke_role(pb::RevokeRoleRequest {
            parent: admin.org.clone(),
            principal: u.user.clone(),
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::Organization(true)),
            }),
        })
        .await
        .unwrap();
    app.roles(Some(&admin.token))
        .delete_role(pb::DeleteRoleRequest {
            name: r.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_code(
        app.roles(Some(&admin.token))
            .get_role(pb::GetRoleRequest {
                name: r.name.clone(),
            })
            .await,
        Code::NotFound,
        None,
    );
}

async fn a_stale_etag_is_aborted(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let r = app
        .roles(Some(&admin.token))
        .create_role(create(
            &admin.org,
            "Etag",
            vec![grant("mentor.use", vec![])],
        ))
        .await
        .unwrap()
        .into_inner();
    let rename = |name: &str, etag: &str| pb::UpdateRoleRequest {
        role: Some(pb::Role {
            name: r.name.clone(),
            display_name: name.into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    let first = app
        .roles(Some(&admin.token))
        .update_role(rename("Etag 2", &r.etag))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(first.etag, r.etag);
    assert_code(
        app.roles(Some(&admin.token))
            .update_role(rename("Etag 3", &r.etag))
            .await,
        Code::Aborted,
        Some("STALE_ETAG"),
    );
    let now = app
        .roles(Some(&admin.token))
        .get_role(pb::GetRoleRequest {
            name: r.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.display_name, "Etag 2");
    let user = app
        .users(Some(&admin.token))
        .get_user(pb::GetUserRequest {
            name: admin.user.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let stale = pb::UpdateUserRequest {
        user: Some(pb::User {
            name: admin.user.clone(),
            display_name: "x".into(),
            etag: "999".into(),
            ..Default::default()
        }),
        update_mask: None,
    };
    assert_code(
        app.users(Some(&admin.token)).update_user(stale).await,
        Code::Aborted,
        None,
    );
    let ok = pb::UpdateUserRequest {
        user: Some(pb::User {
            name: admin.user.clone(),
            display_name: "Ada".into(),
            etag: user.etag,
            ..Default::default()
        }),
        update_mask: None,
    };
    assert_eq!(
        app.users(Some(&admin.token))
            .update_user(ok)
            .await
            .unwrap()
            .into_inner()
            .display_name,
        "Ada"
    );
}

async fn the_catalog_names_permissions_by_key_and_category(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let cat = app
        .roles(Some(&admin.token))
        .list_permissions(pb::ListPermissionsRequest {})
        .await
        .unwrap()
        .into_inner();
    let creates: Vec<_> = cat
        .permissions
        .iter()
        .filter(|p| p.display_name == "Create")
        .map(|p| (p.key.as_str(), p.category.as_str()))
        .collect();
    assert_eq!(
        creates,
        vec![
            ("asset.create", "Asset management"),
            ("connection.create", "Connection management")
        ]
    );
    let change = cat
        .permissions
        .iter()
        .find(|p| p.key == "asset.change")
        .unwrap();
    assert_eq!(
        change.implies,
        vec!["asset.debug".to_owned(), "release.deploy_assets".to_owned()]
    );
    assert!(change.app_scopable && change.stage_scopable);
}
