//! PostgreSQL backend: a pool for reads and commits alike, generic plans; its `Dialect`: a
//! commit batch as one statement (data-modifying `WITH` over arrays).

use std::sync::Arc;

use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgPoolOptions, PgQueryResult};
use sqlx::query::QueryAs;

use super::SqlStore;
use super::sql::Dialect;
use super::sql::batch::BatchRows;
use super::sql::columns::to_i64;
use super::sql::writer::{Writer, WriterConnection};
use super::{Commit, StoreError};
use shared::migrations::{Embedded, embedded_migrator};

/// The migrations in `migrations/postgres`, embedded.
pub(super) const MIGRATIONS: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        3,
        "tokens revoke time",
        include_str!("../../../migrations/postgres/0003_tokens_revoke_time.sql"),
    ),
    (
        4,
        "mail outbox",
        include_str!("../../../migrations/postgres/0004_mail_outbox.sql"),
    ),
];

/// The store in a PostgreSQL database. Commits of the general path take pooled connections:
/// PostgreSQL writes in parallel across organizations.
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and migrates the
    /// database. Concurrent starts are safe: the migrator holds an advisory lock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(shared::unavailable::CONNECTION_WAIT)
            // No ping before every statement (a round trip each): sqlx already pings a
            // connection when it goes back to the pool and drops it if it is broken.
            .test_before_acquire(false)
            // Generic plans: every statement is prepared once per connection, but PostgreSQL
            // re-plans a prepared statement on each execution while it thinks a plan for the
            // actual values is cheaper, which it always does for the commit statement (an
            // `unnest` of an array parameter is estimated at 10 rows in a generic plan, at its
            // length in a custom one): ~0.3 ms of planning per commit. Every statement here is
            // keyed by its columns (the list filters are built per shape), so a generic plan
            // is the plan a custom one would be.
            .connect_with(
                url.parse::<sqlx::postgres::PgConnectOptions>()?
                    .options([("plan_cache_mode", "force_generic_plan")]),
            )
            .await?;
        embedded_migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self {
            pool,
            writer: Arc::new(Writer::Pooled),
        })
    }
}

/// A batch as one statement: every write is conditioned on the compare-and-set of the sequence
/// row (`cas`); the rows come as arrays ([`BatchArrays`], parameters `$4` to `$19`), so the
/// text is the same for every batch. Returns 1 when the compare-and-set matched.
const ONE_STATEMENT_COMMIT: &str = "WITH cas AS ( \
         UPDATE org_sequences SET seq = $2 WHERE org_id = $1 AND seq = $3 RETURNING seq \
     ), deleted AS ( \
         DELETE FROM entities e \
         USING unnest($4::text[], $5::text[]) AS d (kind, key) \
         WHERE e.org_id = $1 AND e.kind = d.kind AND e.key = d.key \
         AND EXISTS (SELECT 1 FROM cas) \
     ), upserted AS ( \
         INSERT INTO entities (org_id, kind, key, data) \
         SELECT $1, u.kind, u.key, u.data \
         FROM unnest($6::text[], $7::text[], $8::text[]) AS u (kind, key, data) \
         WHERE EXISTS (SELECT 1 FROM cas) \
         ON CONFLICT (org_id, kind, key) DO UPDATE SET data = excluded.data \
     ), inserted AS ( \
         INSERT INTO events (org_id, seq, actor, action, target, before, after, \
         affected_users, request_id, time) \
         SELECT $1, v.seq, v.actor, v.action, v.target, v.before, v.after, \
         v.affected_users, v.request_id, v.time \
         FROM unnest($9::bigint[], $10::text[], $11::text[], $12::text[], \
         $13::text[], $14::text[], $15::text[], $16::text[], $17::bigint[]) \
         AS v (seq, actor, action, target, before, after, affected_users, \
         request_id, time) \
         WHERE EXISTS (SELECT 1 FROM cas) \
     ), requested AS ( \
         INSERT INTO request_ids (org_id, request_id, target) \
         SELECT $1, r.request_id, r.target \
         FROM unnest($18::text[], $19::text[]) AS r (request_id, target) \
         WHERE EXISTS (SELECT 1 FROM cas) \
     ) \
     SELECT count(*) FROM cas";

impl Dialect for Postgres {
    /// Replicas claiming at once skip each other's rows instead of waiting for them.
    const SKIP_LOCKED: &'static str = "FOR UPDATE SKIP LOCKED";

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Writes a batch that neither creates the organization nor carries credential changes
    /// as **one** statement, outside of an explicit transaction: one round trip and one WAL
    /// flush instead of BEGIN, one statement per table and COMMIT. `None` when the batch needs
    /// the general path.
    ///
    /// Every write of the statement is conditioned on the compare-and-set of the sequence row
    /// (`cas`), which runs first and takes the row lock; a statement is atomic, so a conflict
    /// or a duplicate request id writes nothing. The arrays keep the text of the statement
    /// the same for every batch, so it is prepared once per connection.
    async fn commit_in_one_statement(
        writer: &mut WriterConnection<'_, Postgres>,
        commits: &[Commit<'_>],
        rows: &BatchRows<'_>,
        new_seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let first = &commits[0];
        if first.create_org || commits.iter().any(|c| !c.secrets.is_empty()) {
            return Ok(None);
        }
        let query = sqlx::query_as(ONE_STATEMENT_COMMIT)
            .bind(first.org.to_string())
            .bind(to_i64(new_seq)?)
            .bind(to_i64(first.expected_seq)?);
        let (matched,): (i64,) = BatchArrays::new(rows)
            .bind(query)
            .fetch_one(writer.get())
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    if db.constraint() == Some("request_ids_pkey") {
                        StoreError::DuplicateRequest
                    } else {
                        StoreError::Conflict
                    }
                }
                _ => StoreError::Database(e),
            })?;
        if matched != 1 {
            return Err(StoreError::Conflict);
        }
        Ok(Some(new_seq))
    }
}

/// The rows of a batch as one array per column: parameters `$4` to `$19` of
/// [`ONE_STATEMENT_COMMIT`].
struct BatchArrays<'a> {
    delete_kinds: Vec<&'a str>,
    delete_keys: Vec<&'a str>,
    upsert_kinds: Vec<&'a str>,
    upsert_keys: Vec<&'a str>,
    upsert_data: Vec<Option<&'a str>>,
    seqs: Vec<i64>,
    actors: Vec<&'a str>,
    actions: Vec<&'a str>,
    targets: Vec<&'a str>,
    befores: Vec<Option<&'a str>>,
    afters: Vec<Option<&'a str>>,
    affected: Vec<&'a str>,
    request_ids: Vec<Option<&'a str>>,
    times: Vec<i64>,
    request_keys: Vec<&'a str>,
    request_targets: Vec<&'a str>,
}

impl<'a> BatchArrays<'a> {
    fn new(rows: &'a BatchRows<'_>) -> Self {
        let (delete_kinds, delete_keys) = rows
            .deletes
            .iter()
            .map(|(kind, key)| (*kind, key.as_str()))
            .unzip();
        let mut upsert_kinds = Vec::with_capacity(rows.upserts.len());
        let mut upsert_keys = Vec::with_capacity(rows.upserts.len());
        let mut upsert_data = Vec::with_capacity(rows.upserts.len());
        for (kind, key, event) in &rows.upserts {
            upsert_kinds.push(*kind);
            upsert_keys.push(key.as_str());
            upsert_data.push(rows.events[*event].after.as_deref());
        }
        let n = rows.events.len();
        let (request_keys, request_targets) = rows.requests.iter().copied().unzip();
        let mut arrays = Self {
            delete_kinds,
            delete_keys,
            upsert_kinds,
            upsert_keys,
            upsert_data,
            seqs: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            targets: Vec::with_capacity(n),
            befores: Vec::with_capacity(n),
            afters: Vec::with_capacity(n),
            affected: Vec::with_capacity(n),
            request_ids: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            request_keys,
            request_targets,
        };
        for e in &rows.events {
            arrays.seqs.push(e.seq);
            arrays.actors.push(e.actor);
            arrays.actions.push(e.action);
            arrays.targets.push(e.target);
            arrays.befores.push(e.before.as_deref());
            arrays.afters.push(e.after.as_deref());
            arrays.affected.push(e.affected_users.as_str());
            arrays.request_ids.push(e.request_id);
            arrays.times.push(e.time);
        }
        arrays
    }

    /// Binds the arrays, in order, after the first three parameters.
    fn bind<'q, O>(
        self,
        query: QueryAs<'q, Postgres, O, PgArguments>,
    ) -> QueryAs<'q, Postgres, O, PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.delete_kinds)
            .bind(self.delete_keys)
            .bind(self.upsert_kinds)
            .bind(self.upsert_keys)
            .bind(self.upsert_data)
            .bind(self.seqs)
            .bind(self.actors)
            .bind(self.actions)
            .bind(self.targets)
            .bind(self.befores)
            .bind(self.afters)
            .bind(self.affected)
            .bind(self.request_ids)
            .bind(self.times)
            .bind(self.request_keys)
            .bind(self.request_targets)
    }
}
