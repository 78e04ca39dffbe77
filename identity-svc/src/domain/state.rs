//! The in-memory state of one organization: every entity plus the indexes that permission
//! checks, reverse lookups and validation need.
//!
//! It is built from the store at start-up and changed only by applying committed [`Change`]s,
//! so several replicas that apply the same change events end in the same state.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::model::{
    App, Assignment, Change, EndUserRole, Entity, Group, Invitation, Organization, Principal, Role,
    ScopeKey, ServiceAccount, Stage, User, UserState,
};

/// Everything of one organization.
#[derive(Debug, Clone)]
pub struct OrgState {
    /// The organization.
    pub org: Organization,
    /// Sequence number of the last applied change event.
    pub seq: u64,
    /// Stages by key.
    pub stages: BTreeMap<String, Stage>,
    /// Apps by id.
    pub apps: HashMap<Uuid, App>,
    /// End-user roles by id.
    pub end_user_roles: HashMap<Uuid, EndUserRole>,
    /// Users by id.
    pub users: HashMap<Uuid, User>,
    /// User ids by normalized email, sorted.
    pub users_by_email: BTreeMap<String, Uuid>,
    /// Open invitations by user.
    pub invitations: HashMap<Uuid, Invitation>,
    /// Roles by id.
    pub roles: HashMap<String, Role>,
    /// Assignments by principal, then scope.
    pub assignments: BTreeMap<Principal, ScopedAssignments>,
    /// Who holds each role, at which scope.
    pub role_holders: HashMap<String, BTreeSet<(Principal, ScopeKey)>>,
    /// Direct end-user grants by user: (end-user role, stage).
    pub end_user_grants: HashMap<Uuid, SortedSet<(Uuid, String)>>,
    /// Groups by id.
    pub groups: HashMap<Uuid, Group>,
    /// Members by group.
    pub group_members: HashMap<Uuid, SortedSet<Uuid>>,
    /// Groups by member.
    pub user_groups: HashMap<Uuid, SortedSet<Uuid>>,
    /// End-user roles by group.
    pub group_roles: HashMap<Uuid, SortedSet<Uuid>>,
    /// Service accounts by id.
    pub service_accounts: HashMap<Uuid, ServiceAccount>,
}

impl OrgState {
    /// An empty state for `org` at sequence 0.
    pub fn new(org: Organization) -> Self {
        Self {
            org,
            seq: 0,
            stages: BTreeMap::new(),
            apps: HashMap::new(),
            end_user_roles: HashMap::new(),
            users: HashMap::new(),
            users_by_email: BTreeMap::new(),
            invitations: HashMap::new(),
            roles: HashMap::new(),
            assignments: BTreeMap::new(),
            role_holders: HashMap::new(),
            end_user_grants: HashMap::new(),
            groups: HashMap::new(),
            group_members: HashMap::new(),
            user_groups: HashMap::new(),
            group_roles: HashMap::new(),
            service_accounts: HashMap::new(),
        }
    }

    /// Applies one change (not its sequence number).
    pub fn apply(&mut self, change: &Change) {
        if let Some(before) = &change.before {
            self.remove(before);
        }
        if let Some(after) = &change.after {
            self.insert(after.clone());
        }
    }

    /// Loads one stored entity (start-up).
    pub fn insert(&mut self, e: Entity) {
        match e {
            Entity::Organization(o) => self.org = o,
            Entity::Stage(s) => {
                self.stages.insert(s.key.clone(), s);
            }
            Entity::App(a) => {
                self.apps.insert(a.id, a);
            }
            Entity::EndUserRole(r) => {
                self.end_user_roles.insert(r.id, r);
            }
            Entity::User(u) => {
                self.users_by_email
                    .insert(u.email.as_str().to_owned(), u.id);
                self.users.insert(u.id, u);
            }
            Entity::Invitation(i) => {
                self.invitations.insert(i.user, i);
            }
            Entity::Role(r) => {
                self.roles.insert(r.id.clone(), r);
            }
            Entity::Assignment(a) => {
                self.role_holders
                    .entry(a.role.clone())
                    .or_default()
                    .insert((a.principal, a.scope));
                self.assignments.entry(a.principal).or_default().insert(a);
            }
            Entity::EndUserGrant(g) => {
                self.end_user_grants
                    .entry(g.user)
                    .or_default()
                    .insert((g.end_user_role, g.stage));
            }
            Entity::Group(g) => {
                self.groups.insert(g.id, g);
            }
            Entity::GroupMember(m) => {
                self.group_members
                    .entry(m.group)
                    .or_default()
                    .insert(m.user);
                self.user_groups.entry(m.user).or_default().insert(m.group);
            }
            Entity::GroupRole(r) => {
                self.group_roles
                    .entry(r.group)
                    .or_default()
                    .insert(r.end_user_role);
            }
            Entity::ServiceAccount(s) => {
                self.service_accounts.insert(s.id, s);
            }
        }
    }

    fn remove(&mut self, e: &Entity) {
        fn drop_from<K: std::hash::Hash + Eq, V: Ord>(
            map: &mut HashMap<K, SortedSet<V>>,
            key: &K,
            value: &V,
        ) {
            if let Some(set) = map.get_mut(key) {
                set.remove(value);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        }
        match e {
            Entity::Organization(_) => {}
            Entity::Stage(s) => {
                self.stages.remove(&s.key);
            }
            Entity::App(a) => {
                self.apps.remove(&a.id);
            }
            Entity::EndUserRole(r) => {
                self.end_user_roles.remove(&r.id);
            }
            Entity::User(u) => {
                self.users_by_email.remove(u.email.as_str());
                self.users.remove(&u.id);
            }
            Entity::Invitation(i) => {
                self.invitations.remove(&i.user);
            }
            Entity::Role(r) => {
                self.roles.remove(&r.id);
            }
            Entity::Assignment(a) => {
                if let Some(set) = self.role_holders.get_mut(&a.role) {
                    set.remove(&(a.principal, a.scope));
                    if set.is_empty() {
                        self.role_holders.remove(&a.role);
                    }
                }
                if let Some(m) = self.assignments.get_mut(&a.principal) {
                    m.remove(&a.scope);
                    if m.is_empty() {
                        self.assignments.remove(&a.principal);
                    }
                }
            }
            Entity::EndUserGrant(g) => {
                drop_from(
                    &mut self.end_user_grants,
                    &g.user,
                    &(g.end_user_role, g.stage.clone()),
                );
            }
            Entity::Group(g) => {
                self.groups.remove(&g.id);
            }
            Entity::GroupMember(m) => {
                drop_from(&mut self.group_members, &m.group, &m.user);
                drop_from(&mut self.user_groups, &m.user, &m.group);
            }
            Entity::GroupRole(r) => {
                drop_from(&mut self.group_roles, &r.group, &r.end_user_role);
            }
            Entity::ServiceAccount(s) => {
                self.service_accounts.remove(&s.id);
            }
        }
    }

    /// Stages in order.
    pub fn ordered_stages(&self) -> Vec<&Stage> {
        let mut v: Vec<&Stage> = self.stages.values().collect();
        v.sort_by_key(|s| s.order);
        v
    }

    /// Whether the user holds an organization role at any scope.
    pub fn is_member(&self, user: Uuid) -> bool {
        self.assignments.contains_key(&Principal::User(user))
    }

    /// Whether the user holds an end-user role directly or belongs to a group (decision: group
    /// membership alone makes a user an end-user).
    pub fn is_end_user(&self, user: Uuid) -> bool {
        self.end_user_grants.contains_key(&user) || self.user_groups.contains_key(&user)
    }

    /// Whether the user is an end-user in `stage`: a direct grant there or a group of it.
    pub fn is_end_user_in(&self, user: Uuid, stage: &str) -> bool {
        self.end_user_grants
            .get(&user)
            .is_some_and(|g| g.iter().any(|(_, s)| s == stage))
            || self.user_groups.get(&user).is_some_and(|gs| {
                gs.iter()
                    .any(|g| self.groups.get(g).is_some_and(|g| g.stage == stage))
            })
    }

    /// Whether a principal exists and may act (users must be ACTIVE).
    pub fn is_active(&self, p: Principal) -> bool {
        match p {
            Principal::User(u) => self
                .users
                .get(&u)
                .is_some_and(|u| u.state == UserState::Active),
            Principal::ServiceAccount(s) => self.service_accounts.contains_key(&s),
        }
    }

    /// Whether a principal exists.
    pub fn principal_exists(&self, p: Principal) -> bool {
        match p {
            Principal::User(u) => self.users.contains_key(&u),
            Principal::ServiceAccount(s) => self.service_accounts.contains_key(&s),
        }
    }

    /// Every user affected by a change to role `role` (its user holders).
    pub fn role_user_holders(&self, role: &str) -> Vec<Uuid> {
        self.role_holders
            .get(role)
            .map(|s| {
                let set: BTreeSet<Uuid> = s
                    .iter()
                    .filter_map(|(p, _)| match p {
                        Principal::User(u) => Some(*u),
                        Principal::ServiceAccount(_) => None,
                    })
                    .collect();
                set.into_iter().collect()
            })
            .unwrap_or_default()
    }
}

/// Spare capacity a [`SortedSet`] or [`ScopedAssignments`] adds when it grows: none while
/// small (most sets of the state hold one to three items and stay exact), an eighth of the
/// length once larger, so that filling a large group one member at a time stays linear.
fn grow_for_one<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 8).max(1));
    }
}

/// Gives back capacity after a removal once more than a quarter of the length is spare.
fn shrink_after_remove<T>(v: &mut Vec<T>) {
    if v.capacity() - v.len() > v.len() / 4 + 1 {
        v.shrink_to_fit();
    }
}

/// A set kept as a sorted vector without duplicates.
///
/// Most sets of the state (the groups of a user, the roles of a group, a user's direct
/// end-user grants) hold a handful of items; a `BTreeSet` allocates a whole B-tree leaf (eleven
/// slots, ~200 bytes for `Uuid`s) for even one item, this allocates exactly what it holds.
/// Lookups are binary searches; an insertion or a removal moves the items after it, which for a
/// group of 100k members is a `memmove` of 1.6 MB at worst.
///
/// The API is the subset of `BTreeSet`'s the callers use, with the same meaning and iteration
/// order (ascending).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortedSet<T>(Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    /// An empty set (no allocation).
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position<Q>(&self, value: &Q) -> Result<usize, usize>
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0.binary_search_by(|x| x.borrow().cmp(value))
    }

    /// Whether `value` is in the set.
    pub fn contains<Q>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.position(value).is_ok()
    }

    /// Adds `value`; false when it was already there (the set is unchanged then).
    pub fn insert(&mut self, value: T) -> bool {
        match self.position(&value) {
            Ok(_) => false,
            Err(i) => {
                grow_for_one(&mut self.0);
                self.0.insert(i, value);
                true
            }
        }
    }

    /// Removes `value`; false when it was not there.
    pub fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.position(value) {
            Ok(i) => {
                self.0.remove(i);
                shrink_after_remove(&mut self.0);
                true
            }
            Err(_) => false,
        }
    }

    /// The items in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// The items in ascending order, as a slice.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v: Vec<T> = iter.into_iter().collect();
        v.sort();
        v.dedup();
        v.shrink_to_fit();
        Self(v)
    }
}

/// The assignments of one principal by scope: a map `ScopeKey → Assignment` kept as a vector
/// sorted by scope (the key is the assignment's own `scope`, not stored twice).
///
/// Almost every principal holds one to three assignments; a `BTreeMap` allocated a whole leaf
/// (~1.1 KB with these types) for each of them. The API is the subset of `BTreeMap`'s the
/// callers use: `get`, `contains_key`, `iter`/`&x` yielding `(&ScopeKey, &Assignment)` in scope
/// order, `keys`, `values`, `len`, `is_empty`; `insert` takes the assignment and replaces the
/// one with the same scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopedAssignments(Vec<Assignment>);

impl ScopedAssignments {
    /// No assignment (no allocation).
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Number of assignments.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no assignment.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, scope: &ScopeKey) -> Result<usize, usize> {
        self.0.binary_search_by(|a| a.scope.cmp(scope))
    }

    /// The assignment at `scope`.
    pub fn get(&self, scope: &ScopeKey) -> Option<&Assignment> {
        self.position(scope).ok().map(|i| &self.0[i])
    }

    /// Whether there is an assignment at `scope`.
    pub fn contains_key(&self, scope: &ScopeKey) -> bool {
        self.position(scope).is_ok()
    }

    /// Adds `a` at its scope; returns the assignment it replaced there.
    pub fn insert(&mut self, a: Assignment) -> Option<Assignment> {
        match self.position(&a.scope) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i], a)),
            Err(i) => {
                grow_for_one(&mut self.0);
                self.0.insert(i, a);
                None
            }
        }
    }

    /// Removes and returns the assignment at `scope`.
    pub fn remove(&mut self, scope: &ScopeKey) -> Option<Assignment> {
        let i = self.position(scope).ok()?;
        let a = self.0.remove(i);
        shrink_after_remove(&mut self.0);
        Some(a)
    }

    /// `(scope, assignment)` pairs in scope order.
    pub fn iter(&self) -> ScopedIter<'_> {
        ScopedIter(self.0.iter())
    }

    /// Scopes in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &ScopeKey> + ExactSizeIterator {
        self.0.iter().map(|a| &a.scope)
    }

    /// Assignments in scope order.
    pub fn values(&self) -> std::slice::Iter<'_, Assignment> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a ScopedAssignments {
    type Item = (&'a ScopeKey, &'a Assignment);
    type IntoIter = ScopedIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over `(&ScopeKey, &Assignment)` pairs of [`ScopedAssignments`], in scope order.
#[derive(Debug, Clone)]
pub struct ScopedIter<'a>(std::slice::Iter<'a, Assignment>);

impl<'a> Iterator for ScopedIter<'a> {
    type Item = (&'a ScopeKey, &'a Assignment);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|a| (&a.scope, a))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for ScopedIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|a| (&a.scope, a))
    }
}

impl ExactSizeIterator for ScopedIter<'_> {}

impl std::iter::FusedIterator for ScopedIter<'_> {}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use uuid::Uuid;

    use super::{OrgState, ScopedAssignments, SortedSet};
    use crate::domain::model::{
        Assignment, Change, EndUserGrant, Entity, GroupMember, Organization, Principal, ScopeKey,
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
                let role = ["administrator", "developer", "custom"]
                    [usize::try_from(rng.below(3)).unwrap()];
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
            created(Entity::GroupMember(GroupMember { group: id(3), user })),
            created(Entity::GroupMember(GroupMember { group: id(4), user })),
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
}
