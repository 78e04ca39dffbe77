//! Change events → `identity.v1.ChangeEvent`: the feed's typed contract with its consumers.
//!
//! An event's `before`/`after` is the stored [`Entity`] as the typed resource Get and List
//! return (`identity.v1.Resource`), built with the same encodings (`super`). The fields a Get
//! derives from other resources at read time (a user's facets, a role's assignment count, a
//! group's roles, apps and member count) stay unset: an event records one entity as it
//! committed. The match over [`Entity`] is exhaustive on purpose: a new kind of entity does not
//! compile until the feed can carry it.

use shared::proto::identity::v1 as pb;
use shared::proto::identity::v1::resource::Kind;
use uuid::Uuid;

use super::ts;
use crate::core::EventRecord;
use crate::domain::model::{Entity, GroupMember, GroupRole, Invitation};
use crate::domain::names::fmt;

/// Change event.
pub fn event(e: &EventRecord) -> pb::ChangeEvent {
    pb::ChangeEvent {
        organization: fmt::org(e.org),
        sequence: i64::try_from(e.seq).unwrap_or(i64::MAX),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        before: e.before.as_ref().map(|x| resource(e.org, x)),
        after: e.after.as_ref().map(|x| resource(e.org, x)),
        create_time: ts(e.time),
        request_id: e.request_id.clone().unwrap_or_default(),
        affected_users: e
            .affected_users
            .iter()
            .map(|u| fmt::user(e.org, *u))
            .collect(),
    }
}

/// One entity of organization `org` as the typed resource of a change event.
fn resource(org: Uuid, e: &Entity) -> pb::Resource {
    let kind = match e {
        Entity::Organization(o) => Kind::Organization(super::organization(o)),
        Entity::Stage(s) => Kind::Stage(super::stage(org, s)),
        Entity::App(a) => Kind::App(super::app(org, a)),
        Entity::EndUserRole(r) => Kind::EndUserRole(super::end_user_role(org, r)),
        Entity::User(u) => Kind::User(super::user_fields(org, u)),
        Entity::Invitation(i) => Kind::Invitation(invitation(org, i)),
        Entity::Role(r) => Kind::Role(super::role_fields(org, r)),
        Entity::Assignment(a) => Kind::RoleAssignment(super::assignment(org, a)),
        Entity::EndUserGrant(g) => Kind::EndUserRoleGrant(super::end_user_grant(org, g)),
        Entity::Group(g) => Kind::Group(super::group_fields(org, g)),
        Entity::GroupMember(m) => Kind::GroupMember(group_member(org, m)),
        Entity::GroupRole(r) => Kind::GroupRole(group_role(org, r)),
        Entity::ServiceAccount(s) => Kind::ServiceAccount(super::service_account(org, s)),
        Entity::IdentityProvider(p) => Kind::IdentityProvider(super::identity_provider(org, p)),
        Entity::ProviderProfile(p) => Kind::ProviderProfile(super::provider_profile(org, p)),
    };
    pb::Resource { kind: Some(kind) }
}

/// Invitation (its secret is not part of the entity).
fn invitation(org: Uuid, i: &Invitation) -> pb::Invitation {
    pb::Invitation {
        user: fmt::user(org, i.user),
        create_time: ts(i.create_time),
        expire_time: ts(i.expire_time),
    }
}

/// Group membership, with its types.
pub fn group_member(org: Uuid, m: &GroupMember) -> pb::GroupMember {
    let mut types = Vec::new();
    if m.assigned {
        types.push(pb::MembershipType::Assigned.into());
    }
    if m.mapped {
        types.push(pb::MembershipType::Mapped.into());
    }
    pb::GroupMember {
        group: fmt::group(org, m.group),
        user: fmt::user(org, m.user),
        types,
    }
}

/// An end-user role of a group.
fn group_role(org: Uuid, r: &GroupRole) -> pb::GroupRole {
    pb::GroupRole {
        group: fmt::group(org, r.group),
        end_user_role: fmt::end_user_role(org, r.app, r.end_user_role),
    }
}
