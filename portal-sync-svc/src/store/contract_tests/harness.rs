//! The harness of the contract suite: a case is an `async fn(&dyn PortalStore)`, run by
//! [`run_sqlite`] on a fresh database file, always, and by [`run_postgres`] on a fresh database
//! `portal_test_<uuid>` created through `PORTAL_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards, even when the case
//! panics, since the server keeps state between runs. A PostgreSQL that cannot be reached fails
//! the tests; `PORTAL_TEST_PG_URL=off` skips them (saying so), unless `PORTAL_REQUIRE_PG=1`.

use std::future::Future;
use std::pin::Pin;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use crate::store::PortalStore;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;

type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub(super) type Case = for<'a> fn(&'a dyn PortalStore) -> CaseFuture<'a>;

/// Runs `case` on a fresh SQLite file.
pub(super) async fn run_sqlite(case: Case) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("portal.db"))
        .await
        .unwrap();
    case(&store).await;
}

/// The PostgreSQL server to test against: `PORTAL_TEST_PG_URL`, by default the machine's
/// `postgres://postgres@127.0.0.1:5432/postgres`. `PORTAL_TEST_PG_URL=off` skips the
/// PostgreSQL variants (saying so), which `PORTAL_REQUIRE_PG=1` (CI) turns into a failure.
fn pg_url() -> Option<String> {
    let url = std::env::var("PORTAL_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if url != "off" {
        return Some(url);
    }
    let required =
        std::env::var("PORTAL_REQUIRE_PG").is_ok_and(|v| matches!(v.as_str(), "1" | "true"));
    assert!(!required, "PORTAL_REQUIRE_PG=1 but PORTAL_TEST_PG_URL=off");
    None
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match params {
        Some(params) => format!("{base}/{database}?{params}"),
        None => format!("{base}/{database}"),
    }
}

/// Runs `body` with the URL of a fresh PostgreSQL database, dropped afterwards even if `body`
/// panics.
pub(super) async fn with_pg_database<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = pg_url() else {
        eprintln!("SKIPPED: PORTAL_TEST_PG_URL=off, PostgreSQL contract test not run");
        return;
    };
    let name = format!("portal_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();

    // In a task of its own so that a panic comes back here and the database is dropped.
    let outcome = tokio::spawn(body(with_database(&url, &name))).await;

    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// Runs `case` on a fresh PostgreSQL database.
pub(super) async fn run_postgres(case: Case) {
    with_pg_database(|url| async move {
        let store = PgStore::connect(&url).await.unwrap();
        case(&store).await;
    })
    .await;
}
