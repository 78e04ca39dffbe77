//! Team members ([`MemberStore`]): reading them, and `apply`, the one transaction that writes
//! a batch of member changes, their events and the sync cursor.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Type};
use uuid::Uuid;

use super::rows::{from_json, wrong_company};
use super::runs::{Run, runs};
use super::{Backend, Column, SqlStore};
use crate::domain::model::{Email, Micros, NewEvent, TeamMember};
use crate::store::{MemberChange, MemberStore, StoreError, SyncCursor};

#[async_trait]
impl<DB: Backend> MemberStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn members(&self, company: Uuid) -> Result<Vec<TeamMember>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT data FROM members WHERE company = $1 ORDER BY email")
                .bind(company.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|(data,)| from_json(data)).collect()
    }

    async fn member(&self, company: Uuid, id: Uuid) -> Result<Option<TeamMember>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT data FROM members WHERE company = $1 AND id = $2")
                .bind(company.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(data,)| from_json(&data)).transpose()
    }

    async fn member_by_email(
        &self,
        company: Uuid,
        email: &Email,
    ) -> Result<Option<TeamMember>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT data FROM members WHERE company = $1 AND email = $2")
                .bind(company.to_string())
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(data,)| from_json(&data)).transpose()
    }

    async fn apply(
        &self,
        company: Uuid,
        changes: &[MemberChange],
        events: &[NewEvent],
        cursor: Option<&SyncCursor>,
        time: Micros,
    ) -> Result<(), StoreError> {
        // Refuse a misaddressed batch before writing anything.
        for change in changes {
            let owner = match change {
                MemberChange::Upsert { member, .. } => member.company,
                MemberChange::Delete { company, .. } => *company,
            };
            if owner != company {
                return Err(wrong_company(company, owner));
            }
        }
        let company_text = company.to_string();

        // Any error below drops `tx`, which rolls everything back.
        let mut tx = self.pool.begin().await?;
        let first = Self::reserve_events(&mut tx, company, events.len()).await?;
        // A sync batch of a replica that lost its lease writes nothing.
        if let Some(SyncCursor {
            infrastructure,
            fence: Some(fence),
            ..
        }) = cursor
        {
            Self::hold_fence(&mut tx, *infrastructure, fence, time).await?;
        }
        // Multi-row statements, in the batch's order (see `runs`).
        for run in runs(changes) {
            match run {
                Run::Insert(members) => Self::insert_members(&mut tx, &members).await?,
                Run::Update(updates) => {
                    Self::update_members(&mut tx, &company_text, &updates).await?;
                }
                Run::Delete(deletes) => {
                    Self::delete_members(&mut tx, &company_text, &deletes).await?;
                }
            }
        }
        Self::insert_events(&mut tx, company, first, events, time).await?;
        if let Some(cursor) = cursor {
            Self::write_cursor(&mut tx, &company_text, cursor).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
