//! Looking things up for a rule: each entity of an organization by id, or NOT_FOUND with its
//! resource name; the etag check (AIP-154); the small reads several rules share.

use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{App, EndUserRole, Group, Principal, Role, Stage, User};
use crate::domain::names::fmt;
use crate::domain::state::OrgState;
use crate::error::Error;

/// The id of the organization `d` changes.
pub(super) fn org_id(d: &Draft<'_>) -> Uuid {
    d.state().org.id
}

/// Refuses a stale etag (AIP-154). An empty etag skips the check.
pub fn check_etag(given: Option<&str>, rev: u64) -> Result<(), Error> {
    match given {
        Some(e) if !e.is_empty() && e != rev.to_string() => Err(Error::Aborted(format!(
            "etag {e:?} is stale (current {rev:?}); read the resource again"
        ))),
        _ => Ok(()),
    }
}

/// A user or NOT_FOUND.
pub fn user(st: &OrgState, id: Uuid) -> Result<&User, Error> {
    st.users
        .get(&id)
        .ok_or_else(|| Error::NotFound(fmt::user(st.org.id, id)))
}
/// A role or NOT_FOUND.
pub fn role<'a>(st: &'a OrgState, id: &str) -> Result<&'a Role, Error> {
    st.roles
        .get(id)
        .ok_or_else(|| Error::NotFound(fmt::role(st.org.id, id)))
}
/// A stage or NOT_FOUND.
pub fn stage<'a>(st: &'a OrgState, key: &str) -> Result<&'a Stage, Error> {
    st.stages
        .get(key)
        .ok_or_else(|| Error::NotFound(fmt::stage(st.org.id, key)))
}
/// An app or NOT_FOUND.
pub fn app(st: &OrgState, id: Uuid) -> Result<&App, Error> {
    st.apps
        .get(&id)
        .ok_or_else(|| Error::NotFound(fmt::app(st.org.id, id)))
}
/// An end-user role or NOT_FOUND.
pub fn end_user_role(st: &OrgState, id: Uuid) -> Result<&EndUserRole, Error> {
    st.end_user_roles
        .get(&id)
        .ok_or_else(|| Error::NotFound(format!("end-user role {id}")))
}
/// A group or NOT_FOUND.
pub fn group(st: &OrgState, id: Uuid) -> Result<&Group, Error> {
    st.groups
        .get(&id)
        .ok_or_else(|| Error::NotFound(fmt::group(st.org.id, id)))
}
/// A principal or NOT_FOUND.
pub fn principal(st: &OrgState, p: Principal) -> Result<(), Error> {
    if st.principal_exists(p) {
        Ok(())
    } else {
        Err(Error::NotFound(crate::auth::principal_name(st.org.id, p)))
    }
}

pub(super) fn principal_user(p: Principal) -> Vec<Uuid> {
    match p {
        Principal::User(u) => vec![u],
        Principal::ServiceAccount(_) => Vec::new(),
    }
}

pub(super) fn group_members(st: &OrgState, g: Uuid) -> Vec<Uuid> {
    st.group_members
        .get(&g)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}
