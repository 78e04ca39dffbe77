//! The general commit path: a batch of commits in one transaction, one multi-row statement
//! per table (compare-and-set of the sequence row, `entities`, `events`, `request_ids`), then
//! the credential changes and queued mail the commits carry ([`SecretOp`]). Also the multi-row
//! statement builders, which SQLite's one-statement commit strings together too.

use sqlx::query::Query;
use sqlx::{Connection as _, Database, Encode, Executor, QueryBuilder, Type};

use super::batch::{BatchRows, NewEvent, ROWS_PER_STATEMENT};
use super::columns::{principal_to_text, to_i64, unique_to_conflict};
use super::{Column, Dialect, credentials, outbox, tokens};
use crate::core::store::{Commit, SecretOp, StoreError, TokenRecord};

const CREATE_SEQUENCE: &str = "INSERT INTO org_sequences (org_id, seq) VALUES ($1, $2)";

const ADVANCE_SEQUENCE: &str = "UPDATE org_sequences SET seq = $1 WHERE org_id = $2 AND seq = $3";

/// A statement of database `DB` with its arguments bound.
type Statement<DB> = Query<'static, DB, <DB as Database>::Arguments>;

/// Writes the batch in one transaction on `conn` and returns `new_seq`.
pub(super) async fn commit_in_transaction<DB>(
    conn: &mut DB::Connection,
    commits: &[Commit<'_>],
    rows: &BatchRows<'_>,
    new_seq: u64,
) -> Result<u64, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    String: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
{
    let first = &commits[0];
    let org = first.org.to_string();

    let mut tx = conn.begin().await?;
    // The sequence row is written first, once for the whole batch: on SQLite a deferred
    // transaction whose first statement writes takes the write lock at once (no lock
    // upgrade that could fail with SQLITE_BUSY); on PostgreSQL the row lock orders the
    // commits of the organization, and a commit that waited re-reads the row and fails the
    // compare-and-set.
    if first.create_org {
        sqlx::query(CREATE_SEQUENCE)
            .bind(&org)
            .bind(to_i64(new_seq)?)
            .execute(&mut *tx)
            .await
            .map_err(unique_to_conflict)?;
    } else {
        let updated = sqlx::query(ADVANCE_SEQUENCE)
            .bind(to_i64(new_seq)?)
            .bind(&org)
            .bind(to_i64(first.expected_seq)?)
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&updated) != 1 {
            return Err(StoreError::Conflict);
        }
    }

    // The net effect on `entities` (one write per key), then the events, several rows per
    // statement: a commit of one change is one statement per table.
    for chunk in rows.deletes.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<DB>::new("");
        push_deletes(&mut query, &org, chunk);
        query.build().execute(&mut *tx).await?;
    }
    for chunk in rows.upserts.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<DB>::new("");
        push_upserts(&mut query, &org, chunk, rows);
        query.build().execute(&mut *tx).await?;
    }
    for chunk in rows.events.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<DB>::new("");
        push_events(&mut query, &org, chunk);
        query
            .build()
            .execute(&mut *tx)
            .await
            .map_err(unique_to_conflict)?;
    }
    for chunk in rows.requests.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<DB>::new("");
        push_requests(&mut query, &org, chunk);
        query.build().execute(&mut *tx).await.map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::DuplicateRequest,
            e => StoreError::Database(e),
        })?;
    }

    for op in commits.iter().flat_map(|c| c.secrets) {
        secret_statement(op, &org)
            .execute(&mut *tx)
            .await
            .map_err(unique_to_conflict)?;
    }

    tx.commit().await?;
    Ok(new_seq)
}

/// The statement of a credential change of a commit to organization `org`.
fn secret_statement<DB>(op: &SecretOp, org: &str) -> Statement<DB>
where
    DB: Dialect,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    String: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
{
    match op {
        SecretOp::SetPassword { user, hash } => sqlx::query(credentials::SET_PASSWORD)
            .bind(org)
            .bind(user.to_string())
            .bind(hash),
        SecretOp::PutInvitationToken {
            hash,
            invitation,
            user,
            expire_time,
        } => sqlx::query(credentials::PUT_INVITATION_TOKEN)
            .bind(hash)
            .bind(invitation.to_string())
            .bind(org)
            .bind(user.to_string())
            .bind(*expire_time),
        SecretOp::DeleteInvitationTokens { user } => {
            sqlx::query(credentials::DELETE_INVITATION_TOKENS)
                .bind(org)
                .bind(user.to_string())
        }
        SecretOp::PutToken(token) => insert_token_statement(token),
        SecretOp::RevokeTokensOf { principal, at } => sqlx::query(tokens::REVOKE_TOKENS_OF)
            .bind(*at)
            .bind(org)
            .bind(principal_to_text(*principal)),
        SecretOp::RevokeToken { id, at } => sqlx::query(tokens::REVOKE_TOKEN_OF_ORG)
            .bind(*at)
            .bind(id.to_string())
            .bind(org),
        SecretOp::DeleteCredentials { user } => sqlx::query(credentials::DELETE_CREDENTIALS)
            .bind(org)
            .bind(user.to_string()),
        SecretOp::QueueMail(mail) => sqlx::query(outbox::QUEUE_MAIL)
            .bind(mail.id.to_string())
            .bind(org)
            .bind(mail.user.to_string())
            .bind(mail.invitation.to_string())
            .bind(mail.message_id.clone())
            .bind(mail.to.clone())
            .bind(mail.subject.clone())
            .bind(mail.body.clone())
            .bind(mail.create_time)
            .bind(mail.expire_time)
            .bind(mail.first_attempt_time),
        SecretOp::CancelMail { user } => sqlx::query(outbox::CANCEL_MAIL)
            .bind(org)
            .bind(user.to_string()),
    }
}

/// The `INSERT` of a token, in a commit ([`SecretOp::PutToken`]) or on its own.
pub(super) fn insert_token_statement<DB>(token: &TokenRecord) -> Statement<DB>
where
    DB: Dialect,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    String: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
{
    sqlx::query(tokens::INSERT_TOKEN)
        .bind(token.id.to_string())
        .bind(&token.hash)
        .bind(tokens::token_kind_to_text(token.kind))
        .bind(token.org.to_string())
        .bind(principal_to_text(token.principal))
        .bind(token.create_time)
        .bind(token.expire_time)
        .bind(token.revoke_time)
}

/// `DELETE` of the `entities` rows of `chunk`.
pub(crate) fn push_deletes<'q, DB>(
    query: &mut QueryBuilder<DB>,
    org: &'q str,
    chunk: &'q [(&'static str, String)],
) where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
{
    query.push("DELETE FROM entities WHERE org_id = ");
    query.push_bind(org).push(" AND (");
    for (i, (kind, key)) in chunk.iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query.push("(kind = ").push_bind(*kind);
        query.push(" AND key = ").push_bind(key.as_str()).push(")");
    }
    query.push(")");
}

/// `INSERT .. ON CONFLICT DO UPDATE` of the `entities` rows of `chunk`.
pub(crate) fn push_upserts<'q, DB>(
    query: &mut QueryBuilder<DB>,
    org: &'q str,
    chunk: &'q [(&'static str, String, usize)],
    rows: &'q BatchRows<'_>,
) where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB>,
{
    query.push("INSERT INTO entities (org_id, kind, key, data) ");
    query.push_values(chunk, |mut row, (kind, key, data)| {
        row.push_bind(org)
            .push_bind(*kind)
            .push_bind(key.as_str())
            .push_bind(rows.events[*data].after.as_deref());
    });
    query.push(" ON CONFLICT (org_id, kind, key) DO UPDATE SET data = excluded.data");
}

/// `INSERT` of the `events` rows of `chunk`.
pub(crate) fn push_events<'q, DB>(
    query: &mut QueryBuilder<DB>,
    org: &'q str,
    chunk: &'q [NewEvent<'_>],
) where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB>,
    i64: Column<DB>,
{
    query.push(
        "INSERT INTO events (org_id, seq, actor, action, target, before, \
         after, affected_users, request_id, time) ",
    );
    query.push_values(chunk, |mut row, e| {
        row.push_bind(org)
            .push_bind(e.seq)
            .push_bind(e.actor)
            .push_bind(e.action)
            .push_bind(e.target)
            .push_bind(e.before.as_deref())
            .push_bind(e.after.as_deref())
            .push_bind(e.affected_users.as_str())
            .push_bind(e.request_id)
            .push_bind(e.time);
    });
}

/// `INSERT` of the `request_ids` rows of `chunk`.
pub(crate) fn push_requests<'q, DB>(
    query: &mut QueryBuilder<DB>,
    org: &'q str,
    chunk: &'q [(&str, &str)],
) where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
{
    query.push("INSERT INTO request_ids (org_id, request_id, target) ");
    query.push_values(chunk, |mut row, (request_id, target)| {
        row.push_bind(org).push_bind(*request_id).push_bind(*target);
    });
}
