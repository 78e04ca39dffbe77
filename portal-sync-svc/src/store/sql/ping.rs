//! [`DatabaseStore`]: whether the database answers (the health probe).

use async_trait::async_trait;

use super::{Backend, SqlStore};
use crate::store::{DatabaseStore, StoreError};

#[async_trait]
impl<DB: Backend> DatabaseStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    async fn ping(&self) -> Result<(), StoreError> {
        shared::pool_metrics::record_pool_use(&self.pool);
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
