//! [`CredentialStore`] in SQL: the `credentials` table (password hashes, login-failure
//! counters) and `invitation_tokens`, their statements (also those a commit's
//! [`SecretOp`](crate::core::store::SecretOp)s run, see `commit.rs`) and their row mapping.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Type};
use uuid::Uuid;

use super::columns::parse_uuid;
use super::{Column, Dialect, SqlStore};
use crate::core::store::{CredentialStore, Credentials, InvitationToken, StoreError};
use crate::domain::model::Micros;

const FIND_INVITATION_TOKEN: &str = "SELECT org_id, invitation_id, user_id, expire_time \
     FROM invitation_tokens WHERE hash = $1";

const CREDENTIALS: &str = "SELECT password_hash, failed_logins, locked_until \
     FROM credentials WHERE org_id = $1 AND user_id = $2";

const SET_LOGIN_FAILURES: &str = "INSERT INTO credentials \
     (org_id, user_id, failed_logins, locked_until) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (org_id, user_id) DO UPDATE \
     SET failed_logins = excluded.failed_logins, locked_until = excluded.locked_until";

/// Sets a password, in a commit.
pub(super) const SET_PASSWORD: &str = "INSERT INTO credentials (org_id, user_id, password_hash) \
     VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) \
     DO UPDATE SET password_hash = excluded.password_hash";

/// Removes a user's credentials, in a commit.
pub(super) const DELETE_CREDENTIALS: &str =
    "DELETE FROM credentials WHERE org_id = $1 AND user_id = $2";

/// Stores an invitation token, in a commit.
pub(super) const PUT_INVITATION_TOKEN: &str = "INSERT INTO invitation_tokens \
     (hash, invitation_id, org_id, user_id, expire_time) VALUES ($1, $2, $3, $4, $5)";

/// Removes a user's invitation tokens, in a commit.
pub(super) const DELETE_INVITATION_TOKENS: &str =
    "DELETE FROM invitation_tokens WHERE org_id = $1 AND user_id = $2";

/// `invitation_tokens` columns: org_id, invitation_id, user_id, expire_time.
type InvitationRow = (String, String, String, i64);

/// Decodes an invitation token.
fn invitation_from_row(row: InvitationRow) -> Result<InvitationToken, StoreError> {
    let (org, invitation, user, expire_time) = row;
    Ok(InvitationToken {
        org: parse_uuid(&org)?,
        invitation: parse_uuid(&invitation)?,
        user: parse_uuid(&user)?,
        expire_time,
    })
}

/// `credentials` columns: password_hash, failed_logins, locked_until.
type CredentialsRow = (Option<String>, i64, Option<Micros>);

/// Decodes credentials.
fn credentials_from_row(
    (password_hash, failed_logins, locked_until): CredentialsRow,
) -> Result<Credentials, StoreError> {
    Ok(Credentials {
        password_hash,
        failed_logins: u32::try_from(failed_logins)
            .map_err(|_| StoreError::Corrupt(format!("bad failed_logins {failed_logins}")))?,
        locked_until,
    })
}

#[async_trait]
impl<DB> CredentialStore for SqlStore<DB>
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
    async fn find_invitation_token(
        &self,
        hash: &str,
    ) -> Result<Option<InvitationToken>, StoreError> {
        let row: Option<InvitationRow> = sqlx::query_as(FIND_INVITATION_TOKEN)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(invitation_from_row).transpose()
    }

    async fn credentials(&self, org: Uuid, user: Uuid) -> Result<Credentials, StoreError> {
        let row: Option<CredentialsRow> = sqlx::query_as(CREDENTIALS)
            .bind(org.to_string())
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(credentials_from_row)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn set_login_failures(
        &self,
        org: Uuid,
        user: Uuid,
        failed_logins: u32,
        locked_until: Option<Micros>,
    ) -> Result<(), StoreError> {
        sqlx::query(SET_LOGIN_FAILURES)
            .bind(org.to_string())
            .bind(user.to_string())
            .bind(i64::from(failed_logins))
            .bind(locked_until)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
