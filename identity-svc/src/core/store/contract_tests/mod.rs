//! The contract of the store traits ([`Store`]), one suite run on every backend; the cases
//! are grouped by concern: `log.rs` (organizations, load, events, audit listing, idempotency),
//! `commit.rs` (one commit), `batch.rs` (group commit), `tokens.rs`, `credentials.rs`, on the
//! fixtures of `fixtures.rs`. This file holds the harness and the list of cases.
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

/// One test per case and backend: `$concern::$case` becomes `sqlite::$case` and
/// `postgres::$case`.
macro_rules! contract {
    ($($concern:ident::$case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::run_sqlite(|store| Box::pin(super::$concern::$case(store))).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::run_postgres(|store| Box::pin(super::$concern::$case(store))).await;
                }
            )*
        }
    };
}

contract!(
    log::commit_creates_organization,
    commit::commit_at_expected_seq_advances_and_changes_rows,
    commit::stale_commit_conflicts_and_writes_nothing,
    commit::create_org_twice_conflicts,
    commit::empty_commit_keeps_sequence,
    log::events_after_is_gap_free_and_ascending,
    log::list_events_filters_and_pages,
    log::request_id_is_remembered_once,
    tokens::tokens_insert_find_revoke_list,
    credentials::invitation_tokens_put_find_delete,
    credentials::credentials_lifecycle,
    commit::concurrent_commits_exactly_one_wins,
    commit::concurrent_create_org_exactly_one_wins,
    log::sequences_follow_every_commit,
    batch::batch_writes_each_commit_as_if_one_after_the_other,
    batch::batch_net_entity_writes_match_sequential_commits,
    batch::stale_batch_conflicts_and_writes_nothing,
    batch::batch_with_a_used_request_id_writes_nothing,
    batch::batch_that_does_not_continue_is_refused,
    batch::batch_of_empty_and_secret_only_commits,
    batch::concurrent_batches_exactly_one_wins,
    batch::large_batch_spans_several_statements,
    commit::every_failed_commit_leaves_the_store_writable,
    commit::a_cancelled_commit_leaves_the_store_writable,
    log::streamed_load_hands_over_every_entity_once,
);

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
