//! The sync state of each ODC infrastructure ([`CursorStore`]): reading and resetting it, and
//! writing a new cursor inside `apply`'s transaction.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Type};
use uuid::Uuid;

use super::{Backend, Column, SqlStore, to_i64, to_u64, write_error};
use crate::store::{CursorStore, StoreError, SyncCursor, SyncState};

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
    /// Writes `cursor`, an infrastructure of `company`, in `apply`'s transaction; an
    /// infrastructure of another company (or none) is [`StoreError::NotFound`].
    pub(super) async fn write_cursor(
        conn: &mut DB::Connection,
        company: &str,
        cursor: &SyncCursor,
    ) -> Result<(), StoreError> {
        let infrastructure = cursor.infrastructure.to_string();
        let owned: Option<(String,)> =
            sqlx::query_as("SELECT id FROM infrastructures WHERE id = $1 AND company = $2")
                .bind(&infrastructure)
                .bind(company)
                .fetch_optional(&mut *conn)
                .await?;
        if owned.is_none() {
            return Err(StoreError::NotFound);
        }
        // A batch that is not a snapshot keeps the time of the last snapshot.
        sqlx::query(
            "INSERT INTO sync_state (infrastructure, cursor, snapshot_time) \
             VALUES ($1, $2, $3) ON CONFLICT (infrastructure) DO UPDATE \
             SET cursor = excluded.cursor, snapshot_time = \
             COALESCE(excluded.snapshot_time, sync_state.snapshot_time)",
        )
        .bind(&infrastructure)
        .bind(to_i64(cursor.cursor)?)
        .bind(cursor.snapshot_time)
        .execute(&mut *conn)
        .await
        .map_err(write_error)?;
        Ok(())
    }
}

#[async_trait]
impl<DB: Backend> CursorStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn sync_state(&self, infrastructure: Uuid) -> Result<SyncState, StoreError> {
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT cursor, snapshot_time FROM sync_state WHERE infrastructure = $1",
        )
        .bind(infrastructure.to_string())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((cursor, snapshot_time)) => Ok(SyncState {
                cursor: to_u64(cursor)?,
                snapshot_time,
            }),
            None => Ok(SyncState::default()),
        }
    }

    async fn reset_sync(&self, infrastructure: Uuid) -> Result<(), StoreError> {
        // Cursor 0 is "never synced": the next sync takes a snapshot. The time of the
        // last snapshot taken stays until the new one replaces it.
        sqlx::query("UPDATE sync_state SET cursor = 0 WHERE infrastructure = $1")
            .bind(infrastructure.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
