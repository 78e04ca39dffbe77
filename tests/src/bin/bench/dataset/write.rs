//! Writing the seed: multi-row INSERTs of the rows `Store::commit` would have written.

use identity_svc::domain::model::Change;
use identity_svc::store::TokenRecord;
use uuid::Uuid;

use crate::backend::Backend;

/// Rows per multi-row INSERT of the seed.
const BULK_ROWS: usize = 500;

/// Writes the seed as the store would have committed it: one transaction with the
/// organization's sequence row, one `entities` row and one `events` row (`<kind>.created`) per
/// change. `Store::commit` of the same changes gives the same rows but sends one statement per
/// row (about 900k at 100k users: ~50 s on SQLite); multi-row INSERTs take a few seconds. The
/// store opens the database first (so its migrations run), and the token goes through
/// `Store::insert_token`. The smoke run checks the server loads and answers from it.
pub(crate) async fn write_seed(
    backend: &Backend,
    org: Uuid,
    changes: &[Change],
    token: &TokenRecord,
    time: i64,
) -> anyhow::Result<()> {
    let store = backend.identity_store().await?;
    if let Some(pg) = &backend.pg {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(pg.url())
            .await?;
        bulk_insert!(sqlx::Postgres, pool, org, changes, time);
    } else {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(backend.sqlite_path())
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            // A page cache large enough for the whole seed: with the default 2 MB, the
            // random-key B-tree inserts keep re-reading pages from the WAL.
            .pragma("cache_size", "-2000000");
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        bulk_insert!(sqlx::Sqlite, pool, org, changes, time);
    }
    store.insert_token(token).await?;
    Ok(())
}

/// The body of [`write_seed`] for one database type.
macro_rules! bulk_insert {
    ($db:ty, $pool:expr, $org:expr, $changes:expr, $time:expr) => {{
        let org = $org.to_string();
        let mut tx = $pool.begin().await?;
        sqlx::query("INSERT INTO org_sequences (org_id, seq) VALUES ($1, $2)")
            .bind(&org)
            .bind(i64::try_from($changes.len())?)
            .execute(&mut *tx)
            .await?;
        let mut seq = 0i64;
        for chunk in $changes.chunks(BULK_ROWS) {
            let mut rows = Vec::with_capacity(chunk.len());
            for c in chunk {
                let e = c
                    .after
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("the seed only creates"))?;
                seq += 1;
                rows.push((seq, e.kind(), e.key(), serde_json::to_string(e)?, c));
            }
            let mut q =
                sqlx::QueryBuilder::<$db>::new("INSERT INTO entities (org_id, kind, key, data) ");
            q.push_values(&rows, |mut b, (_, kind, key, data, _)| {
                b.push_bind(org.as_str())
                    .push_bind(*kind)
                    .push_bind(key.as_str())
                    .push_bind(data.as_str());
            });
            q.build().execute(&mut *tx).await?;
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO events (org_id, seq, actor, action, target, before, after, \
                 affected_users, request_id, time) ",
            );
            q.push_values(&rows, |mut b, (seq, _, _, data, c)| {
                b.push_bind(org.as_str())
                    .push_bind(*seq)
                    .push_bind("operator")
                    .push_bind(c.action.as_str())
                    .push_bind(c.target.as_str())
                    .push("NULL")
                    .push_bind(data.as_str())
                    .push_bind("[]")
                    .push("NULL")
                    .push_bind($time);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }};
}
use bulk_insert;
