//! In-process checks of the handlers over real gRPC (SQLite in a temporary directory): the
//! O11 add-member flow's validation, authentication and `x-acting-for`, cross-company
//! isolation, company admins, status, and held support cases. The cross-service behaviour
//! (ODC sync with identity) is tested in `/tests`.

use shared::auth::Secret;
use shared::proto::portal::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

use crate::config::Settings;

const OP: &str = "psync_op_test";
const SVC: &str = "psync_svc_test";

struct Server {
    channel: Channel,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Settings {
        data_dir: dir.path().to_owned(),
        operator_token: Some(Secret::new(OP)),
        service_tokens: vec![Secret::new(SVC)],
        ..Settings::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::serve(listener, settings, async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Server {
        channel,
        _stop: stop,
        _dir: dir,
    }
}

fn op<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {OP}").parse().unwrap());
    r
}

fn svc<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {SVC}").parse().unwrap());
    r
}

fn as_<T>(who: &str, msg: T) -> Request<T> {
    let mut r = svc(msg);
    r.metadata_mut()
        .insert("x-acting-for", who.parse().unwrap());
    r
}

fn bad_fields(s: &Status) -> Vec<String> {
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn reason(s: &Status) -> String {
    s.get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

struct Fixture {
    company: String,
    cloud: String,
    self_managed: String,
}

async fn company(s: &Server, name: &str, admin: &str) -> Fixture {
    let mut companies = pb::companies_client::CompaniesClient::new(s.channel.clone());
    let c = companies
        .create_company(op(pb::CreateCompanyRequest {
            company: Some(pb::Company {
                display_name: name.into(),
                ..Default::default()
            }),
            first_admin_email: admin.into(),
            first_admin_display_name: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let infra = |kind: pb::InfrastructureKind| {
        let mut companies = companies.clone();
        let parent = c.name.clone();
        async move {
            companies
                .create_infrastructure(op(pb::CreateInfrastructureRequest {
                    parent,
                    infrastructure: Some(pb::Infrastructure {
                        display_name: format!("{kind:?}"),
                        kind: kind.into(),
                        ..Default::default()
                    }),
                    identity_token: String::new(),
                }))
                .await
                .unwrap()
                .into_inner()
                .name
        }
    };
    let cloud = infra(pb::InfrastructureKind::O11Cloud).await;
    let self_managed = infra(pb::InfrastructureKind::O11SelfManaged).await;
    Fixture {
        company: c.name,
        cloud,
        self_managed,
    }
}

fn access(infra: &str, p: pb::InfrastructurePermission) -> pb::InfrastructureAccess {
    pb::InfrastructureAccess {
        infrastructure: infra.into(),
        permission: p.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn o11_add_member_flow() {
    let s = start().await;
    let f = company(&s, "Acme", "boss@acme.com").await;
    let mut team = pb::team_members_client::TeamMembersClient::new(s.channel.clone());

    // The three required fields, all named at once.
    let e = team
        .add_team_member(as_(
            "boss@acme.com",
            pb::AddTeamMemberRequest {
                parent: f.company.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&e),
        ["email", "team_role", "company_permission"],
        "{e:?}"
    );

    let add = |email: &str, infra: &str, invite: bool| pb::AddTeamMemberRequest {
        parent: f.company.clone(),
        email: email.into(),
        team_role: pb::TeamRole::Developer.into(),
        company_permission: pb::CompanyPermission::Member.into(),
        infrastructure_access: vec![access(
            infra,
            pb::InfrastructurePermission::InfrastructureMember,
        )],
        invite_to_lifetime: invite,
        grant_development_permissions: invite,
        ..Default::default()
    };
    // LifeTime invitations: Cloud and hybrid only; never without an infrastructure.
    let e = team
        .add_team_member(as_(
            "boss@acme.com",
            add("dev@acme.com", &f.self_managed, true),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["invite_to_lifetime"]);
    let mut none = add("dev@acme.com", &f.cloud, true);
    none.infrastructure_access.clear();
    let e = team
        .add_team_member(as_("boss@acme.com", none))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["invite_to_lifetime"]);

    let m = team
        .add_team_member(as_(" Boss@Acme.com ", add(" Dev@Acme.com", &f.cloud, true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.email, "dev@acme.com");
    assert_eq!(m.lifetime_username, "dev@acme.com");
    assert!(m.development_permissions);
    assert_eq!(m.status, i32::from(pb::MemberStatus::Pending));
    assert_eq!(
        m.infrastructure_access[0].source,
        i32::from(pb::PermissionSource::SourceManual)
    );
    let e = team
        .add_team_member(as_("boss@acme.com", add("dev@acme.com", &f.cloud, false)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(reason(&e), "MEMBER_EXISTS");

    // The grant is audited as done by `Administrator`.
    let mut sync = pb::sync_client::SyncClient::new(s.channel.clone());
    let events = sync
        .list_portal_events(as_(
            "boss@acme.com",
            pb::ListPortalEventsRequest {
                parent: f.company.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert!(
        actions.contains(&("boss@acme.com", "member.added")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("Administrator", "development_permissions.granted")),
        "{actions:?}"
    );

    // Edits never grant development permissions.
    let e = team
        .update_team_member(as_(
            "boss@acme.com",
            pb::UpdateTeamMemberRequest {
                member: Some(pb::TeamMember {
                    name: m.name.clone(),
                    display_name: "Dev".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["grant_development_permissions"]);
    // A stale etag is ABORTED.
    let e = team
        .update_team_member(as_(
            "boss@acme.com",
            pb::UpdateTeamMemberRequest {
                member: Some(pb::TeamMember {
                    name: m.name.clone(),
                    display_name: "Dev".into(),
                    etag: "999".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let u = team
        .update_team_member(as_(
            "boss@acme.com",
            pb::UpdateTeamMemberRequest {
                member: Some(pb::TeamMember {
                    name: m.name.clone(),
                    display_name: "Dev".into(),
                    etag: m.etag.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                grant_development_permissions: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.display_name, "Dev");
    assert_ne!(u.etag, m.etag);

    // Registering the Community account flips the status, nothing else.
    let mut accounts =
        pb::community_accounts_client::CommunityAccountsClient::new(s.channel.clone());
    accounts
        .register_community_account(svc(pb::RegisterCommunityAccountRequest {
            email: "DEV@acme.com".into(),
        }))
        .await
        .unwrap();
    let g = team
        .get_team_member(as_(
            "dev@acme.com",
            pb::GetTeamMemberRequest {
                name: m.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.status, i32::from(pb::MemberStatus::Active));
    assert_eq!(g.etag, u.etag);
}

#[tokio::test]
async fn callers_levels_and_isolation() {
    let s = start().await;
    let a = company(&s, "A", "a@a.com").await;
    let b = company(&s, "B", "b@b.com").await;
    let mut companies = pb::companies_client::CompaniesClient::new(s.channel.clone());
    let mut team = pb::team_members_client::TeamMembersClient::new(s.channel.clone());
    let get = |name: &str| pb::GetCompanyRequest { name: name.into() };

    let e = companies
        .get_company(Request::new(get(&a.company)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = companies
        .get_company(svc(get(&a.company)))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["x-acting-for"]);
    assert!(
        companies
            .get_company(as_("a@a.com", get(&a.company)))
            .await
            .is_ok()
    );
    let e = companies
        .get_company(as_("a@a.com", get(&b.company)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = team
        .list_team_members(as_(
            "a@a.com",
            pb::ListTeamMembersRequest {
                parent: b.company.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The operator cannot act for people; services cannot create companies.
    let e = team
        .list_team_members(op(pb::ListTeamMembersRequest {
            parent: a.company.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = companies
        .create_company(svc(pb::CreateCompanyRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // An infrastructure admin adds members only on their infrastructure, never admins.
    let ia = team
        .add_team_member(as_(
            "a@a.com",
            pb::AddTeamMemberRequest {
                parent: a.company.clone(),
                email: "ia@a.com".into(),
                team_role: pb::TeamRole::Manager.into(),
                company_permission: pb::CompanyPermission::Member.into(),
                infrastructure_access: vec![access(
                    &a.cloud,
                    pb::InfrastructurePermission::InfrastructureAdmin,
                )],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let member_on = |infra: &str, p: pb::CompanyPermission| pb::AddTeamMemberRequest {
        parent: a.company.clone(),
        email: "new@a.com".into(),
        team_role: pb::TeamRole::Other.into(),
        company_permission: p.into(),
        infrastructure_access: vec![access(
            infra,
            pb::InfrastructurePermission::InfrastructureMember,
        )],
        ..Default::default()
    };
    for req in [
        member_on(&a.self_managed, pb::CompanyPermission::Member),
        member_on(&a.cloud, pb::CompanyPermission::Admin),
    ] {
        let e = team
            .add_team_member(as_("ia@a.com", req))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let new = team
        .add_team_member(as_(
            "ia@a.com",
            member_on(&a.cloud, pb::CompanyPermission::Member),
        ))
        .await
        .unwrap()
        .into_inner();
    // Company admins only: assign/remove company admins; never the last one.
    let e = team
        .assign_company_admin(as_(
            "ia@a.com",
            pb::AssignCompanyAdminRequest {
                name: new.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let list = team
        .list_team_members(as_(
            "a@a.com",
            pb::ListTeamMembersRequest {
                parent: a.company.clone(),
                company_permission: pb::CompanyPermission::Admin.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.members.len(), 1);
    let e = team
        .remove_company_admin(as_(
            "a@a.com",
            pb::RemoveCompanyAdminRequest {
                name: list.members[0].name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(reason(&e), "LAST_COMPANY_ADMIN");

    // Security contact: admins only; the phone is checked.
    let sc = |phone: &str| pb::SetSecurityContactRequest {
        name: new.name.clone(),
        phone: phone.into(),
    };
    let e = team
        .set_security_contact(as_("new@a.com", sc("+351912345678")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = team
        .set_security_contact(as_("ia@a.com", sc("12")))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["phone"]);
    let m = team
        .set_security_contact(as_("ia@a.com", sc("+351 912 345 678")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.team_role, i32::from(pb::TeamRole::Security));

    // Removal by the infrastructure admin of every infrastructure of the member.
    team.remove_team_member(as_(
        "ia@a.com",
        pb::RemoveTeamMemberRequest {
            name: new.name.clone(),
        },
    ))
    .await
    .unwrap();
    let e = team
        .remove_team_member(as_(
            "ia@a.com",
            pb::RemoveTeamMemberRequest {
                name: ia.name.clone(),
            },
        ))
        .await;
    assert!(
        e.is_ok(),
        "an infrastructure admin of every infrastructure: {e:?}"
    );
}

#[tokio::test]
async fn held_cases_and_approval() {
    let s = start().await;
    let f = company(&s, "Acme", "boss@acme.com").await;
    let mut team = pb::team_members_client::TeamMembersClient::new(s.channel.clone());
    let mut support = pb::support_client::SupportClient::new(s.channel.clone());
    team.add_team_member(as_(
        "boss@acme.com",
        pb::AddTeamMemberRequest {
            parent: f.company.clone(),
            email: "m@acme.com".into(),
            team_role: pb::TeamRole::Developer.into(),
            company_permission: pb::CompanyPermission::Member.into(),
            infrastructure_access: vec![access(
                &f.cloud,
                pb::InfrastructurePermission::InfrastructureMember,
            )],
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let case = |infra: &str| pb::CreateSupportCaseRequest {
        parent: f.company.clone(),
        support_case: Some(pb::SupportCase {
            infrastructure: infra.into(),
            subject: "It broke".into(),
            cc: vec!["cc@out.com".into()],
            ..Default::default()
        }),
    };
    let open = support
        .create_support_case(as_("m@acme.com", case(&f.cloud)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.state, i32::from(pb::SupportCaseState::Open));
    let e = support
        .create_support_case(as_("m@acme.com", case(&f.self_managed)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let held = support
        .create_support_case(as_("out@out.com", case(&f.cloud)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        held.state,
        i32::from(pb::SupportCaseState::AwaitingApproval)
    );

    let list = |who: &str| {
        let mut support = support.clone();
        let req = as_(
            who,
            pb::ListSupportCasesRequest {
                parent: f.company.clone(),
                ..Default::default()
            },
        );
        async move {
            support
                .list_support_cases(req)
                .await
                .unwrap()
                .into_inner()
                .support_cases
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("m@acme.com").await, [open.name.as_str()]);
    assert_eq!(
        list("cc@out.com").await,
        [open.name.clone(), held.name.clone()]
    );
    assert_eq!(list("out@out.com").await, [held.name.as_str()]);
    let e = support
        .approve_support_case(as_(
            "m@acme.com",
            pb::ApproveSupportCaseRequest {
                name: held.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let ok = support
        .approve_support_case(as_(
            "boss@acme.com",
            pb::ApproveSupportCaseRequest {
                name: held.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.state, i32::from(pb::SupportCaseState::Open));
    let next = support
        .create_support_case(as_("out@out.com", case(&f.cloud)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.state, i32::from(pb::SupportCaseState::Open));

    let contacts = support
        .list_support_contacts(as_(
            "boss@acme.com",
            pb::ListSupportContactsRequest {
                parent: f.company.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .emails;
    assert_eq!(contacts, ["cc@out.com", "out@out.com"]);

    // Capabilities, asked by the service.
    let mut caps = pb::capabilities_client::CapabilitiesClient::new(s.channel.clone());
    let check = |email: &str, c: pb::Capability, infra: &str| pb::CheckCapabilityRequest {
        parent: f.company.clone(),
        email: email.into(),
        capability: c.into(),
        infrastructure: infra.into(),
    };
    let r = caps
        .check_capability(svc(check(
            "boss@acme.com",
            pb::Capability::DownloadLicenses,
            &f.self_managed,
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    assert_eq!(r.granted_by, ["company admin"]);
    let r = caps
        .check_capability(svc(check(
            "m@acme.com",
            pb::Capability::ManageUsers,
            &f.cloud,
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.allowed);
    assert!(!r.denial_reason.is_empty());
    let e = caps
        .check_capability(as_(
            "boss@acme.com",
            check("boss@acme.com", pb::Capability::Unspecified, ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["capability"]);
}

#[tokio::test]
async fn odc_records_are_read_only_here() {
    use std::sync::Arc;

    use pb::companies_server::Companies as _;
    use pb::sync_server::Sync as _;
    use pb::team_members_server::TeamMembers as _;
    use uuid::Uuid;

    use crate::auth::tokens::{Tokens, hash_token};
    use crate::domain::model::{
        Access, CompanyPermission, Email, InfraPermission, Source, TeamMember, TeamRole,
    };
    use crate::store::{MemberChange, PortalStore};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn PortalStore> = Arc::new(
        crate::store::sqlite::SqliteStore::open(&dir.path().join("p.db"))
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
    let api = super::Api::new(
        Arc::clone(&store),
        Arc::clone(&syncer),
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
    let (company, infra_id) = super::names::infrastructure(&infra.name).unwrap();

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
    let name = super::names::fmt::member(company, member.id);
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
    syncer.stop();
}
