//! Reading identity: the snapshot and the change events, into the mapping's [`Mirror`].
//!
//! Change events carry the changed resource as `before`/`after` documents tagged by `kind`
//! (`user`, `role`, `assignment`, ...); the sync reads the three kinds the mapping needs and
//! ignores the rest.

use std::collections::BTreeSet;

use shared::proto::identity::v1 as pb;
use uuid::Uuid;

use crate::domain::mapping::{Mirror, MirrorUser, RoleKind, UserState};
use crate::domain::model::Email;

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

/// Builds the mirror from a snapshot.
pub fn mirror_from_snapshot(s: &pb::Snapshot) -> Mirror {
    let mut m = Mirror::default();
    for u in &s.users {
        let (Some(id), Ok(email)) = (
            last_id(&u.name).and_then(|x| Uuid::parse_str(x).ok()),
            Email::parse(&u.email),
        ) else {
            continue;
        };
        let state = match u.state() {
            pb::UserState::Inactive => UserState::Inactive,
            pb::UserState::Invited => UserState::Invited,
            _ => UserState::Active,
        };
        m.users.insert(
            id,
            MirrorUser {
                email,
                state,
                display_name: u.display_name.clone(),
            },
        );
    }
    for r in &s.roles {
        if let Some(id) = last_id(&r.name) {
            m.roles.insert(
                id.to_owned(),
                role_kind(id, r.grants.iter().map(|g| g.permission.clone()).collect()),
            );
        }
    }
    for a in &s.role_assignments {
        let org_scope = matches!(
            a.scope.as_ref().and_then(|s| s.kind.as_ref()),
            Some(pb::scope::Kind::Organization(true))
        );
        let user = a
            .principal
            .contains("/users/")
            .then(|| last_id(&a.principal))
            .flatten()
            .and_then(|x| Uuid::parse_str(x).ok());
        if let (true, Some(user), Some(role)) = (org_scope, user, last_id(&a.role)) {
            m.org_roles.insert(user, role.to_owned());
        }
    }
    m
}

fn to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    )
}

fn value(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => serde_json::json!(n),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(value).collect()),
        Some(Kind::StructValue(s)) => to_json(s),
        Some(Kind::NullValue(_)) | None => serde_json::Value::Null,
    }
}

fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// The user an assignment document is about, if it is an organization-scope user assignment.
fn org_assignment(doc: &serde_json::Value) -> Option<(Uuid, String)> {
    let principal = doc.get("principal")?;
    let scope = doc.get("scope")?;
    if str_of(principal, "type")? != "user" || str_of(scope, "type")? != "organization" {
        return None;
    }
    Some((
        Uuid::parse_str(str_of(principal, "id")?).ok()?,
        str_of(doc, "role")?.to_owned(),
    ))
}

/// Applies one change event to the mirror; returns the identity users whose record may change.
pub fn apply_event(m: &mut Mirror, e: &pb::ChangeEvent) -> BTreeSet<Uuid> {
    let before = e.before.as_ref().map(to_json);
    let after = e.after.as_ref().map(to_json);
    let doc = after.as_ref().or(before.as_ref());
    let kind = doc.and_then(|d| str_of(d, "kind")).unwrap_or_default();
    let mut affected = BTreeSet::new();
    match kind {
        "user" => {
            if let Some(b) = &before
                && let Some(id) = str_of(b, "id").and_then(|x| Uuid::parse_str(x).ok())
            {
                m.users.remove(&id);
                affected.insert(id);
            }
            if let Some(a) = &after {
                let id = str_of(a, "id").and_then(|x| Uuid::parse_str(x).ok());
                let email = str_of(a, "email").and_then(|x| Email::parse(x).ok());
                let state = match str_of(a, "state") {
                    Some("inactive") => UserState::Inactive,
                    Some("invited") => UserState::Invited,
                    _ => UserState::Active,
                };
                let display_name = str_of(a, "display_name").unwrap_or_default().to_owned();
                if let (Some(id), Some(email)) = (id, email) {
                    m.users.insert(
                        id,
                        MirrorUser {
                            email,
                            state,
                            display_name,
                        },
                    );
                    affected.insert(id);
                }
            }
        }
        "role" => {
            if let Some(b) = &before
                && let Some(id) = str_of(b, "id")
            {
                m.roles.remove(id);
                affected.extend(m.holders(id));
            }
            if let Some(a) = &after
                && let Some(id) = str_of(a, "id")
            {
                let perms = a
                    .get("grants")
                    .and_then(serde_json::Value::as_array)
                    .map(|g| {
                        g.iter()
                            .filter_map(|x| str_of(x, "permission").map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                m.roles.insert(id.to_owned(), role_kind(id, perms));
                affected.extend(m.holders(id));
            }
        }
        "assignment" => {
            if let Some((user, _)) = before.as_ref().and_then(org_assignment) {
                m.org_roles.remove(&user);
                affected.insert(user);
            }
            if let Some((user, role)) = after.as_ref().and_then(org_assignment) {
                m.org_roles.insert(user, role);
                affected.insert(user);
            }
        }
        _ => {}
    }
    affected
}
