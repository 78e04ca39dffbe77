//! The one SQL implementation of the store traits, shared by SQLite and PostgreSQL: the
//! [`SqlStore`] of a database `DB`, and the [`Dialect`] hooks in which the two databases differ.
//!
//! The schema (`migrations/{sqlite,postgres}/0001_init.sql`, the same text) uses only TEXT and
//! BIGINT, and every statement is written in the dialect both databases accept (`$N`
//! placeholders, `ON CONFLICT .. DO UPDATE`), so each trait is implemented once, for
//! `SqlStore<DB>` over any `DB` that has the bounds below, with the statement text and the row
//! mapping next to it. One exception: a commit batch without credential changes is written in
//! one round trip whose SQL each database expresses its own way
//! ([`Dialect::commit_in_one_statement`], in `sqlite.rs` and `postgres.rs`); otherwise the batch
//! is written in a transaction, one multi-row statement per table (`commit.rs`).
//!
//! Where each concern lives:
//! - `log.rs`: [`EventLog`](crate::core::store::EventLog): organizations, the start-up load, the
//!   commit entry point, change events, the audit listing, idempotency keys, sequences;
//! - `commit.rs`: the general commit path (compare-and-set, entities, events, request ids and
//!   the credential changes of a batch in one transaction);
//! - `batch.rs`: a batch of commits checked and turned into rows; `writer.rs`: the connection
//!   commits write through;
//! - `tokens.rs`: [`TokenStore`](crate::core::store::TokenStore);
//! - `credentials.rs`: [`CredentialStore`](crate::core::store::CredentialStore);
//! - `outbox.rs`: [`MailOutbox`](crate::core::store::MailOutbox): the mail outbox's claim with
//!   a lease, the outcome of each attempt, a user's delivery, the gauges;
//! - `columns.rs`: column conversions every table shares; `migrations.rs` (tests): every
//!   migration file is in its backend's embedded list (the kit's `shared::migrations` runs it).
//!
//! The generic impls state what they need of `DB` in their `where` clause (an executor for
//! its connections and pools, TEXT as `&str`/`String` and BIGINT as `i64`, rows indexed by
//! position): Rust does not carry such bounds along with a `DB: Dialect` bound, so each impl
//! states them again; [`SqliteStore`](super::sqlite::SqliteStore) and
//! [`PgStore`](super::postgres::PgStore) satisfy them.

use std::sync::Arc;

use sqlx::{Database, Decode, Encode, IntoArguments, Pool, Type};

use crate::core::store::{Commit, StoreError};

pub(crate) mod batch;
pub(crate) mod columns;
pub(crate) mod commit;
mod credentials;
mod log;
#[cfg(test)]
mod migrations;
mod outbox;
mod tokens;
pub(crate) mod writer;

use batch::BatchRows;
use writer::{Writer, WriterConnection};

/// The store in a database `DB`; its constructors are in the backend's module
/// ([`SqliteStore::open`](super::sqlite::SqliteStore::open),
/// [`PgStore::connect`](super::postgres::PgStore::connect)).
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    /// Reads, and the writes outside of commits.
    pub(super) pool: Pool<DB>,
    /// Commits go through it (see [`Writer`]).
    pub(super) writer: Arc<Writer<DB>>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: Arc::clone(&self.writer),
        }
    }
}

/// What SQLite and PostgreSQL do each their own way.
pub(crate) trait Dialect: Database<Arguments: IntoArguments<Self>> {
    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The locking clause of the mail outbox's claim (`FOR UPDATE SKIP LOCKED` where replicas
    /// claim at once; nothing where one writer runs at a time).
    const SKIP_LOCKED: &'static str;

    /// Writes a batch that neither creates the organization nor carries credential changes in
    /// one round trip, all or nothing, and returns `new_seq`; `None` when the batch needs the
    /// general path (a transaction, see `commit.rs`). On error the connection is left usable or
    /// marked [discarded](WriterConnection::discard).
    fn commit_in_one_statement(
        writer: &mut WriterConnection<'_, Self>,
        commits: &[Commit<'_>],
        rows: &BatchRows<'_>,
        new_seq: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

/// A column type the statements both bind and read: TEXT as `String`, BIGINT as `i64`.
pub(crate) trait Column<DB: Database>:
    for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>
{
}

impl<DB: Database, T> Column<DB> for T where
    T: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>
{
}
