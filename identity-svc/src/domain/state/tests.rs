//! Tests of the state's collections and of applying and undoing changes.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{OrgState, ScopedAssignments, SortedSet};
use shared::email::Email;

use crate::domain::model::{
    Assignment, Change, EndUserGrant, Entity, GrantPeriod, GrantPhase, GroupMember, Organization,
    Principal, ScopeKey, User, UserState,
};

/// A deterministic xorshift sequence, so that a failure reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn id(n: u64) -> Uuid {
    Uuid::from_u128(u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

#[test]
fn sorted_set_behaves_like_a_btree_set() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for domain in [1, 3, 10, 200] {
        let mut model: BTreeSet<Uuid> = BTreeSet::new();
        let mut set: SortedSet<Uuid> = SortedSet::new();
        for _ in 0..5_000 {
            let x = id(rng.below(domain));
            match rng.below(3) {
                0 | 1 => assert_eq!(set.insert(x), model.insert(x), "insert {x}"),
                _ => assert_eq!(set.remove(&x), model.remove(&x), "remove {x}"),
            }
            let probe = id(rng.below(domain));
            assert_eq!(set.contains(&probe), model.contains(&probe));
            assert_eq!(set.len(), model.len());
            assert_eq!(set.is_empty(), model.is_empty());
        }
        assert!(set.iter().eq(model.iter()));
        assert!((&set).into_iter().eq(&model));
        assert!(set.as_slice().iter().eq(model.iter()));
    }
}

#[test]
fn sorted_set_of_pairs_is_searched_by_the_whole_pair() {
    let mut set: SortedSet<(Uuid, String)> = SortedSet::new();
    assert!(set.insert((id(1), "production".to_owned())));
    assert!(set.insert((id(1), "development".to_owned())));
    assert!(!set.insert((id(1), "production".to_owned())));
    assert!(set.contains(&(id(1), "development".to_owned())));
    assert!(!set.contains(&(id(1), "qa".to_owned())));
    assert!(!set.contains(&(id(2), "production".to_owned())));
    let stages: Vec<&str> = set.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(stages, ["development", "production"]);
    assert!(set.remove(&(id(1), "development".to_owned())));
    assert_eq!(set.len(), 1);
}

#[test]
fn small_sets_hold_no_spare_capacity_and_large_ones_little() {
    let mut set = SortedSet::new();
    for n in 0..8 {
        set.insert(id(n));
        assert_eq!(set.0.capacity(), set.len());
    }
    for n in 8..10_000 {
        set.insert(id(n));
        assert!(set.0.capacity() <= set.len() + set.len() / 8 + 1);
    }
    for n in 0..9_000 {
        set.remove(&id(n));
        assert!(set.0.capacity() <= set.len() + set.len() / 4 + 1);
    }
    let collected: SortedSet<Uuid> = [id(3), id(1), id(3), id(2)].into_iter().collect();
    assert_eq!(collected.len(), 3);
    assert_eq!(collected.0.capacity(), 3);
    assert!(collected.iter().is_sorted());
}

fn assignment(scope: ScopeKey, role: &str, t: i64) -> Assignment {
    Assignment {
        principal: Principal::User(id(7)),
        scope,
        role: role.to_owned(),
        create_time: t,
        period: None,
        phase: GrantPhase::Active,
    }
}

#[test]
fn scoped_assignments_behave_like_a_btree_map_by_scope() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let scopes: Vec<ScopeKey> = std::iter::once(ScopeKey::Organization)
        .chain((0..6).map(|n| ScopeKey::App(id(n))))
        .collect();
    let mut model: BTreeMap<ScopeKey, Assignment> = BTreeMap::new();
    let mut map = ScopedAssignments::new();
    for t in 0..5_000 {
        let scope = scopes[usize::try_from(rng.below(7)).unwrap()];
        if rng.below(3) < 2 {
            let role =
                ["administrator", "developer", "custom"][usize::try_from(rng.below(3)).unwrap()];
            let a = assignment(scope, role, t);
            assert_eq!(map.insert(a.clone()), model.insert(scope, a));
        } else {
            assert_eq!(map.remove(&scope), model.remove(&scope));
        }
        let probe = scopes[usize::try_from(rng.below(7)).unwrap()];
        assert_eq!(map.get(&probe), model.get(&probe));
        assert_eq!(map.contains_key(&probe), model.contains_key(&probe));
        assert_eq!(map.len(), model.len());
        assert_eq!(map.is_empty(), model.is_empty());
        assert!(map.iter().eq(model.iter()));
        assert!((&map).into_iter().eq(&model));
        assert!(map.iter().rev().eq(model.iter().rev()));
        assert!(map.keys().eq(model.keys()));
        assert!(map.values().eq(model.values()));
        assert_eq!(map.iter().len(), model.len());
    }
}

fn org() -> Organization {
    Organization {
        id: id(1000),
        display_name: "Org".to_owned(),
        create_time: 0,
        update_time: 0,
        rev: 1,
    }
}

fn created(e: Entity) -> Change {
    Change {
        action: "created".to_owned(),
        target: String::new(),
        before: None,
        after: Some(e),
        affected_users: Vec::new(),
    }
}

#[test]
fn applying_and_undoing_changes_leaves_no_empty_index_entry() {
    let mut st = OrgState::new(org());
    let user = id(7);
    let p = Principal::User(user);
    let changes = vec![
        created(Entity::Assignment(assignment(
            ScopeKey::Organization,
            "developer",
            1,
        ))),
        created(Entity::Assignment(assignment(
            ScopeKey::App(id(1)),
            "custom",
            2,
        ))),
        created(Entity::EndUserGrant(EndUserGrant {
            user,
            end_user_role: id(2),
            app: id(1),
            stage: "production".to_owned(),
        })),
        created(Entity::GroupMember(GroupMember::assigned(id(3), user))),
        created(Entity::GroupMember(GroupMember::assigned(id(4), user))),
    ];
    for c in &changes {
        st.apply(c);
    }
    let held = &st.assignments[&p];
    assert_eq!(held.len(), 2);
    assert_eq!(held.get(&ScopeKey::Organization).unwrap().role, "developer");
    assert_eq!(held.get(&ScopeKey::App(id(1))).unwrap().role, "custom");
    assert!(st.role_holders["custom"].contains(&(p, ScopeKey::App(id(1)))));
    assert!(st.is_member(user));
    assert!(st.end_user_grants[&user].contains(&(id(2), "production".to_owned())));
    assert!(
        st.user_groups[&user]
            .iter()
            .eq([id(3), id(4)].iter().collect::<BTreeSet<_>>())
    );
    assert!(st.group_members[&id(3)].contains(&user));

    // Changing the role at a scope replaces the assignment and moves the holder.
    st.apply(&Change {
        action: "changed".to_owned(),
        target: String::new(),
        before: Some(Entity::Assignment(assignment(
            ScopeKey::Organization,
            "developer",
            1,
        ))),
        after: Some(Entity::Assignment(assignment(
            ScopeKey::Organization,
            "custom",
            3,
        ))),
        affected_users: Vec::new(),
    });
    assert_eq!(st.assignments[&p].len(), 2);
    assert_eq!(
        st.assignments[&p]
            .get(&ScopeKey::Organization)
            .unwrap()
            .create_time,
        3
    );
    assert!(!st.role_holders.contains_key("developer"));
    assert_eq!(st.role_holders["custom"].len(), 2);
    st.apply(
        &created(Entity::Assignment(assignment(
            ScopeKey::Organization,
            "custom",
            3,
        )))
        .inverse(),
    );

    for c in changes.iter().rev() {
        st.apply(&c.inverse());
    }
    assert!(st.assignments.is_empty());
    assert!(st.role_holders.is_empty());
    assert!(st.end_user_grants.is_empty());
    assert!(st.user_groups.is_empty());
    assert!(st.group_members.is_empty());
    assert!(!st.is_member(user));
    assert!(!st.is_end_user(user));
}

#[test]
fn the_boundary_index_follows_the_phase_of_each_time_bound_grant() {
    let mut st = OrgState::new(org());
    let p = Principal::User(id(7));
    let scope = ScopeKey::App(id(1));
    let timed = |phase| Assignment {
        period: Some(GrantPeriod {
            start: Some(10),
            end: Some(20),
        }),
        phase,
        ..assignment(scope, "developer", 1)
    };
    let moved = |from, to| Change {
        action: "moved".to_owned(),
        target: String::new(),
        before: Some(Entity::Assignment(timed(from))),
        after: Some(Entity::Assignment(timed(to))),
        affected_users: Vec::new(),
    };
    // A permanent grant has no boundary.
    st.apply(&created(Entity::Assignment(assignment(
        ScopeKey::Organization,
        "developer",
        1,
    ))));
    assert!(st.grant_boundaries.is_empty());
    let scheduled = created(Entity::Assignment(timed(GrantPhase::Scheduled)));
    st.apply(&scheduled);
    assert!(st.grant_boundaries.iter().eq([&(10, p, scope)]));
    st.apply(&moved(GrantPhase::Scheduled, GrantPhase::Active));
    assert!(st.grant_boundaries.iter().eq([&(20, p, scope)]));
    st.apply(&moved(GrantPhase::Active, GrantPhase::Expired));
    assert!(st.grant_boundaries.is_empty());
    // Undone in reverse, the index comes back as it was.
    st.apply(&moved(GrantPhase::Active, GrantPhase::Expired).inverse());
    st.apply(&moved(GrantPhase::Scheduled, GrantPhase::Active).inverse());
    assert!(st.grant_boundaries.iter().eq([&(10, p, scope)]));
    st.apply(&scheduled.inverse());
    assert!(st.grant_boundaries.is_empty());
}

fn user(n: u64, email: Option<&str>) -> User {
    User {
        id: id(n),
        email: email.map(|e| Email::parse(e).unwrap()),
        display_name: String::new(),
        state: UserState::Active,
        registered: true,
        create_time: 1,
        update_time: 1,
        rev: 1,
    }
}

#[test]
fn stored_users_load_with_or_without_an_email() {
    // A record as every version before optional emails wrote it.
    let old = r#"{"id":"00000000-0000-4000-8000-000000000001","email":"ada@x.example",
        "display_name":"Ada","state":"active","registered":true,"create_time":1,
        "update_time":2,"rev":3}"#;
    let u: User = serde_json::from_str(old).unwrap();
    assert_eq!(u.email_str(), "ada@x.example");
    assert_eq!(
        serde_json::from_str::<User>(&serde_json::to_string(&u).unwrap()).unwrap(),
        u
    );
    // Without one: no field is written, and that reads back as none.
    let none = user(2, None);
    let json = serde_json::to_value(Entity::User(none.clone())).unwrap();
    assert!(!json.to_string().contains("email"), "{json}");
    assert_eq!(
        serde_json::from_value::<Entity>(json).unwrap(),
        Entity::User(none)
    );
    // An empty or invalid address is not a record of ours.
    let bad = old.replace("ada@x.example", "");
    assert!(serde_json::from_str::<User>(&bad).is_err());
}

#[test]
fn users_page_in_email_then_id_order_with_the_empty_emails_first() {
    let mut st = OrgState::new(org());
    let users = [
        user(1, Some("b@x.example")),
        user(2, None),
        user(3, Some("a@x.example")),
        user(4, None),
        user(5, None),
    ];
    for u in &users {
        st.apply(&created(Entity::User(u.clone())));
    }
    let mut without: Vec<Uuid> = [id(2), id(4), id(5)].into();
    without.sort();
    let mut order = without.clone();
    order.extend([id(3), id(1)]);
    let ids = |after: Option<(&str, Uuid)>, prefix: &str| -> Vec<Uuid> {
        st.users_in_email_order(prefix, after)
            .map(|u| u.id)
            .collect()
    };
    assert_eq!(ids(None, ""), order);
    for (k, u) in order.iter().enumerate() {
        let row = st.users[u].email_str();
        assert_eq!(ids(Some((row, *u)), ""), order[k + 1..], "after row {k}");
    }
    assert_eq!(ids(None, "a"), [id(3)]);
    assert_eq!(ids(Some(("", without[2])), "b"), [id(1)]);
    assert_eq!(ids(Some(("a@x.example", id(3))), "a"), Vec::<Uuid>::new());
    // Removing users takes them out of either index.
    st.apply(&Change {
        before: Some(Entity::User(users[1].clone())),
        after: None,
        ..created(Entity::User(users[0].clone()))
    });
    assert!(!st.users_without_email.contains(&id(2)));
    assert_eq!(st.users_by_email.len(), 2);
}
