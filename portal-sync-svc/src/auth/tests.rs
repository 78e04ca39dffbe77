//! The rules table against the descriptors, token identification, authentication and
//! admission by level.

use std::collections::BTreeSet;

use prost::Message as _;

use shared::secrets::{TokenEncoding, hash_token, new_token};
use tonic::metadata::MetadataMap;
use uuid::Uuid;

use super::AuthError;
use super::authenticate::{ACTING_FOR, Caller, authenticate};
use super::levels::Need;
use super::proof::Entry;
use super::rules::RULES;
use super::tokens::{OPERATOR_PREFIX, TokenKind, Tokens};
use crate::domain::facts::CompanyFacts;
use crate::domain::model::{
    Access, CompanyPermission, Email, InfraPermission, Infrastructure, Source, TeamMember, TeamRole,
};

/// Every RPC of the portal API, read from the compiled descriptors.
fn portal_methods() -> BTreeSet<String> {
    let fds = prost_types::FileDescriptorSet::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    fds.file
        .iter()
        .filter(|f| f.package() == "portal.v1")
        .flat_map(|f| {
            f.service.iter().flat_map(move |s| {
                s.method
                    .iter()
                    .map(move |m| format!("portal.v1.{}/{}", s.name(), m.name()))
            })
        })
        .collect()
}

#[test]
fn every_rpc_has_exactly_one_authorization_rule() {
    let methods = portal_methods();
    assert!(methods.len() >= 25, "descriptors not found: {methods:?}");
    let mut seen = BTreeSet::new();
    for (m, _) in RULES {
        assert!(seen.insert(*m), "{m} has two rules");
        assert!(methods.contains(*m), "{m} is not an RPC of the API");
    }
    let missing: Vec<_> = methods
        .iter()
        .filter(|m| !seen.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without an authorization rule: {missing:?}"
    );
}

fn tokens() -> Tokens {
    Tokens::new(
        vec![hash_token("op")],
        vec![hash_token("svc1"), hash_token("svc2")],
    )
}

fn md(token: Option<&str>, acting: Option<&str>) -> MetadataMap {
    let mut md = MetadataMap::new();
    if let Some(t) = token {
        md.insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(a) = acting {
        md.insert(ACTING_FOR, a.parse().unwrap());
    }
    md
}

#[test]
fn tokens_are_identified_by_hash() {
    let t = tokens();
    assert_eq!(t.identify("op"), Some(TokenKind::Operator));
    assert_eq!(t.identify("svc2"), Some(TokenKind::Service));
    assert_eq!(t.identify("nope"), None);
    assert!(!format!("{t:?}").contains(&hash_token("op")));
    let a = new_token(OPERATOR_PREFIX, TokenEncoding::Hex);
    assert!(a.starts_with(OPERATOR_PREFIX));
    assert_ne!(a, new_token(OPERATOR_PREFIX, TokenEncoding::Hex));
}

#[test]
fn authentication_by_rule() {
    let t = tokens();
    let create = "portal.v1.Companies/CreateCompany";
    let get = "portal.v1.Companies/GetCompany";
    let list = "portal.v1.TeamMembers/ListTeamMembers";
    let check = "portal.v1.Capabilities/CheckCapability";
    let unauth = |r: Result<Caller, AuthError>| matches!(r, Err(AuthError::Unauthenticated(_)));
    let denied = |r: Result<Caller, AuthError>| matches!(r, Err(AuthError::PermissionDenied(_)));

    assert!(unauth(authenticate(&t, &md(None, None), create)));
    assert!(unauth(authenticate(&t, &md(Some("bad"), None), create)));
    let mut basic = MetadataMap::new();
    basic.insert("authorization", "Basic abc".parse().unwrap());
    assert!(unauth(authenticate(&t, &basic, create)));

    assert_eq!(
        authenticate(&t, &md(Some("op"), None), create),
        Ok(Caller::Operator)
    );
    assert!(denied(authenticate(
        &t,
        &md(Some("svc1"), Some("a@x.com")),
        create
    )));
    assert_eq!(
        authenticate(&t, &md(Some("op"), Some("a@x.com")), get),
        Ok(Caller::Operator)
    );
    assert_eq!(
        authenticate(&t, &md(Some("svc1"), Some(" A@X.com ")), get),
        Ok(Caller::Person(Email::parse("a@x.com").unwrap()))
    );
    assert!(matches!(
        authenticate(&t, &md(Some("svc1"), None), get),
        Err(AuthError::ActingFor(_))
    ));
    assert!(matches!(
        authenticate(&t, &md(Some("svc1"), Some("not-an-email")), get),
        Err(AuthError::ActingFor(_))
    ));
    assert!(denied(authenticate(
        &t,
        &md(Some("op"), Some("a@x.com")),
        list
    )));
    assert_eq!(
        authenticate(&t, &md(Some("svc2"), None), check),
        Ok(Caller::Service)
    );
    assert!(denied(authenticate(&t, &md(Some("op"), None), check)));
    assert!(matches!(
        authenticate(&t, &md(Some("op"), None), "portal.v1.Nope/Nope"),
        Err(AuthError::Internal(_))
    ));
}

fn facts() -> (CompanyFacts, Uuid) {
    let infra = Uuid::new_v4();
    let member = |e: &str, p: CompanyPermission, access: Vec<Access>| TeamMember {
        id: Uuid::new_v4(),
        company: Uuid::nil(),
        email: Email::parse(e).unwrap(),
        display_name: String::new(),
        team_role: TeamRole::Other,
        company_permission: p,
        access,
        phone: None,
        lifetime_username: None,
        development_permissions: false,
        created_by_sync: false,
        create_time: 0,
        update_time: 0,
        rev: 1,
    };
    let admin_of = vec![Access {
        infrastructure: infra,
        permission: InfraPermission::Admin,
        source: Source::Manual,
    }];
    (
        CompanyFacts {
            members: vec![
                member("ca@x.com", CompanyPermission::Admin, vec![]),
                member("ia@x.com", CompanyPermission::Member, admin_of),
                member("m@x.com", CompanyPermission::Member, vec![]),
            ],
            infrastructures: vec![Infrastructure {
                id: infra,
                company: Uuid::nil(),
                display_name: "cloud".into(),
                kind: crate::domain::model::InfraKind::O11Cloud,
                identity_org: None,
                create_time: 0,
            }],
            ..CompanyFacts::default()
        },
        infra,
    )
}

fn person(e: &str) -> Caller {
    Caller::Person(Email::parse(e).unwrap())
}

#[test]
fn admission_by_level() {
    let (f, infra) = facts();
    let c = Some(Uuid::nil());
    let events = "portal.v1.Sync/ListPortalEvents";
    assert!(Entry::admit(events, person("ca@x.com"), c, Some(&f)).is_ok());
    for who in ["ia@x.com", "m@x.com", "stranger@y.com"] {
        assert!(
            matches!(
                Entry::admit(events, person(who), c, Some(&f)),
                Err(AuthError::PermissionDenied(_))
            ),
            "{who}"
        );
    }
    // A company that does not exist is refused like any other company.
    assert!(Entry::admit(events, person("ca@x.com"), c, None).is_err());
    // Operator rules do not look at people.
    assert!(Entry::admit("portal.v1.Companies/GetCompany", Caller::Operator, c, None).is_ok());
    // Anyone may try to open a case.
    let open = "portal.v1.Support/CreateSupportCase";
    let e = Entry::admit(open, person("stranger@y.com"), c, Some(&f)).unwrap();
    assert!(
        e.authorized().is_err(),
        "contextual rules need stated needs"
    );
    assert!(e.require(&f, &Need::Nothing).is_ok());
    assert!(e.require(&f, &Need::CompanyAdmin).is_err());

    let add = "portal.v1.TeamMembers/AddTeamMember";
    let e = Entry::admit(add, person("ia@x.com"), c, Some(&f)).unwrap();
    assert!(
        e.require(&f, &Need::InfrastructureAdminOfEvery(vec![infra]))
            .is_ok()
    );
    assert!(
        e.require(&f, &Need::InfrastructureAdminOfEvery(vec![]))
            .is_err()
    );
    assert!(
        e.require(
            &f,
            &Need::Any(vec![
                Need::CompanyAdmin,
                Need::InfrastructureAdmin(Uuid::new_v4())
            ])
        )
        .is_err()
    );
    let proof = e.require(&f, &Need::InfrastructureAdmin(infra)).unwrap();
    assert_eq!(proof.actor(), "ia@x.com");
    assert!(Entry::admit(add, person("m@x.com"), c, Some(&f)).is_err());
}
