//! The cases of the input-hygiene issue, explicitly, on both services: a NUL or another
//! control character in a display name, an email or a case subject is INVALID_ARGUMENT naming
//! the field and stores nothing, while the same request without it succeeds; a string field
//! holding invalid UTF-8 is INVALID_ARGUMENT with `ErrorInfo { reason: MALFORMED_REQUEST }`
//! naming the field; a multi-line description keeps its line feeds and tabs.

use prost::Message;
use prost_reflect::{DescriptorPool, MethodDescriptor};
use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use tonic::Code;
use tonic_types::StatusExt as _;

use super::targets::{Caller, Target};
use super::{call, targets};
use crate::harness::{Backend, SERVICE_TOKEN};

fn method(full: &str) -> MethodDescriptor {
    let pool = DescriptorPool::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    let (service, name) = full.rsplit_once('.').unwrap();
    pool.get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .unwrap_or_else(|| panic!("no RPC {full}"))
}

/// `bad` is refused naming `field` with nothing stored; `clean` (the same request without
/// the character) then succeeds.
async fn refused_then_accepted<M: Message>(
    t: &Target,
    rpc: &str,
    caller: &Caller,
    field: &str,
    bad: &M,
    clean: &M,
) {
    let m = method(rpc);
    let before = t.fingerprint().await;
    let status = call(t, &m, bad.encode_to_vec(), caller.clone())
        .await
        .expect_err(rpc);
    assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
    let details = status.get_error_details();
    let named: Vec<String> = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    assert_eq!(named, [field], "{rpc}: {status:?}");
    let info = details.error_info().cloned().unwrap();
    assert_eq!(info.domain, shared::codec::error_domain(t.package));
    assert_eq!(
        t.fingerprint().await,
        before,
        "{rpc} stored a refused request"
    );
    call(t, &m, clean.encode_to_vec(), caller.clone())
        .await
        .unwrap_or_else(|e| panic!("{rpc} without the control character: {e:?}"));
}

/// `bytes` with `MARK` (in the string field `field`) replaced by invalid UTF-8 of the same
/// length is a malformed request naming the field.
async fn invalid_utf8(t: &Target, rpc: &str, caller: &Caller, field: &str, mut bytes: Vec<u8>) {
    const MARK: &[u8] = b"MARK";
    let at = bytes.windows(4).position(|w| w == MARK).unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xc3, 0x28, 0xff, 0xfe]);
    let before = t.fingerprint().await;
    let status = call(t, &method(rpc), bytes, caller.clone())
        .await
        .expect_err(rpc);
    assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
    let details = status.get_error_details();
    let info = details.error_info().cloned().unwrap();
    assert_eq!(info.reason, "MALFORMED_REQUEST");
    assert_eq!(info.domain, shared::codec::error_domain(t.package));
    let named: Vec<String> = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    assert_eq!(named, [field]);
    assert_eq!(t.fingerprint().await, before);
}

pub(super) async fn identity(b: Backend) {
    let t = targets::identity(b).await;
    let admin = t.callers.lock().unwrap()[0].clone();
    let org = t.named["org"].clone();
    let user = |email: &str, name: &str| id::CreateUserRequest {
        parent: org.clone(),
        user: Some(id::User {
            email: email.into(),
            display_name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rpc = "identity.v1.Users.CreateUser";
    let (bad, clean) = (user("ada@x.example", "Ada\0"), user("ada@x.example", "Ada"));
    refused_then_accepted(&t, rpc, &admin, "user.display_name", &bad, &clean).await;
    let (bad, clean) = (
        user("b\u{1}b@x.example", "Bob"),
        user("bob@x.example", "Bob"),
    );
    refused_then_accepted(&t, rpc, &admin, "user.email", &bad, &clean).await;
    invalid_utf8(
        &t,
        rpc,
        &admin,
        "user.display_name",
        user("c@x.example", "MARK").encode_to_vec(),
    )
    .await;

    let invite = |name: &str| id::InviteUserRequest {
        parent: org.clone(),
        email: "invitee@x.example".into(),
        display_name: name.into(),
        ..Default::default()
    };
    let (bad, clean) = (invite("In\u{7f}vitee"), invite("Invitee"));
    refused_then_accepted(
        &t,
        "identity.v1.Users.InviteUser",
        &admin,
        "display_name",
        &bad,
        &clean,
    )
    .await;

    let update = |name: &str| id::UpdateUserRequest {
        user: Some(id::User {
            name: t.named["member"].clone(),
            display_name: name.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
    };
    let (bad, clean) = (update("Member\u{85}"), update("Member"));
    refused_then_accepted(
        &t,
        "identity.v1.Users.UpdateUser",
        &admin,
        "user.display_name",
        &bad,
        &clean,
    )
    .await;

    let app = |name: &str| id::CreateAppRequest {
        parent: org.clone(),
        app: Some(id::App {
            display_name: name.into(),
            ..Default::default()
        }),
    };
    let (bad, clean) = (app("App\0"), app("Second app"));
    refused_then_accepted(
        &t,
        "identity.v1.Apps.CreateApp",
        &admin,
        "app.display_name",
        &bad,
        &clean,
    )
    .await;

    let group = |name: &str, description: &str| id::CreateGroupRequest {
        parent: org.clone(),
        group: Some(id::Group {
            display_name: name.into(),
            description: description.into(),
            stage: t.named["stage"].clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rpc = "identity.v1.Groups.CreateGroup";
    let (bad, clean) = (group("Red\u{1b}[31m", ""), group("Red", ""));
    refused_then_accepted(&t, rpc, &admin, "group.display_name", &bad, &clean).await;
    // A multi-line description keeps line feeds and tabs, and refuses any other control
    // character.
    let (bad, clean) = (group("Blue", "one\0two"), group("Blue", "one\ntwo\tthree"));
    refused_then_accepted(&t, rpc, &admin, "group.description", &bad, &clean).await;
}

pub(super) async fn portal(b: Backend) {
    let t = targets::portal(b).await;
    let operator: Caller = (Some(t.named["operator"].clone()), None);
    let admin: Caller = (
        Some(SERVICE_TOKEN.to_owned()),
        Some(t.named["admin_email"].clone()),
    );
    let company = t.named["company"].clone();
    let create = |name: &str, email: &str| portal::CreateCompanyRequest {
        company: Some(portal::Company {
            display_name: name.into(),
            ..Default::default()
        }),
        first_admin_email: email.into(),
        first_admin_display_name: String::new(),
    };
    let rpc = "portal.v1.Companies.CreateCompany";
    let (bad, clean) = (
        create("Acme\0", "a@acme.example"),
        create("Acme", "a@acme.example"),
    );
    refused_then_accepted(&t, rpc, &operator, "company.display_name", &bad, &clean).await;
    let (bad, clean) = (
        create("Beta", "\0b@beta.example"),
        create("Beta", "b@beta.example"),
    );
    refused_then_accepted(&t, rpc, &operator, "first_admin_email", &bad, &clean).await;
    invalid_utf8(
        &t,
        rpc,
        &operator,
        "company.display_name",
        create("MARK", "c@c.example").encode_to_vec(),
    )
    .await;

    let add = |name: &str, email: &str| portal::AddTeamMemberRequest {
        parent: company.clone(),
        email: email.into(),
        display_name: name.into(),
        team_role: portal::TeamRole::Developer.into(),
        company_permission: portal::CompanyPermission::Member.into(),
        ..Default::default()
    };
    let (bad, clean) = (
        add("Eve\u{9b}", "eve@props.example"),
        add("Eve", "eve@props.example"),
    );
    refused_then_accepted(
        &t,
        "portal.v1.TeamMembers.AddTeamMember",
        &admin,
        "display_name",
        &bad,
        &clean,
    )
    .await;

    let infra = |name: &str| portal::CreateInfrastructureRequest {
        parent: company.clone(),
        infrastructure: Some(portal::Infrastructure {
            display_name: name.into(),
            kind: portal::InfrastructureKind::O11Cloud.into(),
            ..Default::default()
        }),
        identity_token: String::new(),
    };
    let (bad, clean) = (infra("Cloud\0two"), infra("Cloud two"));
    refused_then_accepted(
        &t,
        "portal.v1.Companies.CreateInfrastructure",
        &operator,
        "infrastructure.display_name",
        &bad,
        &clean,
    )
    .await;

    let register = |email: &str| portal::RegisterCommunityAccountRequest {
        email: email.into(),
    };
    let (bad, clean) = (
        register("\0x@community.example"),
        register("x@community.example"),
    );
    refused_then_accepted(
        &t,
        "portal.v1.CommunityAccounts.RegisterCommunityAccount",
        &operator,
        "email",
        &bad,
        &clean,
    )
    .await;

    let case = |subject: &str| portal::CreateSupportCaseRequest {
        parent: company.clone(),
        support_case: Some(portal::SupportCase {
            infrastructure: t.named["cloud"].clone(),
            subject: subject.into(),
            ..Default::default()
        }),
    };
    // An outside requester: the case is held for approval.
    let requester: Caller = (
        Some(SERVICE_TOKEN.to_owned()),
        Some("requester@partner.example".to_owned()),
    );
    let (bad, clean) = (case("Help\0me"), case("Help me"));
    refused_then_accepted(
        &t,
        "portal.v1.Support.CreateSupportCase",
        &requester,
        "support_case.subject",
        &bad,
        &clean,
    )
    .await;
}
