//! Reading identity: the snapshot and the change events, into the mapping's [`Mirror`].
//!
//! Both speak identity's typed resources only (`identity.v1.User`, `Role`, `RoleAssignment`):
//! the snapshot lists them, and a change event carries the changed one as `before`/`after`
//! (`identity.v1.Resource`). The sync reads the three kinds the mapping needs and ignores the
//! rest. Nothing here knows how identity stores its data.

use std::collections::BTreeSet;

use shared::proto::identity::v1 as pb;
use shared::proto::identity::v1::resource::Kind;
use shared::text::Lines;
use uuid::Uuid;

use crate::domain::mapping::{Mirror, MirrorUser, RoleKind, UserState};
use crate::domain::model::Email;

#[cfg(test)]
mod tests;

/// The id at the end of a resource name.
fn last_id(name: &str) -> Option<&str> {
    name.rsplit('/').next()
}

fn role_kind(id: &str, permissions: Vec<String>) -> RoleKind {
    match id {
        "administrator" => RoleKind::Administrator,
        "developer" => RoleKind::Developer,
        _ => RoleKind::Custom(permissions),
    }
}

/// The id of a user.
fn user_id(u: &pb::User) -> Option<Uuid> {
    last_id(&u.name).and_then(|x| Uuid::parse_str(x).ok())
}

/// What the mapping reads of a user; `None` for a user without a valid name or email.
///
/// A user with an empty email (an end-user profile an external provider created, identity's
/// `User.email`) is left out of the mirror like one whose email does not parse: it can hold no
/// organization role, so it has no portal record, and the snapshot or event carrying it is
/// applied like any other (the sync neither reports an error nor stops). Once identity gives
/// the user an email (`user.updated`), the event's `after` puts them in the mirror.
fn mirror_user(u: &pb::User) -> Option<(Uuid, MirrorUser)> {
    let (Some(id), Ok(email)) = (user_id(u), Email::parse(&u.email)) else {
        return None;
    };
    let state = match u.state() {
        pb::UserState::Inactive => UserState::Inactive,
        pb::UserState::Invited => UserState::Invited,
        _ => UserState::Active,
    };
    Some((
        id,
        MirrorUser {
            email,
            state,
            // Identity may hold names stored before the text policy: NUL must not reach
            // this service's database (PostgreSQL refuses it and the sync would stop).
            display_name: shared::text::without_control(&u.display_name, Lines::Single)
                .into_owned(),
        },
    ))
}

/// A role's id and what the mapping needs of it.
fn mirror_role(r: &pb::Role) -> Option<(&str, RoleKind)> {
    let id = last_id(&r.name)?;
    let permissions = r.grants.iter().map(|g| g.permission.clone()).collect();
    Some((id, role_kind(id, permissions)))
}

/// The user and role id of an organization-scope assignment to a user that is in effect;
/// `None` for any other assignment (app scope, service account, a time-bound grant outside its
/// period).
///
/// A time-bound grant counts while its committed state is ACTIVE: identity's boundary events
/// (`role_assignment.became_effective`, `.became_ineffective`) move it, so records appear and
/// disappear as they arrive, without this service reading the clock. UNSPECIFIED is what an
/// identity from before grant periods sends: every grant was in effect then.
fn org_assignment(a: &pb::RoleAssignment) -> Option<(Uuid, String)> {
    let in_effect = matches!(
        a.state(),
        pb::GrantState::Active | pb::GrantState::Unspecified
    );
    let org_scope = in_effect
        && matches!(
            a.scope.as_ref().and_then(|s| s.kind.as_ref()),
            Some(pb::scope::Kind::Organization(true))
        );
    let user = a
        .principal
        .contains("/users/")
        .then(|| last_id(&a.principal))
        .flatten()
        .and_then(|x| Uuid::parse_str(x).ok());
    match (org_scope, user, last_id(&a.role)) {
        (true, Some(user), Some(role)) => Some((user, role.to_owned())),
        _ => None,
    }
}

/// Builds the mirror from a snapshot.
pub fn mirror_from_snapshot(s: &pb::Snapshot) -> Mirror {
    let mut m = Mirror::default();
    m.users.extend(s.users.iter().filter_map(mirror_user));
    for (id, kind) in s.roles.iter().filter_map(mirror_role) {
        m.roles.insert(id.to_owned(), kind);
    }
    m.org_roles
        .extend(s.role_assignments.iter().filter_map(org_assignment));
    m
}

/// The resource kind an event carries as `before` or `after`, if any.
fn kind(r: Option<&pb::Resource>) -> Option<&Kind> {
    r.and_then(|r| r.kind.as_ref())
}

/// Removes what the mirror knew of a resource as it was before a change.
fn forget(m: &mut Mirror, before: &Kind, affected: &mut BTreeSet<Uuid>) {
    match before {
        Kind::User(u) => {
            if let Some(id) = user_id(u) {
                m.users.remove(&id);
                affected.insert(id);
            }
        }
        Kind::Role(r) => {
            if let Some(id) = last_id(&r.name) {
                m.roles.remove(id);
                affected.extend(m.holders(id));
            }
        }
        Kind::RoleAssignment(a) => {
            if let Some((user, _)) = org_assignment(a) {
                m.org_roles.remove(&user);
                affected.insert(user);
            }
        }
        _ => {}
    }
}

/// Records a resource as it is after a change.
fn learn(m: &mut Mirror, after: &Kind, affected: &mut BTreeSet<Uuid>) {
    match after {
        Kind::User(u) => {
            if let Some((id, user)) = mirror_user(u) {
                m.users.insert(id, user);
                affected.insert(id);
            }
        }
        Kind::Role(r) => {
            if let Some((id, kind)) = mirror_role(r) {
                m.roles.insert(id.to_owned(), kind);
                affected.extend(m.holders(id));
            }
        }
        Kind::RoleAssignment(a) => {
            if let Some((user, role)) = org_assignment(a) {
                m.org_roles.insert(user, role);
                affected.insert(user);
            }
        }
        _ => {}
    }
}

/// Applies one change event to the mirror; returns the identity users whose record may change.
pub fn apply_event(m: &mut Mirror, e: &pb::ChangeEvent) -> BTreeSet<Uuid> {
    let mut affected = BTreeSet::new();
    if let Some(before) = kind(e.before.as_ref()) {
        forget(m, before, &mut affected);
    }
    if let Some(after) = kind(e.after.as_ref()) {
        learn(m, after, &mut affected);
    }
    affected
}
