use std::collections::BTreeSet;

use shared::proto::identity::v1 as pb;
use shared::proto::identity::v1::resource::Kind;
use uuid::Uuid;

use super::{apply_event, mirror_from_snapshot};
use crate::domain::mapping::{Mirror, OPEN_CASES, RoleKind, UserState, VIEW_ALL_CASES};
use crate::domain::model::InfraPermission;

const ORG: &str = "organizations/00000000-0000-4000-8000-000000000001";

fn user(id: Uuid, email: &str, state: pb::UserState) -> pb::User {
    pb::User {
        name: format!("{ORG}/users/{id}"),
        email: email.into(),
        display_name: format!("Name of {email}"),
        state: state.into(),
        ..Default::default()
    }
}

fn role(id: &str, permissions: &[&str]) -> pb::Role {
    pb::Role {
        name: format!("{ORG}/roles/{id}"),
        grants: permissions
            .iter()
            .map(|p| pb::PermissionGrant {
                permission: (*p).into(),
                stages: Vec::new(),
            })
            .collect(),
        ..Default::default()
    }
}

fn assignment(principal: &str, role: &str, scope: pb::scope::Kind) -> pb::RoleAssignment {
    pb::RoleAssignment {
        principal: format!("{ORG}/{principal}"),
        role: format!("{ORG}/roles/{role}"),
        scope: Some(pb::Scope { kind: Some(scope) }),
        ..Default::default()
    }
}

fn org_scope() -> pb::scope::Kind {
    pb::scope::Kind::Organization(true)
}

fn app_scope() -> pb::scope::Kind {
    pb::scope::Kind::App(format!("{ORG}/apps/{}", Uuid::new_v4()))
}

fn event(action: &str, before: Option<Kind>, after: Option<Kind>) -> pb::ChangeEvent {
    let resource = |k| pb::Resource { kind: Some(k) };
    pb::ChangeEvent {
        action: action.into(),
        before: before.map(resource),
        after: after.map(resource),
        ..Default::default()
    }
}

fn same(a: &Mirror, b: &Mirror) {
    assert_eq!(a.users, b.users);
    assert_eq!(a.roles, b.roles);
    assert_eq!(a.org_roles, b.org_roles);
}

/// Every kind of user, role and assignment the mapping distinguishes.
fn snapshot() -> (pb::Snapshot, [Uuid; 3]) {
    let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let sa = format!("serviceAccounts/{}", Uuid::new_v4());
    let s = pb::Snapshot {
        organization: ORG.into(),
        sequence: 9,
        users: vec![
            user(ids[0], "ada@acme.example", pb::UserState::Active),
            user(ids[1], "bob@acme.example", pb::UserState::Invited),
            user(ids[2], "cy@acme.example", pb::UserState::Inactive),
        ],
        roles: vec![
            role("administrator", &[]),
            role("developer", &["asset.open"]),
            role("support", &[OPEN_CASES, "asset.open"]),
        ],
        role_assignments: vec![
            assignment(&format!("users/{}", ids[0]), "administrator", org_scope()),
            assignment(&format!("users/{}", ids[1]), "support", org_scope()),
            assignment(&format!("users/{}", ids[2]), "developer", app_scope()),
            assignment(&sa, "administrator", org_scope()),
        ],
    };
    (s, ids)
}

#[test]
fn the_snapshot_and_the_events_that_created_it_build_the_same_mirror() {
    let (s, ids) = snapshot();
    let from_snapshot = mirror_from_snapshot(&s);
    assert_eq!(from_snapshot.users[&ids[1]].state, UserState::Invited);
    assert_eq!(from_snapshot.users[&ids[2]].state, UserState::Inactive);
    assert_eq!(
        from_snapshot.roles["support"],
        RoleKind::Custom(vec![OPEN_CASES.into(), "asset.open".into()])
    );
    assert_eq!(
        from_snapshot.org_roles.len(),
        2,
        "app scope and service accounts are left out"
    );
    let mut from_events = Mirror::default();
    let mut affected = BTreeSet::new();
    let created = s
        .users
        .iter()
        .map(|u| Kind::User(u.clone()))
        .chain(s.roles.iter().map(|r| Kind::Role(r.clone())))
        .chain(
            s.role_assignments
                .iter()
                .map(|a| Kind::RoleAssignment(a.clone())),
        );
    for k in created {
        affected.extend(apply_event(
            &mut from_events,
            &event("x.created", None, Some(k)),
        ));
    }
    same(&from_snapshot, &from_events);
    assert_eq!(affected, BTreeSet::from(ids));
}

#[test]
fn a_role_edit_affects_every_organization_scope_holder() {
    let (s, ids) = snapshot();
    let mut m = mirror_from_snapshot(&s);
    assert_eq!(
        m.derive(ids[1]).map(|d| d.permission),
        Some(InfraPermission::Member)
    );
    let before = role("support", &[OPEN_CASES, "asset.open"]);
    let after = role("support", &[VIEW_ALL_CASES]);
    let e = event(
        "role.updated",
        Some(Kind::Role(before)),
        Some(Kind::Role(after)),
    );
    assert_eq!(apply_event(&mut m, &e), BTreeSet::from([ids[1]]));
    assert_eq!(
        m.derive(ids[1]).map(|d| d.permission),
        Some(InfraPermission::Admin)
    );
}

#[test]
fn deletes_remove_users_and_organization_roles() {
    let (s, ids) = snapshot();
    let mut m = mirror_from_snapshot(&s);
    let gone = assignment(&format!("users/{}", ids[0]), "administrator", org_scope());
    let e = event(
        "role_assignment.deleted",
        Some(Kind::RoleAssignment(gone)),
        None,
    );
    assert_eq!(apply_event(&mut m, &e), BTreeSet::from([ids[0]]));
    assert!(!m.org_roles.contains_key(&ids[0]));
    let e = event("user.deleted", Some(Kind::User(s.users[1].clone())), None);
    assert_eq!(apply_event(&mut m, &e), BTreeSet::from([ids[1]]));
    assert!(!m.users.contains_key(&ids[1]));
    assert_eq!(m.derive(ids[1]), None);
}

#[test]
fn kinds_and_scopes_the_mapping_does_not_read_change_nothing() {
    let (s, ids) = snapshot();
    let mut m = mirror_from_snapshot(&s);
    let app_role = assignment(&format!("users/{}", ids[1]), "administrator", app_scope());
    let group = pb::Group {
        name: format!("{ORG}/groups/{}", Uuid::new_v4()),
        ..Default::default()
    };
    let member = pb::GroupMember {
        group: group.name.clone(),
        user: s.users[0].name.clone(),
        types: vec![pb::MembershipType::Assigned.into()],
    };
    for e in [
        event(
            "role_assignment.created",
            None,
            Some(Kind::RoleAssignment(app_role)),
        ),
        event("group.created", None, Some(Kind::Group(group))),
        event("group_member.added", None, Some(Kind::GroupMember(member))),
        event("nothing", None, None),
    ] {
        assert_eq!(apply_event(&mut m, &e), BTreeSet::new(), "{}", e.action);
    }
    same(&m, &mirror_from_snapshot(&s));
}

#[test]
fn control_characters_of_identity_names_are_dropped_from_the_mirror() {
    let id = Uuid::new_v4();
    let mut u = user(id, "ada@x.example", pb::UserState::Active);
    u.display_name = "A\u{0}da\u{1b}".into();
    let m = mirror_from_snapshot(&pb::Snapshot {
        users: vec![u],
        ..Default::default()
    });
    assert_eq!(m.users[&id].display_name, "Ada");
}

#[test]
fn a_time_bound_grant_counts_between_its_boundary_events_only() {
    let (s, ids) = snapshot();
    let mut m = mirror_from_snapshot(&s);
    let dev = ids[2];
    let at = |state: pb::GrantState| {
        let mut a = assignment(&format!("users/{dev}"), "developer", org_scope());
        a.set_state(state);
        Kind::RoleAssignment(a)
    };
    // Assigned for later: no record, nobody affected.
    let mut u = s.users[2].clone();
    u.set_state(pb::UserState::Active);
    apply_event(&mut m, &event("user.activated", None, Some(Kind::User(u))));
    let e = event(
        "role_assignment.created",
        None,
        Some(at(pb::GrantState::Scheduled)),
    );
    assert_eq!(apply_event(&mut m, &e), BTreeSet::new());
    assert_eq!(m.derive(dev), None);
    // The start's event makes the record, the end's removes it.
    let e = event(
        "role_assignment.became_effective",
        Some(at(pb::GrantState::Scheduled)),
        Some(at(pb::GrantState::Active)),
    );
    assert_eq!(apply_event(&mut m, &e), BTreeSet::from([dev]));
    assert_eq!(
        m.derive(dev).map(|d| d.permission),
        Some(InfraPermission::Member)
    );
    let e = event(
        "role_assignment.became_ineffective",
        Some(at(pb::GrantState::Active)),
        Some(at(pb::GrantState::Expired)),
    );
    assert_eq!(apply_event(&mut m, &e), BTreeSet::from([dev]));
    assert_eq!(m.derive(dev), None);
    // A snapshot taken meanwhile agrees.
    let mut later = s.clone();
    later.role_assignments.push({
        let Kind::RoleAssignment(a) = at(pb::GrantState::Expired) else {
            unreachable!()
        };
        a
    });
    assert!(!mirror_from_snapshot(&later).org_roles.contains_key(&dev));
}

#[test]
fn a_user_without_an_email_is_left_out_until_identity_gives_them_one() {
    let (s, _) = snapshot();
    let id = Uuid::new_v4();
    let no_email = user(id, "", pb::UserState::Active);
    let mut with_it = s.clone();
    with_it.users.insert(0, no_email.clone());
    let mut m = mirror_from_snapshot(&with_it);
    same(&m, &mirror_from_snapshot(&s));
    assert_eq!(m.derive(id), None);
    let created = event("user.created", None, Some(Kind::User(no_email.clone())));
    assert_eq!(apply_event(&mut m, &created), BTreeSet::new());
    same(&m, &mirror_from_snapshot(&s));
    let mut given = no_email.clone();
    given.email = "pat@acme.example".into();
    let e = event(
        "user.updated",
        Some(Kind::User(no_email)),
        Some(Kind::User(given)),
    );
    assert_eq!(apply_event(&mut m, &e), BTreeSet::from([id]));
    assert_eq!(m.users[&id].email.as_str(), "pat@acme.example");
}
