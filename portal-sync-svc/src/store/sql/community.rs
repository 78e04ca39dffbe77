//! Community accounts ([`CommunityStore`]), by email.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Type};

use super::rows::parse_email;
use super::{Backend, Column, RowsAffected, SqlStore};
use crate::domain::model::{Email, Micros};
use crate::store::{CommunityStore, StoreError};

/// Largest number of emails bound in one `IN (..)` list (both databases allow far more).
const IN_LIST_CHUNK: usize = 500;

#[async_trait]
impl<DB: Backend> CommunityStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn register_community_account(
        &self,
        email: &Email,
        time: Micros,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO community_accounts (email, create_time) VALUES ($1, $2) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(email.as_str())
        .bind(time)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_community_account(&self, email: &Email) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM community_accounts WHERE email = $1")
            .bind(email.as_str())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn community_accounts(&self, emails: &[Email]) -> Result<Vec<Email>, StoreError> {
        let mut found = Vec::new();
        for chunk in emails.chunks(IN_LIST_CHUNK) {
            let mut query =
                QueryBuilder::<DB>::new("SELECT email FROM community_accounts WHERE email IN (");
            let mut list = query.separated(", ");
            for email in chunk {
                list.push_bind(email.as_str().to_owned());
            }
            query.push(")");
            let rows: Vec<(String,)> = query.build_query_as().fetch_all(&self.pool).await?;
            for (email,) in rows {
                found.push(parse_email(&email)?);
            }
        }
        // Sorted, each once, whatever the duplicates and chunks of the input.
        found.sort();
        found.dedup();
        Ok(found)
    }
}
