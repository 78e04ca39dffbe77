//! Groups of end-users.

use std::collections::BTreeSet;

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    a_group_needs_a_name_and_a_stage,
    a_groups_stage_never_changes,
    members_get_every_role_of_the_group_and_lose_only_what_came_through_it,
    the_same_name_is_fine_in_another_stage_but_not_in_the_same,
    adding_a_user_of_no_organization_is_not_found_and_adds_nothing,
    managing_groups_needs_manage_end_user_groups_in_the_groups_stage,
);

fn new_group(org: &str, name: &str, st: &str) -> pb::CreateGroupRequest {
    pb::CreateGroupRequest {
        parent: org.into(),
        group: Some(pb::Group {
            display_name: name.into(),
            stage: if st.is_empty() {
                String::new()
            } else {
                stage(org, st)
            },
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn a_group_needs_a_name_and_a_stage(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    assert_bad_field(
        app.groups(Some(&admin.token))
            .create_group(new_group(&admin.org, "", "development"))
            .await,
        "group.display_name",
    );
    assert_bad_field(
        app.groups(Some(&admin.token))
            .create_group(new_group(&admin.org, "Ops", ""))
            .await,
        "group.stage",
    );
    let g = app
        .groups(Some(&admin.token))
        .create_group(new_group(&admin.org, "Ops", "development"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.description, "", "the description is optional");
}

async fn a_groups_stage_never_changes(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let g = app
        .groups(Some(&admin.token))
        .create_group(new_group(&admin.org, "Ops", "development"))
        .await
        .unwrap()
        .into_inner();
    let r = app
        .groups(Some(&admin.token))
        .update_group(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: g.name.clone(),
                stage: stage(&admin.org, "production"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["stage".into()],
            }),
        })
        .await;
    assert_bad_field(r, "update_mask");
    let renamed = app
        .groups(Some(&admin.token))
        .update_group(pb::UpdateGroupRequest {
            group: Some(pb::Group {
                name: g.name.clone(),
                display_name: "Operations".into(),
                description: "night shift".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into(), "description".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            renamed.display_name.as_str(),
            renamed.description.as_str(),
            renamed.stage.as_str()
        ),
        ("Operations", "night shift", g.stage.as_str())
    );
}

async fn members_get_every_role_of_the_group_and_lose_only_what_came_through_it(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let x = app.app(&admin, "X").await;
    let y = app.app(&admin, "Y").await;
    let viewer = app.end_user_role(&admin, &x, "Viewer").await;
    let editor = app.end_user_role(&admin, &y, "Editor").await;
    let dev = stage(&admin.org, "development");
    let groups = || app.groups(Some(&admin.token));
    let g1 = groups()
        .create_group(new_group(&admin.org, "G1", "development"))
        .await
        .unwrap()
        .into_inner();
    let g2 = groups()
        .create_group(new_group(&admin.org, "G2", "development"))
        .await
        .unwrap()
        .into_inner();
    let roles = |v: Vec<&String>| {
        v.into_iter()
            .map(|r| pb::EndUserRoleInStage {
                end_user_role: r.clone(),
                stage: String::new(),
            })
            .collect()
    };
    groups()
        .add_group_roles(pb::AddGroupRolesRequest {
            group: g1.name.clone(),
            end_user_roles: roles(vec![&viewer, &editor]),
        })
        .await
        .unwrap();
    groups()
        .add_group_roles(pb::AddGroupRolesRequest {
            group: g2.name.clone(),
            end_user_roles: roles(vec![&editor]),
        })
        .await
        .unwrap();
    let u = app.invite_and_login(&admin, "u@acme.example", |_| {}).await;
    // A direct grant of Viewer too.
    app.access(Some(&admin.token))
        .grant_end_user_role(pb::GrantEndUserRoleRequest {
            parent: admin.org.clone(),
            grant: Some(pb::EndUserRoleGrant {
                user: u.user.clone(),
                end_user_role: viewer.clone(),
                stage: dev.clone(),
            }),
        })
        .await
        .unwrap();
    for g in [&g1, &g2] {
        groups()
            .add_group_members(pb::AddGroupMembersRequest {
                group: g.name.clone(),
                users: vec![u.user.clone()],
            })
            .await
            .unwrap();
    }
    let check = |r: &String| pb::CheckEndUserRoleRequest {
        parent: admin.org.clone(),
        user: u.user.clone(),
        end_user_role: r.clone(),
        stage: dev.clone(),
    };
    let sources = |c: pb::CheckEndUserRoleResponse| {
        (
            c.has_role,
            c.direct,
            c.groups.into_iter().collect::<BTreeSet<_>>(),
        )
    };
    let acc = || app.access(Some(&admin.token));
    assert_eq!(
        sources(
            acc()
                .check_end_user_role(check(&viewer))
                .await
                .unwrap()
                .into_inner()
        ),
        (true, true, BTreeSet::from([g1.name.clone()]))
    );
    assert_eq!(
        sources(
            acc()
                .check_end_user_role(check(&editor))
                .await
                .unwrap()
                .into_inner()
        ),
        (
            true,
            false,
            BTreeSet::from([g1.name.clone(), g2.name.clone()])
        )
    );
    // Removing from G1 keeps Viewer (direct) and Editor (through G2).
    groups()
        .remove_group_members(pb::RemoveGroupMembersRequest {
            group: g1.name.clone(),
            users: vec![u.user.clone()],
        })
        .await
        .unwrap();
    assert_eq!(
        sources(
            acc()
                .check_end_user_role(check(&viewer))
                .await
                .unwrap()
                .into_inner()
        ),
        (true, true, BTreeSet::new())
    );
    assert_eq!(
        sources(
            acc()
                .check_end_user_role(check(&editor))
                .await
                .unwrap()
                .into_inner()
        ),
        (true, false, BTreeSet::from([g2.name.clone()]))
    );
    // Deleting G2 removes Editor; the direct Viewer stays.
    groups()
        .delete_group(pb::DeleteGroupRequest {
            name: g2.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert!(
        !acc()
            .check_end_user_role(check(&editor))
            .await
            .unwrap()
            .into_inner()
            .has_role
    );
    assert!(
        acc()
            .check_end_user_role(check(&viewer))
            .await
            .unwrap()
            .into_inner()
            .has_role
    );
}

async fn the_same_name_is_fine_in_another_stage_but_not_in_the_same(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    app.groups(Some(&admin.token))
        .create_group(new_group(&admin.org, "Marketing", "development"))
        .await
        .unwrap();
    app.groups(Some(&admin.token))
        .create_group(new_group(&admin.org, "Marketing", "production"))
        .await
        .unwrap();
    assert_code(
        app.groups(Some(&admin.token))
            .create_group(new_group(&admin.org, "MARKETING", "development"))
            .await,
        Code::AlreadyExists,
        None,
    );
}

async fn adding_a_user_of_no_organization_is_not_found_and_adds_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let g = app
        .groups(Some(&admin.token))
        .create_group(new_group(&admin.org, "G", "development"))
        .await
        .unwrap()
        .into_inner();
    let stranger = format!("{}/users/{}", admin.org, uuid::Uuid::new_v4());
    let r = app
        .groups(Some(&admin.token))
        .add_group_members(pb::AddGroupMembersRequest {
            group: g.name.clone(),
            users: vec![admin.user.clone(), stranger],
        })
        .await;
    assert_code(r, Code::NotFound, None);
    let now = app
        .groups(Some(&admin.token))
        .get_group(pb::GetGroupRequest {
            name: g.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.member_count, 0);
}

async fn managing_groups_needs_manage_end_user_groups_in_the_groups_stage(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app.member(&admin, "dev@acme.example", "developer").await;
    assert_code(
        app.groups(Some(&dev.token))
            .create_group(new_group(&admin.org, "G", "development"))
            .await,
        Code::PermissionDenied,
        None,
    );
    let r = app
        .roles(Some(&admin.token))
        .create_role(pb::CreateRoleRequest {
            parent: admin.org.clone(),
            role: Some(pb::Role {
                display_name: "Dev groups".into(),
                grants: vec![pb::PermissionGrant {
                    permission: "end_users.manage_groups".into(),
                    stages: vec![stage(&admin.org, "development")],
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let gm = app.member(&admin, "gm@acme.example", &r.name).await;
    app.groups(Some(&gm.token))
        .create_group(new_group(&admin.org, "G", "development"))
        .await
        .unwrap();
    assert_code(
        app.groups(Some(&gm.token))
            .create_group(new_group(&admin.org, "G", "production"))
            .await,
        Code::PermissionDenied,
        None,
    );
}
