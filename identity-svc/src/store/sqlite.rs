//! SQLite backend: one database file, written through a small pool.

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::sql::{BatchRows, embedded_migrator, impl_sql_store};
use super::{Commit, StoreError};

/// The migrations in `migrations/sqlite`, embedded.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../migrations/sqlite/0001_init.sql"),
)];

/// The store in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: readers do not block the writer nor the writer the readers. sqlx leaves the
            // journal mode alone unless told.
            .journal_mode(SqliteJournalMode::Wal)
            // FULL, not NORMAL: in WAL mode NORMAL does not sync the WAL at each commit, so a
            // power loss can roll back commits that were already acknowledged. FULL syncs the
            // WAL on every commit, so an acknowledged write survives.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // A commit waiting for the write lock waits, it does not fail with SQLITE_BUSY.
            .busy_timeout(Duration::from_secs(5));
        // SQLite has one writer at a time anyway; a few connections serve concurrent reads.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // No ping before every statement (a round trip to the connection's worker thread
            // each): sqlx already pings a connection when it goes back to the pool.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        embedded_migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self { pool })
    }
}

impl SqliteStore {
    /// SQLite has no data-modifying `WITH`: every batch takes the general path.
    #[allow(clippy::unused_async)]
    async fn commit_in_one_statement(
        &self,
        _commits: &[Commit<'_>],
        _rows: &BatchRows<'_>,
        _new_seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}

impl_sql_store!(SqliteStore, sqlx::Sqlite);
