//! Decoding a Groups request: group, user and end-user role names of the caller's
//! organization (names of another organization are noted and answered NOT_FOUND after the
//! authorization check), the typed changes of a group's members and roles, and the page
//! tokens of the two lists.

use serde::{Deserialize, Serialize};
use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tonic::Status;
use uuid::Uuid;

use crate::domain::names;
use crate::error::Error;
use crate::grpc::to_status;

/// The id of a group name of organization `org`.
pub(super) fn group_id(v: &mut Violations, field: &str, org: Uuid, name: &str) -> Option<Uuid> {
    v.check(
        field,
        names::group(name)
            .filter(|(o, _)| *o == org)
            .map(|(_, g)| g)
            .ok_or("must be organizations/{organization}/groups/{group} of this organization"),
    )
}

/// Most claim mappings per group.
const MAPPINGS_MAX: usize = 20;

/// `group.claim_mappings`, each checked (the providers' existence is the rules').
pub(super) fn claim_mappings(
    v: &mut Violations,
    org: Uuid,
    raw: &[pb::ClaimMapping],
) -> Vec<crate::domain::model::ClaimMapping> {
    if raw.len() > MAPPINGS_MAX {
        v.add("group.claim_mappings", format!("at most {MAPPINGS_MAX}"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let f = |x: &str| format!("group.claim_mappings[{i}].{x}");
        let provider = v.check(
            &f("identity_provider"),
            names::identity_provider(&m.identity_provider)
                .filter(|(o, _)| *o == org)
                .map(|(_, p)| p)
                .ok_or("must be organizations/{organization}/identityProviders/{provider} of this organization"),
        );
        let claim = v.required_text(&f("claim"), &m.claim, 50);
        let value = v.required_text(&f("value"), &m.value, 256);
        let delimiter = v.optional_text(&f("value_delimiter"), &m.value_delimiter, 3);
        if let Some(provider) = provider {
            out.push(crate::domain::model::ClaimMapping {
                provider,
                claim,
                value,
                delimiter,
            });
        }
    }
    out
}

/// Names that parsed but belong to another organization: NOT_FOUND here (reported after the
/// authorization check, so they reveal nothing to a caller who may not act).
#[derive(Debug, Default)]
pub(super) struct Foreign(Option<String>);

impl Foreign {
    pub(super) fn note(&mut self, name: &str) {
        if self.0.is_none() {
            self.0 = Some(name.to_owned());
        }
    }

    pub(super) fn check(self) -> Result<(), Status> {
        match self.0 {
            Some(name) => Err(to_status(Error::NotFound(name))),
            None => Ok(()),
        }
    }
}

/// The user ids of `users` (a non-empty list of user names).
fn user_ids(v: &mut Violations, foreign: &mut Foreign, org: Uuid, users: &[String]) -> Vec<Uuid> {
    if users.is_empty() {
        v.add("users", "must name at least one user");
    }
    let mut out = Vec::with_capacity(users.len());
    for (i, name) in users.iter().enumerate() {
        match names::user(name) {
            Some((o, u)) if o == org => out.push(u),
            Some(_) => foreign.note(name),
            None => v.add(
                format!("users[{i}]"),
                "must be organizations/{organization}/users/{user}",
            ),
        }
    }
    out
}

/// A change of a group's members or end-user roles: the group, what is added or removed, and
/// the names of another organization among them.
#[derive(Debug)]
pub(super) struct GroupChange<T> {
    pub(super) group: Uuid,
    pub(super) items: Vec<T>,
    pub(super) foreign: Foreign,
}

/// AddGroupMembers and RemoveGroupMembers: the group and the user ids.
pub(super) fn members_change(
    v: &mut Violations,
    org: Uuid,
    group: &str,
    users: &[String],
) -> Option<GroupChange<Uuid>> {
    let mut foreign = Foreign::default();
    let group = group_id(v, "group", org, group);
    let items = user_ids(v, &mut foreign, org, users);
    Some(GroupChange {
        group: group?,
        items,
        foreign,
    })
}

/// AddGroupRoles: the group and `(app, role, stage)` per item (no stage: the group's).
pub(super) fn add_roles_change(
    v: &mut Violations,
    org: Uuid,
    r: &pb::AddGroupRolesRequest,
) -> Option<GroupChange<(Uuid, Uuid, Option<String>)>> {
    let mut foreign = Foreign::default();
    let group = group_id(v, "group", org, &r.group);
    if r.end_user_roles.is_empty() {
        v.add("end_user_roles", "must name at least one end-user role");
    }
    let mut items = Vec::new();
    for (i, item) in r.end_user_roles.iter().enumerate() {
        let role = end_user_role(
            v,
            &mut foreign,
            &format!("end_user_roles[{i}].end_user_role"),
            org,
            &item.end_user_role,
        );
        let stage = if item.stage.is_empty() {
            Some(None)
        } else {
            v.check(
                &format!("end_user_roles[{i}].stage"),
                names::stage(&item.stage)
                    .filter(|(o, _)| *o == org)
                    .map(|(_, k)| Some(k))
                    .ok_or(
                        "must be organizations/{organization}/stages/{stage}: the group's stage",
                    ),
            )
        };
        if let (Some((app, role)), Some(stage)) = (role, stage) {
            items.push((app, role, stage));
        }
    }
    Some(GroupChange {
        group: group?,
        items,
        foreign,
    })
}

/// RemoveGroupRoles: the group and `(app, role)` per end-user role name.
pub(super) fn remove_roles_change(
    v: &mut Violations,
    org: Uuid,
    r: &pb::RemoveGroupRolesRequest,
) -> Option<GroupChange<(Uuid, Uuid)>> {
    let mut foreign = Foreign::default();
    let group = group_id(v, "group", org, &r.group);
    if r.end_user_roles.is_empty() {
        v.add("end_user_roles", "must name at least one end-user role");
    }
    let items = r
        .end_user_roles
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            end_user_role(v, &mut foreign, &format!("end_user_roles[{i}]"), org, name)
        })
        .collect();
    Some(GroupChange {
        group: group?,
        items,
        foreign,
    })
}

/// An end-user role name: `(app, role)`. An organization role gets its own explanation.
fn end_user_role(
    v: &mut Violations,
    foreign: &mut Foreign,
    field: &str,
    org: Uuid,
    name: &str,
) -> Option<(Uuid, Uuid)> {
    match names::end_user_role(name) {
        Some((o, app, role)) if o == org => return Some((app, role)),
        Some(_) => foreign.note(name),
        None if names::role(name).is_some() => v.add(
            field,
            "a group holds only end-user roles, not organization roles",
        ),
        None => v.add(
            field,
            "must be organizations/{organization}/apps/{app}/endUserRoles/{role}",
        ),
    }
    None
}

/// Position in ListGroups: the last group of the previous page, and the stage filter it was
/// made for.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct GroupCursor {
    pub(super) name: String,
    pub(super) id: Uuid,
    pub(super) stage: String,
}

/// Position in ListGroupMembers: the last member of the previous page, and the group.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MemberCursor {
    pub(super) email: String,
    pub(super) id: Uuid,
    pub(super) group: Uuid,
}

/// The page token after `rows[..size]` (made by `cursor` from the page's last row) when more
/// rows follow; empty otherwise.
pub(super) fn next_token<R, C: Serialize>(
    rows: &[R],
    size: usize,
    cursor: impl FnOnce(&R) -> C,
) -> String {
    match (
        rows.len() > size,
        size.checked_sub(1).and_then(|i| rows.get(i)),
    ) {
        (true, Some(last)) => shared::page_token::encode(&cursor(last)),
        _ => String::new(),
    }
}
