//! The gap-free audit events of each company: allocating their sequence numbers (the first
//! write of every company transaction, see the [module documentation](super)), inserting them
//! in the writer's transaction, and reading them ([`EventStore`]).

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Type};
use uuid::Uuid;

use super::rows::{EventRow, event_from_row};
use super::runs::{EVENT_BINDS, rows_per_statement};
use super::{Backend, Column, SqlStore, to_i64, to_u64, write_error};
use crate::domain::model::{Micros, NewEvent, PortalEvent};
use crate::store::{EventStore, StoreError};

/// A number of events as a BIGINT.
fn count_to_i64(count: usize) -> Result<i64, StoreError> {
    i64::try_from(count)
        .map_err(|_| StoreError::Corrupt(format!("{count} events in one transaction")))
}

/// A row limit as a BIGINT (larger than any table can be).
fn row_limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The first of the `count` sequence numbers that end at `last` (the value `reserve_events`
/// read back).
fn first_reserved(last: i64, count: usize) -> Result<u64, StoreError> {
    let last = to_u64(last)?;
    let count = u64::try_from(count)
        .map_err(|_| StoreError::Corrupt(format!("{count} events in one transaction")))?;
    (last + 1)
        .checked_sub(count)
        .ok_or_else(|| StoreError::Corrupt(format!("sequence {last} below {count} events")))
}

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
    /// Allocates the sequence numbers of `count` events of `company` and returns the first.
    /// This is the first write of every company transaction (see the module documentation);
    /// an unknown company is [`StoreError::NotFound`].
    pub(super) async fn reserve_events(
        conn: &mut DB::Connection,
        company: Uuid,
        count: usize,
    ) -> Result<u64, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE company_seq SET seq = seq + $1 WHERE company = $2 RETURNING seq",
        )
        .bind(count_to_i64(count)?)
        .bind(company.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let (last,) = row.ok_or(StoreError::NotFound)?;
        first_reserved(last, count)
    }

    /// Inserts `events` of `company` from sequence `first` on, in multi-row INSERTs.
    pub(super) async fn insert_events(
        conn: &mut DB::Connection,
        company: Uuid,
        first: u64,
        events: &[NewEvent],
        time: Micros,
    ) -> Result<(), StoreError> {
        let company = company.to_string();
        let mut seq = first;
        for chunk in events.chunks(rows_per_statement(EVENT_BINDS)) {
            let mut rows = Vec::with_capacity(chunk.len());
            for event in chunk {
                rows.push((to_i64(seq)?, event));
                seq += 1;
            }
            let mut query = QueryBuilder::<DB>::new(
                "INSERT INTO events (company, seq, actor, action, target, detail, time) ",
            );
            query.push_values(rows, |mut row, (seq, event)| {
                row.push_bind(company.as_str())
                    .push_bind(seq)
                    .push_bind(event.actor.as_str())
                    .push_bind(event.action.as_str())
                    .push_bind(event.target.as_str())
                    .push_bind(event.detail.as_str())
                    .push_bind(time);
            });
            query
                .build()
                .execute(&mut *conn)
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl<DB: Backend> EventStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn events(
        &self,
        company: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PortalEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, actor, action, target, detail, time FROM events \
             WHERE company = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(company.to_string())
        .bind(to_i64(after)?)
        .bind(row_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(event_from_row).collect()
    }
}
