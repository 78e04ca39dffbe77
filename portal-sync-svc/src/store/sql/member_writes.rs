//! The multi-row member statements of `apply`, one per run of the batch (`runs.rs`): insert,
//! update at the expected revision, delete at the expected revision.

use std::collections::HashSet;

use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Type};
use uuid::Uuid;

use super::rows::to_json;
use super::{Backend, Column, RowsAffected, SqlStore, to_i64, write_error};
use crate::domain::model::TeamMember;
use crate::store::StoreError;

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
    /// Inserts members (distinct ids, at most [`rows_per_statement`] of them) in one
    /// statement. A taken id or email fails it ([`StoreError::Conflict`]), as it would
    /// fail one of the single-row INSERTs.
    ///
    /// [`rows_per_statement`]: super::runs::rows_per_statement
    pub(super) async fn insert_members(
        conn: &mut DB::Connection,
        members: &[&TeamMember],
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(members.len());
        for member in members {
            rows.push((
                member.company.to_string(),
                member.id.to_string(),
                member.email.as_str(),
                to_json(member)?,
                to_i64(member.rev)?,
            ));
        }
        let mut query =
            QueryBuilder::<DB>::new("INSERT INTO members (company, id, email, data, rev) ");
        query.push_values(rows, |mut row, (company, id, email, data, rev)| {
            row.push_bind(company)
                .push_bind(id)
                .push_bind(email)
                .push_bind(data)
                .push_bind(rev);
        });
        query
            .build()
            .execute(&mut *conn)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Replaces members of `company` (distinct ids), each only at the revision it
    /// expects; any other revision is [`StoreError::Conflict`].
    ///
    /// The members whose email stays the same go in one `UPDATE .. FROM (VALUES ..)`:
    /// with distinct ids and unchanged emails, those updates cannot interact with each
    /// other or with the rest of the run, so their order does not matter. The others
    /// (an email changes, or the revision differs) are then written one by one, in
    /// their order, with the single-row statement — a change of email can depend on
    /// another one freeing it first.
    pub(super) async fn update_members(
        conn: &mut DB::Connection,
        company: &str,
        updates: &[(&TeamMember, u64)],
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(updates.len());
        for (member, expected_rev) in updates {
            rows.push((
                member.id.to_string(),
                member.email.as_str(),
                to_json(member)?,
                to_i64(member.rev)?,
                to_i64(*expected_rev)?,
            ));
        }
        // VALUES columns are column1.. on both databases.
        let mut query =
            QueryBuilder::<DB>::new("UPDATE members SET data = v.column3, rev = v.column4 FROM (");
        query.push_values(&rows, |mut row, (id, email, data, rev, expected)| {
            row.push_bind(id.as_str())
                .push_bind(*email)
                .push_bind(data.as_str())
                .push_bind(*rev)
                .push_bind(*expected);
        });
        query.push(") AS v WHERE members.company = ");
        query.push_bind(company);
        query.push(
            " AND members.id = v.column1 AND members.email = v.column2 \
             AND members.rev = v.column5 RETURNING id",
        );
        let updated: Vec<(String,)> = query
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(write_error)?;
        if updated.len() == rows.len() {
            return Ok(());
        }
        let updated: HashSet<String> = updated.into_iter().map(|(id,)| id).collect();
        for (id, email, data, rev, expected) in &rows {
            if updated.contains(id) {
                continue;
            }
            let result = sqlx::query(
                "UPDATE members SET data = $1, email = $2, rev = $3 \
                 WHERE company = $4 AND id = $5 AND rev = $6",
            )
            .bind(data.as_str())
            .bind(*email)
            .bind(*rev)
            .bind(company)
            .bind(id.as_str())
            .bind(*expected)
            .execute(&mut *conn)
            .await
            .map_err(write_error)?;
            if result.rows_affected() != 1 {
                return Err(StoreError::Conflict);
            }
        }
        Ok(())
    }

    /// Deletes members of `company` (distinct ids) in one statement, each only at the
    /// revision it expects; any other revision (or a missing member) is
    /// [`StoreError::Conflict`].
    pub(super) async fn delete_members(
        conn: &mut DB::Connection,
        company: &str,
        deletes: &[(Uuid, u64)],
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(deletes.len());
        for (id, expected_rev) in deletes {
            rows.push((id.to_string(), to_i64(*expected_rev)?));
        }
        let mut query = QueryBuilder::<DB>::new("DELETE FROM members WHERE company = ");
        query.push_bind(company);
        query.push(" AND (id, rev) IN (");
        query.push_values(&rows, |mut row, (id, rev)| {
            row.push_bind(id.as_str()).push_bind(*rev);
        });
        query.push(")");
        let deleted = query.build().execute(&mut *conn).await?;
        if usize::try_from(deleted.rows_affected()).ok() != Some(rows.len()) {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }
}
