//! The SQLite backend: opening (creating) and migrating one database file, written through a
//! small pool, and what differs from PostgreSQL in the driver's types. The statements are
//! shared with PostgreSQL ([`SqlStore`], `sql/`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shared::sealing::Keyring;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use shared::migrations::{Embedded, embedded_migrator};

use super::StoreError;
use super::sql::{RowsAffected, SqlStore};

/// The migrations in `migrations/sqlite`, embedded.
pub(super) const MIGRATIONS: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "sync leases",
        include_str!("../../migrations/sqlite/0002_sync_leases.sql"),
    ),
];

/// The store in a SQLite database file.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the database file at `path`; identity
    /// tokens are sealed with `keyring`.
    pub async fn open(path: &Path, keyring: Arc<Keyring>) -> Result<Self, StoreError> {
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
            // A transaction waiting for the write lock waits, it does not fail with
            // SQLITE_BUSY (every write transaction writes first, see `sql`).
            .busy_timeout(Duration::from_secs(5));
        // SQLite has one writer at a time anyway; a few connections serve concurrent reads.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        embedded_migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self { pool, keyring })
    }
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}
