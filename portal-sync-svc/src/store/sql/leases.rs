//! The sync leases of ODC infrastructures ([`LeaseStore`]): acquiring, renewing, releasing and
//! reading them, and the fencing check `apply` runs in its transaction.
//!
//! Each statement is one row's `INSERT .. ON CONFLICT DO UPDATE .. WHERE` or `UPDATE .. WHERE`:
//! the database serializes them on the row (PostgreSQL's row lock, re-checking the `WHERE`
//! against the latest version; SQLite's single writer), so two replicas racing for an expired
//! lease cannot both get it.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Type};
use uuid::Uuid;

use super::{Backend, Column, RowsAffected, SqlStore, to_i64, to_u64, write_error};
use crate::domain::model::Micros;
use crate::store::{Fence, Lease, LeaseStore, LeaseView, StoreError};

impl<DB: Backend> SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    /// In `apply`'s transaction: the lease of `infrastructure` still has `fence`'s holder and
    /// token and has not expired at `now`, else [`StoreError::Fenced`]. The check is an
    /// `UPDATE` that changes nothing, so it locks the row until the transaction ends: a
    /// replica taking the lease over waits for this batch, and sees its cursor.
    pub(super) async fn hold_fence(
        conn: &mut DB::Connection,
        infrastructure: Uuid,
        fence: &Fence,
        now: Micros,
    ) -> Result<(), StoreError> {
        let held = sqlx::query(
            "UPDATE sync_leases SET token = token WHERE infrastructure = $1 AND holder = $2 \
             AND token = $3 AND expire_time > $4",
        )
        .bind(infrastructure.to_string())
        .bind(fence.holder.as_str())
        .bind(to_i64(fence.token)?)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if held.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Fenced)
        }
    }
}

#[async_trait]
impl<DB: Backend> LeaseStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn acquire_lease(
        &self,
        infrastructure: Uuid,
        holder: &str,
        now: Micros,
        expire_time: Micros,
    ) -> Result<Option<Lease>, StoreError> {
        // The report of the previous holder stays until this one renews.
        let row: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO sync_leases (infrastructure, holder, token, expire_time) \
             VALUES ($1, $2, 1, $3) ON CONFLICT (infrastructure) DO UPDATE \
             SET holder = excluded.holder, token = sync_leases.token + 1, \
             expire_time = excluded.expire_time \
             WHERE sync_leases.expire_time <= $4 OR sync_leases.holder = excluded.holder \
             RETURNING token",
        )
        .bind(infrastructure.to_string())
        .bind(holder)
        .bind(expire_time)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(write_error)?;
        row.map(|(token,)| {
            Ok(Lease {
                fence: Fence {
                    holder: holder.to_owned(),
                    token: to_u64(token)?,
                },
                expire_time,
            })
        })
        .transpose()
    }

    async fn renew_lease(
        &self,
        infrastructure: Uuid,
        fence: &Fence,
        now: Micros,
        expire_time: Micros,
        report: &str,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE sync_leases SET expire_time = $1, report = $2 WHERE infrastructure = $3 \
             AND holder = $4 AND token = $5 AND expire_time > $6",
        )
        .bind(expire_time)
        .bind(report)
        .bind(infrastructure.to_string())
        .bind(fence.holder.as_str())
        .bind(to_i64(fence.token)?)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn release_lease(&self, infrastructure: Uuid, fence: &Fence) -> Result<bool, StoreError> {
        let released = sqlx::query(
            "UPDATE sync_leases SET expire_time = 0 WHERE infrastructure = $1 AND holder = $2 \
             AND token = $3",
        )
        .bind(infrastructure.to_string())
        .bind(fence.holder.as_str())
        .bind(to_i64(fence.token)?)
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected() == 1)
    }

    async fn lease(&self, infrastructure: Uuid) -> Result<Option<LeaseView>, StoreError> {
        let row: Option<(String, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT holder, token, expire_time, report FROM sync_leases WHERE infrastructure = $1",
        )
        .bind(infrastructure.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(holder, token, expire_time, report)| {
            Ok(LeaseView {
                holder,
                token: to_u64(token)?,
                expire_time,
                report,
            })
        })
        .transpose()
    }
}
