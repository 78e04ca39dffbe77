//! Rows as the statements read them, and their conversion to and from domain types: the
//! column tuples, the TEXT forms of ids, emails and infrastructure kinds, and the JSON
//! documents (`members.data`, `support_cases.data`). No SQL here.

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::to_u64;
use crate::domain::model::{Company, Email, InfraKind, Infrastructure, NewEvent, PortalEvent};
use crate::store::StoreError;

/// A stored uuid.
pub(super) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("bad uuid {text:?}: {e}")))
}

/// A stored email.
pub(super) fn parse_email(text: &str) -> Result<Email, StoreError> {
    Email::parse(text).map_err(|e| StoreError::Corrupt(format!("bad email {text:?}: {e}")))
}

/// The `kind` column of `infrastructures` (the serde name of the kind).
pub(super) fn kind_to_text(kind: InfraKind) -> &'static str {
    match kind {
        InfraKind::O11Cloud => "o11_cloud",
        InfraKind::O11Hybrid => "o11_hybrid",
        InfraKind::O11SelfManaged => "o11_self_managed",
        InfraKind::O11Sentry => "o11_sentry",
        InfraKind::Odc => "odc",
    }
}

/// Reads the `kind` column of `infrastructures`.
fn kind_from_text(text: &str) -> Result<InfraKind, StoreError> {
    match text {
        "o11_cloud" => Ok(InfraKind::O11Cloud),
        "o11_hybrid" => Ok(InfraKind::O11Hybrid),
        "o11_self_managed" => Ok(InfraKind::O11SelfManaged),
        "o11_sentry" => Ok(InfraKind::O11Sentry),
        "odc" => Ok(InfraKind::Odc),
        _ => Err(StoreError::Corrupt(format!(
            "bad infrastructure kind {text:?}"
        ))),
    }
}

/// A document as stored (`members.data`, `support_cases.data`).
pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("to JSON: {e}")))
}

/// Reads a stored document.
pub(super) fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("bad stored JSON: {e}")))
}

/// A change or event for a company other than the batch's: a caller bug, refused before
/// anything is written.
pub(super) fn wrong_company(expected: Uuid, got: Uuid) -> StoreError {
    StoreError::Corrupt(format!(
        "record of company {got} in a write of company {expected}"
    ))
}

/// `companies` columns: id, display_name, create_time.
pub(super) type CompanyRow = (String, String, i64);

/// Decodes a company.
pub(super) fn company_from_row(
    (id, display_name, create_time): CompanyRow,
) -> Result<Company, StoreError> {
    Ok(Company {
        id: parse_uuid(&id)?,
        display_name,
        create_time,
    })
}

/// Columns of [`InfraRow`], in order.
pub(super) const INFRA_COLUMNS: &str =
    "id, company, display_name, kind, identity_org, create_time, identity_token";

/// `infrastructures` columns: id, company, display_name, kind, identity_org, create_time,
/// identity_token.
pub(super) type InfraRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
);

/// Decodes an infrastructure and its identity token.
pub(super) fn infra_from_row(
    row: InfraRow,
) -> Result<(Infrastructure, Option<String>), StoreError> {
    let (id, company, display_name, kind, identity_org, create_time, token) = row;
    let infra = Infrastructure {
        id: parse_uuid(&id)?,
        company: parse_uuid(&company)?,
        display_name,
        kind: kind_from_text(&kind)?,
        identity_org: identity_org.as_deref().map(parse_uuid).transpose()?,
        create_time,
    };
    Ok((infra, token))
}

/// `events` columns: seq, actor, action, target, detail, time.
pub(super) type EventRow = (i64, String, String, String, String, i64);

/// Decodes an event.
pub(super) fn event_from_row(row: EventRow) -> Result<PortalEvent, StoreError> {
    let (seq, actor, action, target, detail, time) = row;
    Ok(PortalEvent {
        seq: to_u64(seq)?,
        event: NewEvent {
            actor,
            action,
            target,
            detail,
        },
        time,
    })
}
