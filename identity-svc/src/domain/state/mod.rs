//! The in-memory state of one organization: every entity plus the indexes that permission
//! checks, reverse lookups and validation need.
//!
//! It is built from the store at start-up and changed only by applying committed [`Change`]s,
//! so several replicas that apply the same change events end in the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::model::{
    App, Change, EndUserRole, Entity, Group, IdentityProvider, Invitation, Micros, Organization,
    Principal, ProviderProfile, Role, ScopeKey, ServiceAccount, Stage, User,
};

mod collections;
mod queries;

pub use collections::{ScopedAssignments, ScopedIter, SortedSet};
pub use queries::EndUserRoleHolding;

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
    /// User ids by normalized email, sorted (users without an email are not in it).
    pub users_by_email: BTreeMap<String, Uuid>,
    /// The users without an email, sorted by id.
    pub users_without_email: BTreeSet<Uuid>,
    /// Open invitations by user.
    pub invitations: HashMap<Uuid, Invitation>,
    /// Roles by id.
    pub roles: HashMap<String, Role>,
    /// Assignments by principal, then scope.
    pub assignments: BTreeMap<Principal, ScopedAssignments>,
    /// Who holds each role, at which scope.
    pub role_holders: HashMap<String, BTreeSet<(Principal, ScopeKey)>>,
    /// The grants with a boundary ahead (the start of a SCHEDULED grant, the end of an ACTIVE
    /// one), by when it is due: what the boundary task looks at.
    pub grant_boundaries: BTreeSet<(Micros, Principal, ScopeKey)>,
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
    /// External identity providers by id.
    pub identity_providers: HashMap<Uuid, IdentityProvider>,
    /// Provider profiles by (provider, subject).
    pub provider_profiles: HashMap<(Uuid, String), ProviderProfile>,
    /// The memberships that are MAPPED, by (group, user): whether they are also ASSIGNED.
    /// Every other membership of `group_members` is ASSIGNED only.
    pub mapped_members: HashMap<(Uuid, Uuid), bool>,
    /// The (provider, subject) of each user's provider profiles.
    pub user_provider_profiles: HashMap<Uuid, SortedSet<(Uuid, String)>>,
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
            users_without_email: BTreeSet::new(),
            invitations: HashMap::new(),
            roles: HashMap::new(),
            assignments: BTreeMap::new(),
            role_holders: HashMap::new(),
            grant_boundaries: BTreeSet::new(),
            end_user_grants: HashMap::new(),
            groups: HashMap::new(),
            group_members: HashMap::new(),
            user_groups: HashMap::new(),
            group_roles: HashMap::new(),
            service_accounts: HashMap::new(),
            identity_providers: HashMap::new(),
            provider_profiles: HashMap::new(),
            user_provider_profiles: HashMap::new(),
            mapped_members: HashMap::new(),
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
                if let Some(e) = &u.email {
                    self.users_by_email.insert(e.as_str().to_owned(), u.id);
                } else {
                    self.users_without_email.insert(u.id);
                }
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
                if let Some(due) = a.next_boundary() {
                    self.grant_boundaries.insert((due, a.principal, a.scope));
                }
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
                if m.mapped {
                    self.mapped_members.insert((m.group, m.user), m.assigned);
                }
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
            Entity::IdentityProvider(p) => {
                self.identity_providers.insert(p.id, p);
            }
            Entity::ProviderProfile(p) => {
                let key = (p.provider, p.subject.clone());
                self.user_provider_profiles
                    .entry(p.user)
                    .or_default()
                    .insert(key.clone());
                self.provider_profiles.insert(key, p);
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
                // No email is `""`, which `users_by_email` never holds.
                self.users_by_email.remove(u.email_str());
                self.users_without_email.remove(&u.id);
                self.users.remove(&u.id);
            }
            Entity::Invitation(i) => {
                self.invitations.remove(&i.user);
            }
            Entity::Role(r) => {
                self.roles.remove(&r.id);
            }
            Entity::Assignment(a) => {
                if let Some(due) = a.next_boundary() {
                    self.grant_boundaries.remove(&(due, a.principal, a.scope));
                }
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
                self.mapped_members.remove(&(m.group, m.user));
            }
            Entity::GroupRole(r) => {
                drop_from(&mut self.group_roles, &r.group, &r.end_user_role);
            }
            Entity::ServiceAccount(s) => {
                self.service_accounts.remove(&s.id);
            }
            Entity::IdentityProvider(p) => {
                self.identity_providers.remove(&p.id);
            }
            Entity::ProviderProfile(p) => {
                let key = (p.provider, p.subject.clone());
                drop_from(&mut self.user_provider_profiles, &p.user, &key);
                self.provider_profiles.remove(&key);
            }
        }
    }
}

impl OrgState {
    /// The membership of `user` in `group`, with its types.
    pub fn membership(&self, group: Uuid, user: Uuid) -> Option<super::model::GroupMember> {
        let member = self.group_members.get(&group)?.contains(&user);
        member.then(|| super::model::GroupMember {
            group,
            user,
            assigned: self
                .mapped_members
                .get(&(group, user))
                .copied()
                .unwrap_or(true),
            mapped: self.mapped_members.contains_key(&(group, user)),
        })
    }
}

#[cfg(test)]
mod tests;
