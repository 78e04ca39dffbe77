//! The harness of the contract suite: a case is an `async fn(&dyn PortalStore)`, run by
//! [`run_sqlite`] on a fresh database file, always, and by [`run_postgres`] on a fresh database
//! `portal_test_<uuid>` ([`TestDatabase`]) dropped afterwards, even when the case panics, since
//! the server keeps state between runs. The PostgreSQL switch is the one of every suite
//! ([`shared::testkit::pg`]): `TEST_PG_URL` names the server (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; unreachable, the tests fail), `TEST_PG_URL=off`
//! skips the PostgreSQL cases (saying so), which `TEST_REQUIRE_PG=1` turns into a failure.

use std::future::Future;
use std::pin::Pin;

use shared::testkit::pg::{self, TestDatabase};

use crate::store::PortalStore;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::test_keyring;

type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub(super) type Case = for<'a> fn(&'a dyn PortalStore) -> CaseFuture<'a>;

/// Runs `case` on a fresh SQLite file.
pub(super) async fn run_sqlite(case: Case) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("portal.db"), test_keyring())
        .await
        .unwrap();
    case(&store).await;
}

/// Runs `body` with the URL of a fresh PostgreSQL database (dropped with its guard, even if
/// `body` panics), unless the switch says to skip PostgreSQL (`TEST_PG_URL=off`).
pub(super) async fn with_pg_database<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    // The test harness names the thread after the test.
    let test = std::thread::current()
        .name()
        .unwrap_or("store contract")
        .to_owned();
    let Some(admin) = pg::admin_url(&test) else {
        return;
    };
    let db = TestDatabase::create(&admin, "portal_test").await;
    body(db.url().to_owned()).await;
}

/// Runs `case` on a fresh PostgreSQL database.
pub(super) async fn run_postgres(case: Case) {
    with_pg_database(|url| async move {
        let store = PgStore::connect(&url, test_keyring()).await.unwrap();
        case(&store).await;
    })
    .await;
}
