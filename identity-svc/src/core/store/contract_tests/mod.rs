//! The contract of the store traits ([`Store`]), one suite run on every backend; the cases
//! are grouped by concern: `log.rs` (organizations, load, events, audit listing, idempotency),
//! `commit.rs` (one commit), `batch.rs` (group commit), `tokens.rs`, `credentials.rs`,
//! `outbox.rs` (the mail outbox), on the fixtures of `fixtures.rs`. This file holds the harness and the list of cases.
//!
//! Each case is an `async fn(&dyn Store)`; [`contract!`] turns the list of cases into one
//! `#[tokio::test]` per case and backend: `sqlite::<case>` on a fresh database file, always,
//! and `postgres::<case>` on a fresh database created on the server named by `TEST_PG_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips, which
//! `TEST_REQUIRE_PG=1` forbids: the switch of `shared::testkit::pg`) and dropped afterwards,
//! since the server keeps state between runs. A PostgreSQL that cannot be reached fails the
//! tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use shared::testkit::pg::{self, TestDatabase};

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{Commit, CredentialStore, EventLog, SecretOp, Store};
use fixtures::{commit, current, organization, seed_org, target, updated};

mod batch;
mod commit;
mod credentials;
mod fixtures;
mod log;
mod outbox;
mod tokens;

type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
type Case = for<'a> fn(&'a dyn Store) -> CaseFuture<'a>;

/// Runs `case` on a fresh SQLite file.
async fn run_sqlite(case: Case) {
    on_sqlite(move |store| async move { case(&*store).await }).await;
}

/// Runs `test` on a store in a fresh SQLite file (also for tests of the core).
pub(crate) async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("identity.db"))
        .await
        .unwrap();
    test(Arc::new(store)).await;
}

/// Runs `case` on a fresh PostgreSQL database, dropped afterwards even if the case panics.
async fn run_postgres(case: Case) {
    on_postgres(move |store| async move { case(&*store).await }).await;
}

/// Runs `test` on a store in a fresh PostgreSQL database, dropped afterwards even if the test
/// panics (also for tests of the core). Honours the tests' PostgreSQL switch
/// (`TEST_PG_URL=off` skips, `TEST_REQUIRE_PG=1` forbids skipping: [`pg::admin_url`]).
pub(crate) async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(admin_url) = pg::admin_url("identity store test") else {
        return;
    };
    // Dropped (`WITH (FORCE)`) when this guard is, also while a panic unwinds.
    let database = TestDatabase::create(&admin_url, "identity_test").await;
    let store = PgStore::connect(database.url()).await.unwrap();
    test(Arc::new(store)).await;
}

// One test per case and backend, `sqlite::<case>` and `postgres::<case>` (plain functions:
// each name is a definition go-to-definition finds).
mod postgres;
mod sqlite;

// ---------------------------------------------------------------------------------------------
// SQLite only

#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let seed = seed_org(&store).await;
    let secrets = [SecretOp::SetPassword {
        user: seed.user,
        hash: "$argon2id$kept".to_owned(),
    }];
    let change = [updated(
        &seed.entities[0],
        &organization(seed.org, "Renamed"),
    )];
    store
        .commit(Commit {
            secrets: &secrets,
            request_id: Some("kept"),
            ..commit(seed.org, 3, &change)
        })
        .await
        .unwrap();
    let before = current(&store, seed.org).await;
    let events = store.events_after(seed.org, 0, 100).await.unwrap();
    drop(store);

    // Reopening also re-runs the migrator, which must find the schema up to date.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(current(&store, seed.org).await, before);
    assert_eq!(store.events_after(seed.org, 0, 100).await.unwrap(), events);
    assert_eq!(
        store.find_request(seed.org, "kept").await.unwrap(),
        Some(target(&seed.entities[0]))
    );
    assert_eq!(
        store
            .credentials(seed.org, seed.user)
            .await
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$kept")
    );
}
