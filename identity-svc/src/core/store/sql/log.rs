//! [`EventLog`] in SQL: the organizations and their sequences, the start-up load, the commit
//! entry point (the backend's one-statement path, else the transaction of `commit.rs`), the
//! change events with the audit listing's filters, and idempotency keys.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Type};
use uuid::Uuid;

use super::batch::{BatchRows, batch_end};
use super::columns::{self, entity_from_json, parse_uuid, to_i64, to_u64};
use super::commit::commit_in_transaction;
use super::{Column, Dialect, SqlStore};
use crate::core::store::{Commit, EventFilter, EventLog, EventRecord, LoadedOrg, StoreError};
use crate::domain::model::Entity;

const ORGANIZATION_IDS: &str = "SELECT org_id FROM org_sequences ORDER BY org_id";

/// One statement, hence one snapshot: the sequence and the entities agree.
const LOAD_ORGANIZATION: &str = "SELECT s.seq, e.data FROM org_sequences s \
     LEFT JOIN entities e ON e.org_id = s.org_id \
     WHERE s.org_id = $1 ORDER BY e.kind, e.key";

const FIND_REQUEST: &str = "SELECT target FROM request_ids WHERE org_id = $1 AND request_id = $2";

const SEQUENCES: &str = "SELECT org_id, seq FROM org_sequences";

/// Columns of [`EventRow`], in order.
const EVENT_COLUMNS: &str =
    "seq, actor, action, target, before, after, affected_users, request_id, time";

/// `events` columns: seq, actor, action, target, before, after, affected_users, request_id,
/// time.
type EventRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
);

/// Decodes an event of `org`.
fn event_from_row(org: Uuid, row: EventRow) -> Result<EventRecord, StoreError> {
    let (seq, actor, action, target, before, after, affected_users, request_id, time) = row;
    Ok(EventRecord {
        org,
        seq: to_u64(seq)?,
        actor,
        action,
        target,
        before: before.as_deref().map(entity_from_json).transpose()?,
        after: after.as_deref().map(entity_from_json).transpose()?,
        affected_users: serde_json::from_str(&affected_users)
            .map_err(|e| StoreError::Corrupt(format!("bad affected_users: {e}")))?,
        request_id,
        time,
    })
}

#[async_trait]
impl<DB> EventLog for SqlStore<DB>
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
    async fn ping(&self) -> Result<(), StoreError> {
        shared::pool_metrics::record_pool_use(&self.pool);
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn organization_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(ORGANIZATION_IDS)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|(id,)| parse_uuid(id)).collect()
    }

    async fn load_organization(&self, org: Uuid) -> Result<Option<LoadedOrg>, StoreError> {
        let mut entities = Vec::new();
        let seq = self
            .load_organization_into(org, &mut |e| entities.push(e))
            .await?;
        Ok(seq.map(|seq| LoadedOrg { seq, entities }))
    }

    #[tracing::instrument(skip_all, fields(org = %org))]
    async fn load_organization_into(
        &self,
        org: Uuid,
        sink: &mut (dyn FnMut(Entity) + Send),
    ) -> Result<Option<u64>, StoreError> {
        // Rows are decoded as they arrive and handed over one by one.
        let org_id = org.to_string();
        let mut rows = sqlx::query_as::<_, (i64, Option<String>)>(LOAD_ORGANIZATION)
            .bind(&org_id)
            .fetch(&self.pool);
        let mut seq = None;
        while let Some(row) = tokio_stream::StreamExt::next(&mut rows).await {
            let (s, data) = row?;
            seq.get_or_insert(s);
            if let Some(data) = data {
                sink(entity_from_json(&data)?);
            }
        }
        seq.map(to_u64).transpose()
    }

    #[tracing::instrument(
        skip_all,
        fields(
            org = %commits.first().map(|c| c.org).unwrap_or_default(),
            expected_seq = commits.first().map_or(0, |c| c.expected_seq),
            commits = commits.len(),
        )
    )]
    async fn commit_batch(&self, commits: &[Commit<'_>]) -> Result<u64, StoreError> {
        let new_seq = batch_end(commits)?;
        let first = &commits[0];
        if !first.create_org
            && commits
                .iter()
                .all(|c| c.changes.is_empty() && c.secrets.is_empty())
        {
            return Ok(first.expected_seq);
        }
        let rows = BatchRows::new(commits)?;
        let mut writer = self.writer.acquire(&self.pool).await?;
        let result = match DB::commit_in_one_statement(&mut writer, commits, &rows, new_seq).await {
            Ok(Some(seq)) => Ok(seq),
            Ok(None) => commit_in_transaction(writer.get(), commits, &rows, new_seq).await,
            Err(e) => Err(e),
        };
        writer.release(&result);
        result
    }

    async fn events_after(
        &self,
        org: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.list_events(org, &EventFilter::default(), after, limit)
            .await
    }

    async fn list_events(
        &self,
        org: Uuid,
        filter: &EventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut query = QueryBuilder::<DB>::new("SELECT ");
        query.push(EVENT_COLUMNS);
        query.push(" FROM events WHERE org_id = ");
        query.push_bind(org.to_string());
        query.push(" AND seq > ");
        query.push_bind(to_i64(after)?);
        if let Some(actor) = &filter.actor {
            query.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(target) = &filter.target {
            query.push(" AND target = ").push_bind(target.clone());
        }
        if let Some(action) = &filter.action {
            query.push(" AND action = ").push_bind(action.clone());
        }
        if let Some(start) = filter.start_time {
            query.push(" AND time >= ").push_bind(start);
        }
        if let Some(end) = filter.end_time {
            query.push(" AND time < ").push_bind(end);
        }
        query.push(" ORDER BY seq LIMIT ");
        query.push_bind(columns::limit(limit));
        let rows: Vec<EventRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| event_from_row(org, row))
            .collect()
    }

    async fn find_request(
        &self,
        org: Uuid,
        request_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(FIND_REQUEST)
            .bind(org.to_string())
            .bind(request_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(target,)| target))
    }

    async fn sequences(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(SEQUENCES).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|(id, seq)| Ok((parse_uuid(id)?, to_u64(*seq)?)))
            .collect()
    }
}
