//! The PostgreSQL backend: connecting to and migrating the database, and what differs from
//! SQLite in the driver's types. The statements are shared with SQLite ([`SqlStore`], `sql/`).

use std::sync::Arc;

use shared::sealing::Keyring;
use sqlx::postgres::{PgPoolOptions, PgQueryResult};

use shared::migrations::{Embedded, embedded_migrator};

use super::StoreError;
use super::sql::{RowsAffected, SqlStore};

/// The migrations in `migrations/postgres`, embedded.
pub(super) const MIGRATIONS: &[Embedded] = &[(
    1,
    "init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)];

/// The store in a PostgreSQL database.
pub type PgStore = SqlStore<sqlx::Postgres>;

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and migrates the
    /// database; identity tokens are sealed with `keyring`. Concurrent starts are safe: the
    /// migrator holds an advisory lock.
    pub async fn connect(url: &str, keyring: Arc<Keyring>) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(shared::unavailable::CONNECTION_WAIT)
            .connect(url)
            .await?;
        embedded_migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self { pool, keyring })
    }
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
    }
}
