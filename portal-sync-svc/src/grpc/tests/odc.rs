//! ODC records (as the sync writes them) are read-only here; SetIdentityToken and Resync.

use shared::proto::portal::v1 as pb;
use tonic::Code;

use super::*;

#[tokio::test]
async fn odc_records_are_read_only_here() {
    use std::sync::Arc;

    use pb::companies_server::Companies as _;
    use pb::sync_server::Sync as _;
    use pb::team_members_server::TeamMembers as _;
    use uuid::Uuid;

    use crate::auth::tokens::Tokens;
    use crate::domain::model::{
        Access, CompanyPermission, Email, InfraPermission, Source, TeamMember, TeamRole,
    };
    use crate::store::{MemberChange, PortalStore};
    use shared::secrets::hash_token;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn PortalStore> = Arc::new(
        crate::store::sqlite::SqliteStore::open(
            &dir.path().join("p.db"),
            crate::store::test_keyring(),
        )
        .await
        .unwrap(),
    );
    let syncer = crate::sync::Syncer::spawn(
        Arc::clone(&store),
        crate::sync::SyncSettings {
            identity_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        },
    );
    let api = crate::grpc::Api::new(
        crate::rules::Rules::new(Arc::clone(&store), Arc::clone(&syncer)),
        Tokens::new(vec![hash_token(OP)], vec![hash_token(SVC)]),
    );
    let c = api
        .create_company(op(pb::CreateCompanyRequest {
            company: Some(pb::Company {
                display_name: "Acme".into(),
                ..Default::default()
            }),
            first_admin_email: "boss@acme.com".into(),
            first_admin_display_name: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let odc = |org: &str, token: &str| pb::CreateInfrastructureRequest {
        parent: c.name.clone(),
        infrastructure: Some(pb::Infrastructure {
            display_name: "ODC".into(),
            kind: pb::InfrastructureKind::Odc.into(),
            identity_organization: org.into(),
            ..Default::default()
        }),
        identity_token: token.into(),
    };
    let e = api
        .create_infrastructure(op(odc("", "")))
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&e),
        ["infrastructure.identity_organization", "identity_token"]
    );
    let org = Uuid::new_v4();
    let infra = api
        .create_infrastructure(op(odc(&format!("organizations/{org}"), "odc_sa_x")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(infra.identity_organization, format!("organizations/{org}"));
    let (company, infra_id) = crate::domain::names::infrastructure(&infra.name).unwrap();

    // SetIdentityToken: bad input names the field; only an existing ODC infrastructure.
    let set = |name: &str, token: &str| {
        op(pb::SetIdentityTokenRequest {
            name: name.into(),
            identity_token: token.into(),
        })
    };
    let e = api
        .set_identity_token(set(&format!("{}/infrastructures/x", c.name), "t"))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["name"]);
    let e = api
        .set_identity_token(set(&infra.name, " "))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["identity_token"]);
    let ghost = format!("{}/infrastructures/{}", c.name, Uuid::new_v4());
    let e = api.set_identity_token(set(&ghost, "t")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let cloud = api
        .create_infrastructure(op(pb::CreateInfrastructureRequest {
            parent: c.name.clone(),
            infrastructure: Some(pb::Infrastructure {
                display_name: "Cloud".into(),
                kind: pb::InfrastructureKind::O11Cloud.into(),
                ..Default::default()
            }),
            identity_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let e = api
        .set_identity_token(set(&cloud.name, "t"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert_eq!(
        store.identity_token(infra_id).await.unwrap().as_deref(),
        Some("odc_sa_x"),
        "refused calls change nothing"
    );
    let replaced = api
        .set_identity_token(set(&infra.name, " odc_sa_y "))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced, infra);
    assert_eq!(
        store.identity_token(infra_id).await.unwrap().as_deref(),
        Some("odc_sa_y")
    );

    // A record as the sync writes it.
    let user = Uuid::new_v4();
    let member = TeamMember {
        id: Uuid::new_v4(),
        company,
        email: Email::parse("odc@acme.com").unwrap(),
        display_name: "From ODC".into(),
        team_role: TeamRole::Other,
        company_permission: CompanyPermission::Member,
        access: vec![Access {
            infrastructure: infra_id,
            permission: InfraPermission::Member,
            source: Source::Odc {
                identity_user: user,
            },
        }],
        phone: None,
        lifetime_username: None,
        development_permissions: false,
        created_by_sync: true,
        create_time: 1,
        update_time: 1,
        rev: 1,
    };
    store
        .apply(
            company,
            &[MemberChange::Upsert {
                member: member.clone(),
                expected_rev: None,
            }],
            &[],
            None,
            1,
        )
        .await
        .unwrap();
    let name = crate::domain::names::fmt::member(company, member.id);
    let got = api
        .get_team_member(as_(
            "boss@acme.com",
            pb::GetTeamMemberRequest { name: name.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.infrastructure_access[0].identity_user,
        format!("organizations/{org}/users/{user}")
    );
    assert_eq!(
        got.infrastructure_access[0].source,
        i32::from(pb::PermissionSource::SourceOdc)
    );

    let update = |access: Vec<pb::InfrastructureAccess>| pb::UpdateTeamMemberRequest {
        member: Some(pb::TeamMember {
            name: name.clone(),
            infrastructure_access: access,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["infrastructure_access".into()],
        }),
        grant_development_permissions: false,
    };
    for change in [
        vec![],
        vec![access(
            &infra.name,
            pb::InfrastructurePermission::InfrastructureAdmin,
        )],
    ] {
        let e = api
            .update_team_member(as_("boss@acme.com", update(change)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert_eq!(reason(&e), "ODC_MANAGED");
    }
    // Unchanged ODC access with a display-name edit is fine.
    let mut rename = update(vec![access(
        &infra.name,
        pb::InfrastructurePermission::InfrastructureMember,
    )]);
    if let Some(m) = rename.member.as_mut() {
        m.display_name = "Renamed".into();
    }
    rename.update_mask = None;
    rename.member.as_mut().unwrap().team_role = pb::TeamRole::Developer.into();
    let renamed = api
        .update_team_member(as_("boss@acme.com", rename))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "Renamed");
    assert_eq!(
        renamed.infrastructure_access[0].source,
        i32::from(pb::PermissionSource::SourceOdc)
    );
    let e = api
        .remove_team_member(as_(
            "boss@acme.com",
            pb::RemoveTeamMemberRequest { name: name.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "ODC_MANAGED");
    // ODC members are not added here.
    let e = api
        .add_team_member(as_(
            "boss@acme.com",
            pb::AddTeamMemberRequest {
                parent: c.name.clone(),
                email: "x@acme.com".into(),
                team_role: pb::TeamRole::Other.into(),
                company_permission: pb::CompanyPermission::Member.into(),
                infrastructure_access: vec![access(
                    &infra.name,
                    pb::InfrastructurePermission::InfrastructureMember,
                )],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["infrastructure_access[0].infrastructure"]);

    let st = api
        .get_sync_status(svc(pb::GetSyncStatusRequest {
            infrastructure: infra.name.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.infrastructure, infra.name);
    let e = api
        .resync(svc(pb::ResyncRequest {
            infrastructure: infra.name.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        api.resync(op(pb::ResyncRequest {
            infrastructure: infra.name.clone(),
        }))
        .await
        .is_ok()
    );
    syncer.stop().await;
}
