//! [`TokenStore`] in SQL: the `tokens` table, its statements (also those a commit's
//! [`SecretOp`](crate::core::store::SecretOp)s run, see `commit.rs`) and its row mapping.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Type};
use uuid::Uuid;

use super::columns::{parse_uuid, principal_from_text, principal_to_text};
use super::commit::insert_token_statement;
use super::{Column, Dialect, SqlStore};
use crate::core::store::{StoreError, TokenKind, TokenRecord, TokenStore};
use crate::domain::model::{Micros, Principal};

const FIND_TOKEN: &str = "SELECT id, hash, kind, org_id, principal, create_time, expire_time, \
     revoke_time FROM tokens WHERE hash = $1";

/// Newest first.
const LIST_TOKENS: &str = "SELECT id, hash, kind, org_id, principal, create_time, expire_time, \
     revoke_time FROM tokens WHERE org_id = $1 AND principal = $2 \
     ORDER BY create_time DESC, id DESC";

pub(super) const INSERT_TOKEN: &str = "INSERT INTO tokens (id, hash, kind, org_id, principal, \
     create_time, expire_time, revoke_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const REVOKE_TOKEN: &str =
    "UPDATE tokens SET revoke_time = $1 WHERE id = $2 AND revoke_time IS NULL";

/// [`REVOKE_TOKEN`] within the organization of a commit.
pub(super) const REVOKE_TOKEN_OF_ORG: &str =
    "UPDATE tokens SET revoke_time = $1 WHERE id = $2 AND org_id = $3 AND revoke_time IS NULL";

/// Revokes every token of a principal, in a commit.
pub(super) const REVOKE_TOKENS_OF: &str = "UPDATE tokens SET revoke_time = $1 \
     WHERE org_id = $2 AND principal = $3 AND revoke_time IS NULL";

const REVOKED_SINCE: &str = "SELECT id FROM tokens WHERE revoke_time >= $1";

/// `tokens` columns: id, hash, kind, org_id, principal, create_time, expire_time, revoke_time.
type TokenRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
);

/// The `kind` column of `tokens`.
pub(super) fn token_kind_to_text(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Session => "session",
        TokenKind::ServiceAccount => "service_account",
    }
}

fn token_kind_from_text(text: &str) -> Result<TokenKind, StoreError> {
    match text {
        "session" => Ok(TokenKind::Session),
        "service_account" => Ok(TokenKind::ServiceAccount),
        _ => Err(StoreError::Corrupt(format!("bad token kind {text:?}"))),
    }
}

/// Decodes a token.
fn token_from_row(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (id, hash, kind, org, principal, create_time, expire_time, revoke_time) = row;
    Ok(TokenRecord {
        id: parse_uuid(&id)?,
        hash,
        kind: token_kind_from_text(&kind)?,
        org: parse_uuid(&org)?,
        principal: principal_from_text(&principal)?,
        create_time,
        expire_time,
        revoke_time,
    })
}

#[async_trait]
impl<DB> TokenStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    String: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<TokenRow> = sqlx::query_as(FIND_TOKEN)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(token_from_row).transpose()
    }

    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        insert_token_statement(token).execute(&self.pool).await?;
        Ok(())
    }

    async fn revoke_token(&self, id: Uuid, at: Micros) -> Result<bool, StoreError> {
        let updated = sqlx::query(REVOKE_TOKEN)
            .bind(at)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&updated) == 1)
    }

    async fn list_tokens(
        &self,
        org: Uuid,
        principal: Principal,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let rows: Vec<TokenRow> = sqlx::query_as(LIST_TOKENS)
            .bind(org.to_string())
            .bind(principal_to_text(principal))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(token_from_row).collect()
    }

    async fn revoked_since(&self, since: Micros) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(REVOKED_SINCE)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|(id,)| parse_uuid(id)).collect()
    }
}
