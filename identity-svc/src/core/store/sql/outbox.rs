//! [`MailOutbox`] in SQL: the `mail_outbox` table's statements (the claim with its lease, the
//! outcome of an attempt, a user's delivery, the gauges) and the commit's part
//! ([`SecretOp::QueueMail`](crate::core::store::SecretOp::QueueMail) and `CancelMail`, run by
//! `commit.rs` in the invitation's transaction).
//!
//! The claim is one `UPDATE .. WHERE id IN (SELECT ..) RETURNING`: on PostgreSQL the inner
//! select locks its rows `FOR UPDATE SKIP LOCKED` ([`Dialect::SKIP_LOCKED`]), so replicas
//! claiming at once take different rows and none waits for another; SQLite has one writer at a
//! time, so the statement alone is enough. Both re-check the lease in the outer `WHERE`.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Type};
use uuid::Uuid;

use super::columns::{limit, parse_uuid};
use super::{Column, Dialect, SqlStore};
use crate::core::store::{
    ClaimedMail, Delivery, DeliveryState, MailOutbox, OutboxStats, Retry, StoreError,
};
use crate::domain::model::Micros;

/// Queues a message (a commit's `QueueMail`), due for the workers at its first attempt time.
pub(super) const QUEUE_MAIL: &str = "INSERT INTO mail_outbox (id, org_id, user_id, \
     invitation_id, message_id, recipient, subject, body, state, attempts, create_time, \
     expire_time, next_attempt_time) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10, $11)";

/// Drops a user's undelivered messages (a commit's `CancelMail`).
pub(super) const CANCEL_MAIL: &str =
    "DELETE FROM mail_outbox WHERE org_id = $1 AND user_id = $2 AND state = 'pending'";

/// `{}`: [`Dialect::SKIP_LOCKED`].
const CLAIM: &str = "UPDATE mail_outbox SET lease_owner = $1, lease_until = $2 \
     WHERE id IN (SELECT id FROM mail_outbox WHERE state = 'pending' \
     AND (lease_until IS NULL OR lease_until <= $3) \
     AND (($5 = '' AND next_attempt_time <= $3) OR id = $5) \
     ORDER BY next_attempt_time, id LIMIT $4 {}) \
     AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $3) \
     RETURNING id, message_id, recipient, subject, body, attempts, expire_time";

const SENT: &str = "UPDATE mail_outbox SET state = 'sent', sent_time = $1, body = NULL, \
     last_error = NULL, lease_owner = NULL, lease_until = NULL \
     WHERE id = $2 AND lease_owner = $3 AND state = 'pending'";

const RETRY: &str = "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $1, \
     next_attempt_time = $2, lease_owner = NULL, lease_until = NULL \
     WHERE id = $3 AND lease_owner = $4 AND state = 'pending'";

const GIVE_UP: &str = "UPDATE mail_outbox SET state = 'expired', attempts = attempts + 1, \
     last_error = $1, body = NULL, lease_owner = NULL, lease_until = NULL \
     WHERE id = $2 AND lease_owner = $3 AND state = 'pending'";

const DELIVERY: &str = "SELECT state, attempts, last_error, sent_time, next_attempt_time, \
     message_id \
     FROM mail_outbox WHERE org_id = $1 AND user_id = $2 \
     ORDER BY create_time DESC, id DESC LIMIT 1";

const STATS: &str = "SELECT count(*), min(create_time) FROM mail_outbox WHERE state = 'pending'";

/// id, message_id, recipient, subject, body, attempts, expire_time.
type ClaimRow = (String, String, String, String, Option<String>, i64, i64);

/// state, attempts, last_error, sent_time, next_attempt_time, message_id.
type DeliveryRow = (String, i64, Option<String>, Option<i64>, i64, String);

fn attempts(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("bad attempts {value}")))
}

fn claimed_from_row(row: ClaimRow) -> Result<ClaimedMail, StoreError> {
    let (id, message_id, to, subject, body, tries, expire_time) = row;
    Ok(ClaimedMail {
        id: parse_uuid(&id)?,
        message_id,
        to,
        subject,
        body: body.ok_or_else(|| StoreError::Corrupt(format!("pending mail {id} has no body")))?,
        attempts: attempts(tries)?,
        expire_time,
    })
}

fn delivery_from_row(row: DeliveryRow) -> Result<Delivery, StoreError> {
    let (state, tries, last_error, sent_time, next_attempt_time, message_id) = row;
    let state = match state.as_str() {
        "pending" => DeliveryState::Pending,
        "sent" => DeliveryState::Sent,
        "expired" => DeliveryState::Expired,
        _ => return Err(StoreError::Corrupt(format!("bad mail state {state:?}"))),
    };
    Ok(Delivery {
        state,
        attempts: attempts(tries)?,
        last_error,
        sent_time,
        // Before the first attempt the time is the workers' grace, not a retry.
        next_attempt_time: (state == DeliveryState::Pending && tries > 0)
            .then_some(next_attempt_time),
        message_id,
    })
}

#[async_trait]
impl<DB> MailOutbox for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    String: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn claim_mail(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        max: usize,
        only: Option<Uuid>,
    ) -> Result<Vec<ClaimedMail>, StoreError> {
        let only = only.map(|id| id.to_string()).unwrap_or_default();
        let sql = CLAIM.replace("{}", DB::SKIP_LOCKED);
        let rows: Vec<ClaimRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(limit(max))
            .bind(only.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(claimed_from_row).collect()
    }

    async fn mail_sent(&self, id: Uuid, owner: &str, at: Micros) -> Result<bool, StoreError> {
        let done = sqlx::query(SENT)
            .bind(at)
            .bind(id.to_string())
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn mail_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        retry: Retry,
    ) -> Result<bool, StoreError> {
        let query = match retry {
            Retry::At(next) => sqlx::query(RETRY).bind(error).bind(next),
            Retry::GiveUp => sqlx::query(GIVE_UP).bind(error),
        };
        let done = query
            .bind(id.to_string())
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn mail_delivery(&self, org: Uuid, user: Uuid) -> Result<Option<Delivery>, StoreError> {
        let row: Option<DeliveryRow> = sqlx::query_as(DELIVERY)
            .bind(org.to_string())
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(delivery_from_row).transpose()
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let (pending, oldest): (i64, Option<i64>) =
            sqlx::query_as(STATS).fetch_one(&self.pool).await?;
        Ok(OutboxStats {
            pending: u64::try_from(pending).unwrap_or_default(),
            oldest_create_time: oldest,
        })
    }
}
