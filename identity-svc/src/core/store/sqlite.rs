//! SQLite backend: one database file, read through a small pool and written through one
//! dedicated connection; its `Dialect`: a commit batch as one multi-statement query.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use super::SqlStore;
use super::sql::Dialect;
use super::sql::batch::{BatchRows, ROWS_PER_STATEMENT};
use super::sql::columns::to_i64;
use super::sql::commit::{push_deletes, push_events, push_requests, push_upserts};
use super::sql::writer::{Writer, WriterConnection};
use super::{Commit, StoreError};
use shared::migrations::{Embedded, embedded_migrator};

/// The migrations in `migrations/sqlite`, embedded.
pub(super) const MIGRATIONS: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        3,
        "tokens revoke time",
        include_str!("../../../migrations/sqlite/0003_tokens_revoke_time.sql"),
    ),
    (
        4,
        "mail outbox",
        include_str!("../../../migrations/sqlite/0004_mail_outbox.sql"),
    ),
];

/// The store in a SQLite database file. Commits go through one dedicated connection, kept
/// out of the pool, whose page cache stays warm.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
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
            // The automatic checkpoint (WAL pages copied into the database file, which is then
            // synced) runs inside the commit that crosses this many WAL pages. SQLite's default
            // of 1,000 pages is every ~100 commits at 100k users (a commit writes ~10 pages, on
            // random leaves): that commit took 6–11 ms, the p99 of sequential writes. At 10,000
            // (a WAL of up to ~40 MB) the pages written again and again between checkpoints are
            // copied once: `bench durable --users 100000`, same machine, back to back: p99
            // 10.5 → 3.3 ms, sequential mutations ÷ raw commits 0.375 → 0.435, 16 in flight
            // 1.18 → 1.62.
            .pragma("wal_autocheckpoint", "10000")
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
        Ok(Self {
            pool,
            writer: Arc::new(Writer::dedicated()),
        })
    }
}

impl Dialect for Sqlite {
    /// One writer at a time: a claim cannot interleave with another.
    const SKIP_LOCKED: &'static str = "";

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Writes a batch that neither creates the organization nor carries credential changes in
    /// **one** round trip to the connection's worker thread: a single query string holds
    /// `BEGIN IMMEDIATE`, every statement and `COMMIT` (SQLite has no data-modifying `WITH`,
    /// but one query can hold several statements; on this VM each round trip costs two thread
    /// wake-ups, more than the statement).
    ///
    /// The compare-and-set cannot be checked between the statements, so it fails instead: the
    /// sequence is set to `CASE WHEN seq = expected THEN new END`, NULL when another writer
    /// moved it, which the `NOT NULL` column refuses, and the statements after it do not run.
    /// On any error the transaction is rolled back; a connection whose rollback fails for
    /// another reason than "no transaction is active" is not reused. `None` when the batch
    /// needs the general path.
    async fn commit_in_one_statement(
        writer: &mut WriterConnection<'_, Sqlite>,
        commits: &[Commit<'_>],
        rows: &BatchRows<'_>,
        new_seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let first = &commits[0];
        if first.create_org || commits.iter().any(|c| !c.secrets.is_empty()) {
            return Ok(None);
        }
        let org = first.org.to_string();
        let mut query = QueryBuilder::<Sqlite>::new(
            "BEGIN IMMEDIATE; UPDATE org_sequences SET seq = CASE WHEN seq = ",
        );
        query
            .push_bind(to_i64(first.expected_seq)?)
            .push(" THEN ")
            .push_bind(to_i64(new_seq)?)
            .push(" END WHERE org_id = ")
            .push_bind(&org);
        for chunk in rows.deletes.chunks(ROWS_PER_STATEMENT) {
            query.push("; ");
            push_deletes(&mut query, &org, chunk);
        }
        for chunk in rows.upserts.chunks(ROWS_PER_STATEMENT) {
            query.push("; ");
            push_upserts(&mut query, &org, chunk, rows);
        }
        for chunk in rows.events.chunks(ROWS_PER_STATEMENT) {
            query.push("; ");
            push_events(&mut query, &org, chunk);
        }
        for chunk in rows.requests.chunks(ROWS_PER_STATEMENT) {
            query.push("; ");
            push_requests(&mut query, &org, chunk);
        }
        query.push("; COMMIT");
        let Err(e) = query.build().execute(writer.get()).await else {
            return Ok(Some(new_seq));
        };
        if let Err(rollback) = sqlx::raw_sql("ROLLBACK").execute(writer.get()).await {
            let none_active = matches!(&rollback, sqlx::Error::Database(db)
                if db.message().contains("no transaction is active"));
            if !none_active {
                writer.discard();
            }
        }
        Err(match &e {
            sqlx::Error::Database(db) => match db.kind() {
                // The sequence moved, or (no sequence row, so the writes refer to nothing)
                // the organization does not exist: not at the expected sequence either way.
                ErrorKind::NotNullViolation | ErrorKind::ForeignKeyViolation => {
                    StoreError::Conflict
                }
                ErrorKind::UniqueViolation if db.message().contains("request_ids") => {
                    StoreError::DuplicateRequest
                }
                ErrorKind::UniqueViolation => StoreError::Conflict,
                _ => StoreError::Database(e),
            },
            _ => StoreError::Database(e),
        })
    }
}
