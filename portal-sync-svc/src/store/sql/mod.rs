//! The one SQL implementation of the store traits, shared by SQLite and PostgreSQL: the
//! [`SqlStore`] over a pool of either database, and what every concern's statements share
//! (error mapping, number conversions; the migrator is the kit's `shared::migrations`).
//! Connecting is the backends' business ([`super::sqlite`], [`super::postgres`]).
//!
//! The schema (`migrations/{sqlite,postgres}/*.sql`, the same text for both) uses only TEXT
//! and BIGINT, and every statement is written in the dialect both databases accept (`$N`
//! placeholders, `ON CONFLICT .. DO UPDATE/NOTHING`, `UPDATE .. RETURNING`), so the two
//! backends differ only in their pool type. Each concern's statements are plain generic code,
//! `impl<DB: Backend> … for SqlStore<DB>` with the [`Backend`] bounds spelled out once per
//! `impl` block, one file per concern:
//!
//! | file | owns |
//! |------|------|
//! | `companies.rs` | companies and their infrastructures (identity tokens included, sealed) |
//! | `members.rs` | reading members and `apply`, the batch transaction |
//! | `member_writes.rs` | the multi-row member statements `apply` runs |
//! | `runs.rs` | cutting a batch into runs of those statements |
//! | `cursors.rs` | the sync state of an infrastructure |
//! | `leases.rs` | the sync lease of an infrastructure, and the fencing check of `apply` |
//! | `community.rs` | Community accounts |
//! | `cases.rs` | support cases and approved contacts |
//! | `events.rs` | the gap-free audit events of a company |
//! | `rows.rs` | row types and their conversion to domain types |
//! | `migrations.rs` | (tests) every migration file is in its backend's embedded list |
//!
//! Every write transaction of a company starts with `reserve_events` — the
//! `UPDATE company_seq .. RETURNING seq` that allocates the sequence numbers of its events —
//! so that on SQLite the transaction takes the write lock with its first statement (no lock
//! upgrade that could fail with SQLITE_BUSY) and on PostgreSQL the row lock orders the
//! company's writers; the events stay gap-free because the sequence and the events commit or
//! roll back together.

use std::sync::Arc;

use shared::sealing::Keyring;
use sqlx::{Database, Decode, Encode, IntoArguments, Pool, Type};

use super::StoreError;

mod cases;
mod community;
mod companies;
mod cursors;
mod events;
mod leases;
mod member_writes;
mod members;
#[cfg(test)]
mod migrations;
mod ping;
mod rows;
pub(super) mod runs;

/// The store in a database `DB` (SQLite or PostgreSQL), behind a pool.
///
/// The backends name it [`SqliteStore`](super::sqlite::SqliteStore) and
/// [`PgStore`](super::postgres::PgStore) and open it.
///
/// Identity tokens are sealed with `keyring` before they are written and opened when read
/// (`shared::sealing`): the database never holds one in clear.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    pub(super) keyring: Arc<Keyring>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            keyring: Arc::clone(&self.keyring),
        }
    }
}

/// A database the shared statements run on: SQLite and PostgreSQL.
///
/// The rest of what the statements need of a database concerns other types — a
/// `&mut DB::Connection` executes queries, a `usize` indexes a row, `&str`, `i64`, `String`
/// and their `Option`s are [`Column`]s of `DB` — and Rust does not carry such bounds from a
/// trait to its users, so every generic `impl` block of this module states them, in this
/// same `where` clause:
///
/// ```text
/// impl<DB: Backend> … for SqlStore<DB>
/// where
///     for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
///     for<'q> &'q str: Encode<'q, DB> + Type<DB>,
///     usize: ColumnIndex<DB::Row>,
///     i64: Column<DB>,
///     String: Column<DB>,
///     Option<i64>: Column<DB>,
///     Option<String>: Column<DB>,
/// ```
pub trait Backend: Database<Arguments: IntoArguments<Self>, QueryResult: RowsAffected> {}

impl<DB> Backend for DB where DB: Database<Arguments: IntoArguments<DB>, QueryResult: RowsAffected> {}

/// The number of rows a statement wrote (each driver has its own result type; the backends
/// implement this).
pub trait RowsAffected {
    /// Rows inserted, updated or deleted.
    fn rows_affected(&self) -> u64;
}

/// A value stored in a column of database `DB` and read back (`i64`, `String` and their
/// `Option`s here).
pub trait Column<DB: Database>: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> {}

impl<DB: Database, T> Column<DB> for T where
    T: Type<DB> + for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB>
{
}

/// Maps the error of a write: a unique violation means the row (or the company + email) is
/// taken, [`StoreError::Conflict`]; a foreign-key violation means a referenced row is
/// missing, [`StoreError::NotFound`].
fn write_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(error),
    }
}

/// A revision or sequence number as a BIGINT.
fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} exceeds BIGINT")))
}

/// A BIGINT as a revision or sequence number.
fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative number {value}")))
}
