//! Column values shared by every table: BIGINT sequence numbers and limits, uuid text, the
//! `principal` column, entity documents and user lists as JSON, and the unique violation that
//! means another writer got there first. Both dialects store them the same way.

use uuid::Uuid;

use crate::core::store::StoreError;
use crate::domain::model::{Entity, Principal};

/// A unique violation means another writer got there first: [`StoreError::Conflict`].
pub(crate) fn unique_to_conflict(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(error),
    }
}

/// A sequence number or count as a BIGINT.
pub(crate) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} exceeds BIGINT")))
}

/// A BIGINT as a sequence number.
pub(crate) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative sequence {value}")))
}

/// A row limit as a BIGINT (larger than any table can be).
pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored uuid.
pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("bad uuid {text:?}: {e}")))
}

/// The `principal` column: `user:<uuid>` or `service_account:<uuid>`.
pub(crate) fn principal_to_text(principal: Principal) -> String {
    match principal {
        Principal::User(id) => format!("user:{id}"),
        Principal::ServiceAccount(id) => format!("service_account:{id}"),
    }
}

/// Reads the `principal` column.
pub(crate) fn principal_from_text(text: &str) -> Result<Principal, StoreError> {
    match text.split_once(':') {
        Some(("user", id)) => Ok(Principal::User(parse_uuid(id)?)),
        Some(("service_account", id)) => Ok(Principal::ServiceAccount(parse_uuid(id)?)),
        _ => Err(StoreError::Corrupt(format!("bad principal {text:?}"))),
    }
}

/// An entity as stored (`entities.data`, `events.before`/`after`).
pub(crate) fn entity_to_json(entity: &Entity) -> Result<String, StoreError> {
    serde_json::to_string(entity).map_err(|e| StoreError::Corrupt(format!("entity to JSON: {e}")))
}

/// Reads a stored entity.
pub(crate) fn entity_from_json(json: &str) -> Result<Entity, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("bad entity JSON: {e}")))
}

/// The `affected_users` column, a JSON array.
pub(crate) fn users_to_json(users: &[Uuid]) -> Result<String, StoreError> {
    serde_json::to_string(users).map_err(|e| StoreError::Corrupt(format!("users to JSON: {e}")))
}
