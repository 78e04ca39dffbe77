//! PostgreSQL backend.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::StoreError;
use super::sql::{embedded_migrator, impl_sql_store};

/// The migrations in `migrations/postgres`, embedded.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)];

/// The store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and migrates the
    /// database. Concurrent starts are safe: the migrator holds an advisory lock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        embedded_migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self { pool })
    }
}

impl_sql_store!(PgStore, sqlx::Postgres);
