//! The contract of [`Store`], one suite run on every backend.
//!
//! Each case is an `async fn(&dyn Store)`; [`contract!`] turns the list of cases into one
//! `#[tokio::test]` per case and backend: `sqlite::<case>` on a fresh database file, always,
//! and `postgres::<case>` on a fresh database created through `IDENTITY_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards, since the server
//! keeps state between runs. A PostgreSQL that cannot be reached fails the tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{
    Commit, Credentials, EventFilter, EventRecord, InvitationToken, SecretOp, Store, StoreError,
    TokenKind, TokenRecord,
};
use crate::domain::email::Email;
use crate::domain::model::{
    Change, Entity, Micros, Organization, Principal, Stage, StagePurpose, User, UserState,
};

// ---------------------------------------------------------------------------------------------
// Harness

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

/// The PostgreSQL server to test against: `IDENTITY_TEST_PG_URL`, by default the machine's
/// `postgres://postgres@127.0.0.1:5432/postgres`. `IDENTITY_TEST_PG_URL=off` skips the
/// PostgreSQL variants (saying so), which `IDENTITY_REQUIRE_PG=1` (CI) turns into a failure.
fn pg_url() -> Option<String> {
    let url = std::env::var("IDENTITY_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if url != "off" {
        return Some(url);
    }
    let required =
        std::env::var("IDENTITY_REQUIRE_PG").is_ok_and(|v| matches!(v.as_str(), "1" | "true"));
    assert!(
        !required,
        "IDENTITY_REQUIRE_PG=1 but IDENTITY_TEST_PG_URL=off"
    );
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

/// Runs `case` on a fresh PostgreSQL database, dropped afterwards even if the case panics.
async fn run_postgres(case: Case) {
    on_postgres(move |store| async move { case(&*store).await }).await;
}

/// Runs `test` on a store in a fresh PostgreSQL database, dropped afterwards even if the test
/// panics (also for tests of the core).
pub(crate) async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = pg_url() else {
        eprintln!("SKIPPED: IDENTITY_TEST_PG_URL=off, PostgreSQL test not run");
        return;
    };
    let name = format!("identity_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();

    let outcome = async {
        let store: Arc<dyn Store> = Arc::new(PgStore::connect(&with_database(&url, &name)).await?);
        // In a task of its own so that a panic comes back here and the database is dropped.
        let outcome = tokio::spawn(test(store)).await;
        Ok::<_, StoreError>(outcome)
    }
    .await;

    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    if let Err(panic) = outcome.unwrap() {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// One test per case and backend.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::run_sqlite(|store| Box::pin(super::$case(store))).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::run_postgres(|store| Box::pin(super::$case(store))).await;
                }
            )*
        }
    };
}

contract!(
    commit_creates_organization,
    commit_at_expected_seq_advances_and_changes_rows,
    stale_commit_conflicts_and_writes_nothing,
    create_org_twice_conflicts,
    empty_commit_keeps_sequence,
    events_after_is_gap_free_and_ascending,
    list_events_filters_and_pages,
    request_id_is_remembered_once,
    tokens_insert_find_revoke_list,
    invitation_tokens_put_find_delete,
    credentials_lifecycle,
    concurrent_commits_exactly_one_wins,
    concurrent_create_org_exactly_one_wins,
    sequences_follow_every_commit,
    batch_writes_each_commit_as_if_one_after_the_other,
    batch_net_entity_writes_match_sequential_commits,
    stale_batch_conflicts_and_writes_nothing,
    batch_with_a_used_request_id_writes_nothing,
    batch_that_does_not_continue_is_refused,
    batch_of_empty_and_secret_only_commits,
    concurrent_batches_exactly_one_wins,
    large_batch_spans_several_statements,
    every_failed_commit_leaves_the_store_writable,
    a_cancelled_commit_leaves_the_store_writable,
    streamed_load_hands_over_every_entity_once,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

const T0: Micros = 1_700_000_000_000_000;
const SECOND: Micros = 1_000_000;

fn organization(id: Uuid, name: &str) -> Entity {
    Entity::Organization(Organization {
        id,
        display_name: name.to_owned(),
        create_time: T0,
        update_time: T0,
        rev: 1,
    })
}

fn user(id: Uuid, email: &str, name: &str) -> Entity {
    Entity::User(User {
        id,
        email: Email::parse(email).unwrap(),
        display_name: name.to_owned(),
        state: UserState::Active,
        registered: true,
        create_time: T0,
        update_time: T0,
        rev: 1,
    })
}

fn stage(key: &str, order: u32, purpose: StagePurpose) -> Entity {
    Entity::Stage(Stage {
        key: key.to_owned(),
        display_name: key.to_uppercase(),
        order,
        purpose,
        rev: 1,
    })
}

fn target(entity: &Entity) -> String {
    format!("{}s/{}", entity.kind(), entity.key())
}

fn created(entity: &Entity) -> Change {
    Change {
        action: format!("{}.created", entity.kind()),
        target: target(entity),
        before: None,
        after: Some(entity.clone()),
        affected_users: Vec::new(),
    }
}

fn updated(before: &Entity, after: &Entity) -> Change {
    Change {
        action: format!("{}.updated", after.kind()),
        target: target(after),
        before: Some(before.clone()),
        after: Some(after.clone()),
        affected_users: Vec::new(),
    }
}

fn deleted(entity: &Entity) -> Change {
    Change {
        action: format!("{}.deleted", entity.kind()),
        target: target(entity),
        before: Some(entity.clone()),
        after: None,
        affected_users: Vec::new(),
    }
}

/// A commit of `changes` at `expected_seq`, by `operator` at [`T0`], without secrets.
fn commit(org: Uuid, expected_seq: u64, changes: &[Change]) -> Commit<'_> {
    Commit {
        org,
        expected_seq,
        create_org: false,
        actor: "operator",
        request_id: None,
        time: T0,
        changes,
        secrets: &[],
    }
}

/// The entities of a new organization: itself, a user and a stage.
struct Seed {
    org: Uuid,
    user: Uuid,
    entities: Vec<Entity>,
}

/// Creates an organization of three entities; its sequence is then 3.
async fn seed_org(store: &dyn Store) -> Seed {
    let org = Uuid::new_v4();
    let user_id = Uuid::new_v4();
    let entities = vec![
        organization(org, "Acme"),
        user(user_id, "Ada@Example.com", "Ada"),
        stage("development", 0, StagePurpose::Development),
    ];
    let changes: Vec<Change> = entities.iter().map(created).collect();
    let seq = store
        .commit(Commit {
            create_org: true,
            ..commit(org, 0, &changes)
        })
        .await
        .unwrap();
    assert_eq!(seq, 3);
    Seed {
        org,
        user: user_id,
        entities,
    }
}

fn sorted(mut entities: Vec<Entity>) -> Vec<Entity> {
    entities.sort_by_key(|e| (e.kind(), e.key()));
    entities
}

async fn current(store: &dyn Store, org: Uuid) -> (u64, Vec<Entity>) {
    let loaded = store.load_organization(org).await.unwrap().unwrap();
    assert_eq!(loaded.org, org);
    (loaded.seq, sorted(loaded.entities))
}

fn seqs(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn token(org: Uuid, principal: Principal, kind: TokenKind, created: Micros) -> TokenRecord {
    let id = Uuid::new_v4();
    TokenRecord {
        id,
        hash: format!("hash-{}", id.simple()),
        kind,
        org,
        principal,
        create_time: created,
        expire_time: created + 3600 * SECOND,
        revoke_time: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

async fn commit_creates_organization(store: &dyn Store) {
    assert!(store.organization_ids().await.unwrap().is_empty());
    let seed = seed_org(store).await;

    let (seq, entities) = current(store, seed.org).await;
    assert_eq!(seq, 3);
    assert_eq!(entities, sorted(seed.entities.clone()));
    assert_eq!(store.organization_ids().await.unwrap(), vec![seed.org]);
    assert!(
        store
            .load_organization(Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );

    // A second organization is independent.
    let other = seed_org(store).await;
    let mut ids = store.organization_ids().await.unwrap();
    ids.sort();
    let mut expected = vec![seed.org, other.org];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(current(store, seed.org).await.1, sorted(seed.entities));
}

async fn sequences_follow_every_commit(store: &dyn Store) {
    assert!(store.sequences().await.unwrap().is_empty());
    let a = seed_org(store).await;
    let b = seed_org(store).await;
    let mut expected = vec![(a.org, 3), (b.org, 3)];
    expected.sort();
    let mut got = store.sequences().await.unwrap();
    got.sort();
    assert_eq!(got, expected);

    let qa = stage("qa", 1, StagePurpose::NonProduction);
    store
        .commit(commit(b.org, 3, &[created(&qa)]))
        .await
        .unwrap();
    let mut got = store.sequences().await.unwrap();
    got.sort();
    let mut expected = vec![(a.org, 3), (b.org, 4)];
    expected.sort();
    assert_eq!(got, expected);

    // A commit that loses the race leaves the sequence where it was.
    assert!(
        store
            .commit(commit(a.org, 2, &[created(&qa)]))
            .await
            .is_err()
    );
    assert!(store.sequences().await.unwrap().contains(&(a.org, 3)));
}

async fn commit_at_expected_seq_advances_and_changes_rows(store: &dyn Store) {
    let seed = seed_org(store).await;
    let old_user = seed.entities[1].clone();
    let new_user = user(seed.user, "ada@example.com", "Ada Lovelace");
    let development = seed.entities[2].clone();
    let qa = stage("qa", 1, StagePurpose::NonProduction);
    let changes = [
        updated(&old_user, &new_user),
        deleted(&development),
        created(&qa),
    ];
    assert_eq!(
        store.commit(commit(seed.org, 3, &changes)).await.unwrap(),
        6
    );
    let (seq, entities) = current(store, seed.org).await;
    assert_eq!(seq, 6);
    assert_eq!(
        entities,
        sorted(vec![seed.entities[0].clone(), new_user.clone(), qa.clone()])
    );

    // A change whose key changes moves the row: the old key is gone.
    let test = stage("test", 1, StagePurpose::NonProduction);
    assert_eq!(
        store
            .commit(commit(seed.org, 6, &[updated(&qa, &test)]))
            .await
            .unwrap(),
        7
    );
    let (seq, entities) = current(store, seed.org).await;
    assert_eq!(seq, 7);
    assert_eq!(
        entities,
        sorted(vec![seed.entities[0].clone(), new_user, test])
    );
}

async fn stale_commit_conflicts_and_writes_nothing(store: &dyn Store) {
    let seed = seed_org(store).await;
    let renamed = organization(seed.org, "Acme 2");
    let first = [updated(&seed.entities[0], &renamed)];
    assert_eq!(store.commit(commit(seed.org, 3, &first)).await.unwrap(), 4);
    let before = current(store, seed.org).await;

    // Validated against sequence 3, which is gone: everything is refused.
    let qa = stage("qa", 1, StagePurpose::NonProduction);
    let stale_changes = [
        updated(&seed.entities[0], &organization(seed.org, "Stale")),
        deleted(&seed.entities[1]),
        created(&qa),
    ];
    let stale_token = token(seed.org, Principal::User(seed.user), TokenKind::Session, T0);
    let secrets = [
        SecretOp::SetPassword {
            user: seed.user,
            hash: "$argon2id$stale".to_owned(),
        },
        SecretOp::PutInvitationToken {
            hash: "stale-invitation".to_owned(),
            invitation: Uuid::new_v4(),
            user: seed.user,
            expire_time: T0,
        },
        SecretOp::PutToken(stale_token.clone()),
    ];
    for expected_seq in [3, 5, 100] {
        let result = store
            .commit(Commit {
                request_id: Some("stale-request"),
                secrets: &secrets,
                ..commit(seed.org, expected_seq, &stale_changes)
            })
            .await;
        assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    }

    assert_eq!(current(store, seed.org).await, before);
    assert_eq!(
        seqs(&store.events_after(seed.org, 0, 100).await.unwrap()),
        [1, 2, 3, 4]
    );
    assert_eq!(
        store.find_request(seed.org, "stale-request").await.unwrap(),
        None
    );
    assert_eq!(
        store.credentials(seed.org, seed.user).await.unwrap(),
        Credentials::default()
    );
    assert_eq!(
        store
            .find_invitation_token("stale-invitation")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.find_token(&stale_token.hash).await.unwrap(), None);

    // An organization that does not exist is not at any sequence.
    let unknown = Uuid::new_v4();
    let result = store
        .commit(commit(unknown, 0, &[created(&organization(unknown, "X"))]))
        .await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    assert!(store.load_organization(unknown).await.unwrap().is_none());
}

async fn create_org_twice_conflicts(store: &dyn Store) {
    let seed = seed_org(store).await;
    let changes = [created(&organization(seed.org, "Again"))];
    let result = store
        .commit(Commit {
            create_org: true,
            ..commit(seed.org, 0, &changes)
        })
        .await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    assert_eq!(current(store, seed.org).await, (3, sorted(seed.entities)));
    assert_eq!(
        seqs(&store.events_after(seed.org, 0, 100).await.unwrap()),
        [1, 2, 3]
    );
}

async fn empty_commit_keeps_sequence(store: &dyn Store) {
    let seed = seed_org(store).await;
    assert_eq!(store.commit(commit(seed.org, 3, &[])).await.unwrap(), 3);
    assert_eq!(current(store, seed.org).await.0, 3);

    // Secrets alone do not move the sequence either, but are written.
    let secrets = [SecretOp::SetPassword {
        user: seed.user,
        hash: "$argon2id$a".to_owned(),
    }];
    let seq = store
        .commit(Commit {
            secrets: &secrets,
            request_id: Some("secrets-only"),
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(seq, 3);
    assert_eq!(current(store, seed.org).await.0, 3);
    assert_eq!(
        store
            .credentials(seed.org, seed.user)
            .await
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$a")
    );
    // No change, so no target to remember.
    assert_eq!(
        store.find_request(seed.org, "secrets-only").await.unwrap(),
        None
    );
    assert!(
        store
            .events_after(seed.org, 3, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn events_after_is_gap_free_and_ascending(store: &dyn Store) {
    let seed = seed_org(store).await;
    let mut all: Vec<Change> = seed.entities.iter().map(created).collect();
    let mut seq = 3;
    let mut entity = seed.entities[1].clone();
    for i in 0..7 {
        let next = user(seed.user, "ada@example.com", &format!("Ada {i}"));
        let mut change = updated(&entity, &next);
        change.affected_users = vec![seed.user, Uuid::new_v4()];
        seq = store
            .commit(Commit {
                actor: "users/ada",
                time: T0 + i,
                ..commit(seed.org, seq, std::slice::from_ref(&change))
            })
            .await
            .unwrap();
        all.push(change);
        entity = next;
    }
    assert_eq!(seq, 10);

    let events = store.events_after(seed.org, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), (1..=10).collect::<Vec<_>>());
    for (event, change) in events.iter().zip(&all) {
        assert_eq!(event.org, seed.org);
        assert_eq!(&event.change(), change);
        assert_eq!(event.request_id, None);
    }
    assert_eq!(events[0].actor, "operator");
    assert_eq!(events[0].time, T0);
    assert_eq!(events[9].actor, "users/ada");
    assert_eq!(events[9].time, T0 + 6);

    assert_eq!(
        seqs(&store.events_after(seed.org, 4, 3).await.unwrap()),
        [5, 6, 7]
    );
    assert!(
        store
            .events_after(seed.org, 10, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.events_after(seed.org, 0, 0).await.unwrap().is_empty());
    assert!(
        store
            .events_after(Uuid::new_v4(), 0, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Paging by `after` visits every event once, in order.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(seed.org, after, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, events);
}

async fn list_events_filters_and_pages(store: &dyn Store) {
    let seed = seed_org(store).await; // events 1..=3 by operator at T0
    let mut seq = 3;
    // Events 4..=9: actors alternate, times advance a second each, targets alternate.
    let mut stages = Vec::new();
    for i in 0..6u32 {
        let entity = stage(&format!("s{i}"), i + 1, StagePurpose::NonProduction);
        let change = if i % 3 == 2 {
            deleted(&stages.pop().unwrap())
        } else {
            stages.push(entity.clone());
            created(&entity)
        };
        seq = store
            .commit(Commit {
                actor: if i % 2 == 0 { "users/ada" } else { "users/bob" },
                time: T0 + Micros::from(i + 1) * SECOND,
                ..commit(seed.org, seq, &[change])
            })
            .await
            .unwrap();
    }
    assert_eq!(seq, 9);
    let all = store.events_after(seed.org, 0, 100).await.unwrap();
    let list = |filter: EventFilter, after: u64, limit: usize| async move {
        store
            .list_events(seed.org, &filter, after, limit)
            .await
            .unwrap()
    };
    let expect = |pred: &dyn Fn(&EventRecord) -> bool| -> Vec<u64> {
        all.iter().filter(|e| pred(e)).map(|e| e.seq).collect()
    };

    assert_eq!(list(EventFilter::default(), 0, 100).await, all);

    let by_actor = EventFilter {
        actor: Some("users/ada".to_owned()),
        ..EventFilter::default()
    };
    assert_eq!(seqs(&list(by_actor.clone(), 0, 100).await), [4, 6, 8]);
    assert_eq!(seqs(&list(by_actor.clone(), 4, 100).await), [6, 8]);
    assert_eq!(seqs(&list(by_actor, 4, 1).await), [6]);

    let by_target = EventFilter {
        target: Some("stages/s0".to_owned()),
        ..EventFilter::default()
    };
    let want = expect(&|e| e.target == "stages/s0");
    assert!(!want.is_empty());
    assert_eq!(seqs(&list(by_target, 0, 100).await), want);

    let by_action = EventFilter {
        action: Some("stage.deleted".to_owned()),
        ..EventFilter::default()
    };
    assert_eq!(seqs(&list(by_action, 0, 100).await), [6, 9]);

    let by_time = EventFilter {
        start_time: Some(T0 + 2 * SECOND),
        end_time: Some(T0 + 5 * SECOND),
        ..EventFilter::default()
    };
    // Times: event 4 at +1s ... event 9 at +6s; [+2s, +5s) is events 5, 6, 7.
    assert_eq!(seqs(&list(by_time, 0, 100).await), [5, 6, 7]);
    let since = EventFilter {
        start_time: Some(T0 + 6 * SECOND),
        ..EventFilter::default()
    };
    assert_eq!(seqs(&list(since, 0, 100).await), [9]);
    let until = EventFilter {
        end_time: Some(T0 + SECOND),
        ..EventFilter::default()
    };
    assert_eq!(seqs(&list(until, 0, 100).await), [1, 2, 3]);

    let combined = EventFilter {
        actor: Some("users/bob".to_owned()),
        action: Some("stage.created".to_owned()),
        start_time: Some(T0),
        ..EventFilter::default()
    };
    assert_eq!(
        seqs(&list(combined, 0, 100).await),
        expect(&|e| e.actor == "users/bob" && e.action == "stage.created")
    );
    let nothing = EventFilter {
        actor: Some("nobody".to_owned()),
        ..EventFilter::default()
    };
    assert!(list(nothing, 0, 100).await.is_empty());

    // Paging through a filter by `after`.
    let from_t0 = EventFilter {
        start_time: Some(T0),
        ..EventFilter::default()
    };
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = list(from_t0.clone(), after, 2).await;
        assert!(page.len() <= 2);
        let Some(tail) = page.last() else { break };
        after = tail.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

async fn request_id_is_remembered_once(store: &dyn Store) {
    let seed = seed_org(store).await;
    let qa = stage("qa", 1, StagePurpose::NonProduction);
    let prod = stage("production", 2, StagePurpose::Production);
    let changes = [created(&qa), created(&prod)];
    let seq = store
        .commit(Commit {
            request_id: Some("req-1"),
            ..commit(seed.org, 3, &changes)
        })
        .await
        .unwrap();
    assert_eq!(seq, 5);
    assert_eq!(
        store
            .find_request(seed.org, "req-1")
            .await
            .unwrap()
            .as_deref(),
        Some("stages/qa")
    );
    assert_eq!(store.find_request(seed.org, "req-2").await.unwrap(), None);
    assert_eq!(
        store.find_request(Uuid::new_v4(), "req-1").await.unwrap(),
        None
    );
    let events = store.events_after(seed.org, 3, 100).await.unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.request_id.as_deref() == Some("req-1"))
    );

    // The same key again, even at the right sequence: refused, nothing written.
    let again = [created(&stage("uat", 3, StagePurpose::NonProduction))];
    let result = store
        .commit(Commit {
            request_id: Some("req-1"),
            ..commit(seed.org, 5, &again)
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::DuplicateRequest)),
        "{result:?}"
    );
    assert_eq!(current(store, seed.org).await.0, 5);
    assert!(
        store
            .events_after(seed.org, 5, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Keys are per organization.
    let other = seed_org(store).await;
    let seq = store
        .commit(Commit {
            request_id: Some("req-1"),
            ..commit(other.org, 3, &again)
        })
        .await
        .unwrap();
    assert_eq!(seq, 4);
    assert_eq!(
        store
            .find_request(other.org, "req-1")
            .await
            .unwrap()
            .as_deref(),
        Some("stages/uat")
    );
}

async fn tokens_insert_find_revoke_list(store: &dyn Store) {
    let seed = seed_org(store).await;
    let ada = Principal::User(seed.user);
    let robot = Principal::ServiceAccount(Uuid::new_v4());

    let first = token(seed.org, ada, TokenKind::Session, T0);
    store.insert_token(&first).await.unwrap();
    assert_eq!(
        store.find_token(&first.hash).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.find_token("unknown").await.unwrap(), None);

    assert!(store.revoke_token(first.id, T0 + SECOND).await.unwrap());
    assert!(!store.revoke_token(first.id, T0 + 2 * SECOND).await.unwrap());
    assert!(!store.revoke_token(Uuid::new_v4(), T0).await.unwrap());
    let revoked = store.find_token(&first.hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoke_time, Some(T0 + SECOND));

    let second = token(seed.org, ada, TokenKind::Session, T0 + 10 * SECOND);
    let third = token(seed.org, ada, TokenKind::Session, T0 + 20 * SECOND);
    store.insert_token(&second).await.unwrap();
    let robot_token = token(seed.org, robot, TokenKind::ServiceAccount, T0 + 5 * SECOND);
    let robot_other = token(seed.org, robot, TokenKind::ServiceAccount, T0 + 6 * SECOND);
    // Tokens written by a commit, and a revocation of all of Ada's tokens.
    let secrets = [
        SecretOp::PutToken(third.clone()),
        SecretOp::PutToken(robot_token.clone()),
        SecretOp::PutToken(robot_other.clone()),
        SecretOp::RevokeTokensOf {
            principal: ada,
            at: T0 + 30 * SECOND,
        },
        SecretOp::RevokeToken {
            id: robot_other.id,
            at: T0 + 31 * SECOND,
        },
    ];
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();

    let listed = store.list_tokens(seed.org, ada).await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [third.id, second.id, first.id],
        "newest first"
    );
    // Revoked from T0 + 30 s on: the commit's revocations, not the earlier one nor live tokens.
    let mut recent = store.revoked_since(T0 + 30 * SECOND).await.unwrap();
    recent.sort();
    let mut expected = vec![second.id, third.id, robot_other.id];
    expected.sort();
    assert_eq!(recent, expected);
    assert_eq!(
        store.revoked_since(T0 + 31 * SECOND).await.unwrap(),
        vec![robot_other.id]
    );
    assert!(
        store
            .revoked_since(T0 + 32 * SECOND)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.revoked_since(T0).await.unwrap().len(), 4);
    // The token revoked earlier keeps its revocation time.
    assert_eq!(
        listed.iter().map(|t| t.revoke_time).collect::<Vec<_>>(),
        [
            Some(T0 + 30 * SECOND),
            Some(T0 + 30 * SECOND),
            Some(T0 + SECOND)
        ]
    );
    let robots = store.list_tokens(seed.org, robot).await.unwrap();
    assert_eq!(
        robots,
        vec![
            TokenRecord {
                revoke_time: Some(T0 + 31 * SECOND),
                ..robot_other
            },
            robot_token.clone()
        ]
    );
    assert_eq!(
        store.find_token(&robot_token.hash).await.unwrap(),
        Some(robot_token)
    );
    assert!(
        store
            .list_tokens(Uuid::new_v4(), ada)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_tokens(seed.org, Principal::ServiceAccount(seed.user))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn invitation_tokens_put_find_delete(store: &dyn Store) {
    let seed = seed_org(store).await;
    let invitation = Uuid::new_v4();
    let other_user = Uuid::new_v4();
    let secrets = [
        SecretOp::PutInvitationToken {
            hash: "inv-1".to_owned(),
            invitation,
            user: seed.user,
            expire_time: T0 + 7 * 24 * 3600 * SECOND,
        },
        SecretOp::PutInvitationToken {
            hash: "inv-2".to_owned(),
            invitation,
            user: seed.user,
            expire_time: T0 + SECOND,
        },
        SecretOp::PutInvitationToken {
            hash: "inv-other".to_owned(),
            invitation: Uuid::new_v4(),
            user: other_user,
            expire_time: T0,
        },
    ];
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(
        store.find_invitation_token("inv-1").await.unwrap(),
        Some(InvitationToken {
            org: seed.org,
            invitation,
            user: seed.user,
            expire_time: T0 + 7 * 24 * 3600 * SECOND,
        })
    );
    assert!(
        store
            .find_invitation_token("inv-2")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.find_invitation_token("nope").await.unwrap(), None);

    let delete = [SecretOp::DeleteInvitationTokens { user: seed.user }];
    store
        .commit(Commit {
            secrets: &delete,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(store.find_invitation_token("inv-1").await.unwrap(), None);
    assert_eq!(store.find_invitation_token("inv-2").await.unwrap(), None);
    assert!(
        store
            .find_invitation_token("inv-other")
            .await
            .unwrap()
            .is_some()
    );
}

async fn credentials_lifecycle(store: &dyn Store) {
    let seed = seed_org(store).await;
    let creds = |user| async move { store.credentials(seed.org, user).await.unwrap() };
    assert_eq!(creds(seed.user).await, Credentials::default());

    let set = |hash: &str| {
        [SecretOp::SetPassword {
            user: seed.user,
            hash: hash.to_owned(),
        }]
    };
    let secrets = set("$argon2id$first");
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$first".to_owned()),
            failed_logins: 0,
            locked_until: None,
        }
    );

    store
        .set_login_failures(seed.org, seed.user, 5, Some(T0 + 60 * SECOND))
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$first".to_owned()),
            failed_logins: 5,
            locked_until: Some(T0 + 60 * SECOND),
        }
    );

    // A new password keeps the counters.
    let secrets = set("$argon2id$second");
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$second".to_owned()),
            failed_logins: 5,
            locked_until: Some(T0 + 60 * SECOND),
        }
    );
    store
        .set_login_failures(seed.org, seed.user, 0, None)
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$second".to_owned()),
            failed_logins: 0,
            locked_until: None,
        }
    );

    // Counters of a user without a password.
    let stranger = Uuid::new_v4();
    store
        .set_login_failures(seed.org, stranger, u32::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        creds(stranger).await,
        Credentials {
            password_hash: None,
            failed_logins: u32::MAX,
            locked_until: None,
        }
    );

    let delete = [SecretOp::DeleteCredentials { user: seed.user }];
    store
        .commit(Commit {
            secrets: &delete,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(creds(seed.user).await, Credentials::default());
    assert_eq!(creds(stranger).await.failed_logins, u32::MAX);
    // Credentials are per organization.
    assert_eq!(
        store.credentials(Uuid::new_v4(), stranger).await.unwrap(),
        Credentials::default()
    );
}

async fn concurrent_commits_exactly_one_wins(store: &dyn Store) {
    let seed = seed_org(store).await;
    let mut seq = 3;
    let mut entity = seed.entities[1].clone();
    for round in 0..10 {
        let a = user(seed.user, "ada@example.com", &format!("A{round}"));
        let b = user(seed.user, "ada@example.com", &format!("B{round}"));
        let change_a = [updated(&entity, &a)];
        let change_b = [updated(&entity, &b)];
        // Two commits validated against the same sequence, on two connections at once.
        let (result_a, result_b) = tokio::join!(
            store.commit(commit(seed.org, seq, &change_a)),
            store.commit(commit(seed.org, seq, &change_b)),
        );
        let winner = match (result_a, result_b) {
            (Ok(new), Err(StoreError::Conflict)) => {
                assert_eq!(new, seq + 1);
                a
            }
            (Err(StoreError::Conflict), Ok(new)) => {
                assert_eq!(new, seq + 1);
                b
            }
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        seq += 1;
        let (loaded_seq, entities) = current(store, seed.org).await;
        assert_eq!(loaded_seq, seq);
        assert!(entities.contains(&winner));
        entity = winner;
    }
    let events = store.events_after(seed.org, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), (1..=13).collect::<Vec<_>>());
}

async fn concurrent_create_org_exactly_one_wins(store: &dyn Store) {
    for _ in 0..5 {
        let org = Uuid::new_v4();
        let a = [created(&organization(org, "A"))];
        let b = [created(&organization(org, "B"))];
        let create = |changes| Commit {
            create_org: true,
            ..commit(org, 0, changes)
        };
        let (result_a, result_b) = tokio::join!(store.commit(create(&a)), store.commit(create(&b)));
        let winner = match (result_a, result_b) {
            (Ok(1), Err(StoreError::Conflict)) => &a[0],
            (Err(StoreError::Conflict), Ok(1)) => &b[0],
            other => panic!("expected one winner, got {other:?}"),
        };
        let (seq, entities) = current(store, org).await;
        assert_eq!(seq, 1);
        assert_eq!(entities, vec![winner.after.clone().unwrap()]);
        assert_eq!(seqs(&store.events_after(org, 0, 100).await.unwrap()), [1]);
    }
}

// ---------------------------------------------------------------------------------------------
// Batches (group commit)

/// Everything observable of an organization: sequence, entities, events, and the given
/// request ids.
async fn observable(
    store: &dyn Store,
    org: Uuid,
    request_ids: &[&str],
) -> (u64, Vec<Entity>, Vec<EventRecord>, Vec<Option<String>>) {
    let (seq, entities) = current(store, org).await;
    let events = store.events_after(org, 0, 10_000).await.unwrap();
    let mut requests = Vec::new();
    for id in request_ids {
        requests.push(store.find_request(org, id).await.unwrap());
    }
    (seq, entities, events, requests)
}

async fn batch_writes_each_commit_as_if_one_after_the_other(store: &dyn Store) {
    let seed = seed_org(store).await;
    let qa = stage("qa", 1, StagePurpose::NonProduction);
    let prod = stage("production", 2, StagePurpose::Production);
    let renamed = user(seed.user, "ada@example.com", "Ada Lovelace");
    let first = [created(&qa), updated(&seed.entities[1], &renamed)];
    let second = [created(&prod)];
    let third = [deleted(&seed.entities[2])];
    let secrets = [SecretOp::SetPassword {
        user: seed.user,
        hash: "$argon2id$batch".to_owned(),
    }];
    let batch = [
        Commit {
            actor: "users/ada",
            request_id: Some("first"),
            time: T0 + 1,
            ..commit(seed.org, 3, &first)
        },
        Commit {
            actor: "operator",
            time: T0 + 2,
            secrets: &secrets,
            ..commit(seed.org, 5, &second)
        },
        Commit {
            actor: "users/bob",
            request_id: Some("third"),
            time: T0 + 3,
            ..commit(seed.org, 6, &third)
        },
    ];
    assert_eq!(store.commit_batch(&batch).await.unwrap(), 7);

    let (seq, entities) = current(store, seed.org).await;
    assert_eq!(seq, 7);
    assert_eq!(
        entities,
        sorted(vec![seed.entities[0].clone(), renamed, qa.clone(), prod])
    );
    let events = store.events_after(seed.org, 3, 100).await.unwrap();
    assert_eq!(seqs(&events), [4, 5, 6, 7]);
    let expected: Vec<(&Change, &str, Option<&str>, Micros)> = vec![
        (&first[0], "users/ada", Some("first"), T0 + 1),
        (&first[1], "users/ada", Some("first"), T0 + 1),
        (&second[0], "operator", None, T0 + 2),
        (&third[0], "users/bob", Some("third"), T0 + 3),
    ];
    for (event, (change, actor, request_id, time)) in events.iter().zip(expected) {
        assert_eq!(&event.change(), change);
        assert_eq!(event.actor, actor);
        assert_eq!(event.request_id.as_deref(), request_id);
        assert_eq!(event.time, time);
    }
    // Each commit's key is remembered with the target of its own first change.
    assert_eq!(
        store.find_request(seed.org, "first").await.unwrap(),
        Some(target(&qa))
    );
    assert_eq!(
        store.find_request(seed.org, "third").await.unwrap(),
        Some(target(&seed.entities[2]))
    );
    assert_eq!(
        store
            .credentials(seed.org, seed.user)
            .await
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$batch")
    );
}

async fn batch_net_entity_writes_match_sequential_commits(store: &dyn Store) {
    // The same commits, once in a batch and once one by one, on two organizations: an
    // entity created then changed, one whose key moves twice, one deleted then created again.
    let a = seed_org(store).await;
    let b = seed_org(store).await;
    let run = |entities: &[Entity]| {
        let old_user = entities[1].clone();
        let development = entities[2].clone();
        let qa = stage("qa", 1, StagePurpose::NonProduction);
        let qa2 = stage("qa", 5, StagePurpose::NonProduction);
        let test = stage("test", 1, StagePurpose::NonProduction);
        let uat = stage("uat", 1, StagePurpose::NonProduction);
        let user2 = user(entities[1].key().parse().unwrap(), "x@example.com", "X");
        let dev2 = stage("development", 9, StagePurpose::Development);
        vec![
            vec![created(&qa), updated(&qa, &qa2)],
            vec![updated(&qa2, &test), deleted(&development)],
            vec![updated(&test, &uat), created(&dev2)],
            vec![deleted(&old_user)],
            vec![created(&user2)],
        ]
    };
    let changes_a = run(&a.entities);
    let changes_b = run(&b.entities);

    let mut seq = 3;
    let mut batch = Vec::new();
    for changes in &changes_a {
        batch.push(commit(a.org, seq, changes));
        seq += changes.len() as u64;
    }
    assert_eq!(store.commit_batch(&batch).await.unwrap(), seq);

    let mut seq_b = 3;
    for changes in &changes_b {
        seq_b = store.commit(commit(b.org, seq_b, changes)).await.unwrap();
    }
    assert_eq!(seq_b, seq);

    let (seq_a, entities_a) = current(store, a.org).await;
    let (seq_b, entities_b) = current(store, b.org).await;
    assert_eq!(seq_a, seq_b);
    // The organizations differ only by their own record and user ids.
    let strip = |entities: Vec<Entity>| -> Vec<Entity> {
        entities
            .into_iter()
            .filter(|e| !matches!(e, Entity::Organization(_) | Entity::User(_)))
            .collect()
    };
    assert_eq!(strip(entities_a.clone()), strip(entities_b.clone()));
    assert_eq!(
        strip(entities_a.clone()),
        vec![
            stage("development", 9, StagePurpose::Development),
            stage("uat", 1, StagePurpose::NonProduction),
        ]
    );
    assert_eq!(entities_a.len(), 4);
    assert_eq!(entities_b.len(), 4);
    let events_a = store.events_after(a.org, 0, 100).await.unwrap();
    let events_b = store.events_after(b.org, 0, 100).await.unwrap();
    assert_eq!(seqs(&events_a), (1..=seq_a).collect::<Vec<_>>());
    assert_eq!(seqs(&events_b), seqs(&events_a));
}

async fn stale_batch_conflicts_and_writes_nothing(store: &dyn Store) {
    let seed = seed_org(store).await;
    let before = observable(store, seed.org, &["one", "two"]).await;
    let qa = stage("qa", 1, StagePurpose::NonProduction);
    let prod = stage("production", 2, StagePurpose::Production);
    let one = [created(&qa)];
    let two = [created(&prod)];
    let secrets = [SecretOp::SetPassword {
        user: seed.user,
        hash: "$argon2id$stale".to_owned(),
    }];
    // With and without credential changes (PostgreSQL writes the latter as one statement).
    for (expected, secrets) in [2, 4, 100]
        .into_iter()
        .flat_map(|e| [(e, &secrets[..]), (e, &[][..])])
    {
        let batch = [
            Commit {
                request_id: Some("one"),
                ..commit(seed.org, expected, &one)
            },
            Commit {
                request_id: Some("two"),
                secrets,
                ..commit(seed.org, expected + 1, &two)
            },
        ];
        let result = store.commit_batch(&batch).await;
        assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    }
    assert_eq!(observable(store, seed.org, &["one", "two"]).await, before);
    assert_eq!(
        store.credentials(seed.org, seed.user).await.unwrap(),
        Credentials::default()
    );
}

async fn batch_with_a_used_request_id_writes_nothing(store: &dyn Store) {
    let seed = seed_org(store).await;
    let qa = stage("qa", 1, StagePurpose::NonProduction);
    store
        .commit(Commit {
            request_id: Some("used"),
            ..commit(seed.org, 3, &[created(&qa)])
        })
        .await
        .unwrap();
    let keys = ["used", "fresh", "twice"];
    let before = observable(store, seed.org, &keys).await;
    let prod = stage("production", 2, StagePurpose::Production);
    let uat = stage("uat", 3, StagePurpose::NonProduction);
    let one = [created(&prod)];
    let two = [created(&uat)];
    let secrets = [SecretOp::SetPassword {
        user: seed.user,
        hash: "$argon2id$dup".to_owned(),
    }];

    // A key committed before, in the second commit of the batch.
    let batch = [
        Commit {
            request_id: Some("fresh"),
            secrets: &secrets,
            ..commit(seed.org, 4, &one)
        },
        Commit {
            request_id: Some("used"),
            ..commit(seed.org, 5, &two)
        },
    ];
    let result = store.commit_batch(&batch).await;
    assert!(
        matches!(result, Err(StoreError::DuplicateRequest)),
        "{result:?}"
    );
    // The same new key twice in one batch.
    let batch = [
        Commit {
            request_id: Some("twice"),
            ..commit(seed.org, 4, &one)
        },
        Commit {
            request_id: Some("twice"),
            ..commit(seed.org, 5, &two)
        },
    ];
    let result = store.commit_batch(&batch).await;
    assert!(
        matches!(result, Err(StoreError::DuplicateRequest)),
        "{result:?}"
    );
    assert_eq!(observable(store, seed.org, &keys).await, before);
    assert_eq!(
        store.credentials(seed.org, seed.user).await.unwrap(),
        Credentials::default()
    );

    // Without the offending commit the rest goes through.
    assert_eq!(store.commit_batch(&batch[..1]).await.unwrap(), 5);
}

async fn batch_that_does_not_continue_is_refused(store: &dyn Store) {
    let seed = seed_org(store).await;
    let before = observable(store, seed.org, &[]).await;
    let other = seed_org(store).await;
    let qa = [created(&stage("qa", 1, StagePurpose::NonProduction))];
    let prod = [created(&stage("production", 2, StagePurpose::Production))];
    let refused: Vec<Vec<Commit<'_>>> = vec![
        // Empty.
        vec![],
        // A gap after the first commit.
        vec![commit(seed.org, 3, &qa), commit(seed.org, 5, &prod)],
        // An overlap.
        vec![commit(seed.org, 3, &qa), commit(seed.org, 3, &prod)],
        // Another organization.
        vec![commit(seed.org, 3, &qa), commit(other.org, 4, &prod)],
        // Creating the organization after the first commit.
        vec![
            commit(seed.org, 3, &qa),
            Commit {
                create_org: true,
                ..commit(seed.org, 4, &prod)
            },
        ],
    ];
    for batch in &refused {
        let result = store.commit_batch(batch).await;
        assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
    }
    assert_eq!(observable(store, seed.org, &[]).await, before);
    assert_eq!(current(store, other.org).await.0, 3);
}

async fn batch_of_empty_and_secret_only_commits(store: &dyn Store) {
    let seed = seed_org(store).await;
    // Nothing at all: the sequence stays, nothing is checked nor written.
    let nothing = [commit(seed.org, 3, &[]), commit(seed.org, 3, &[])];
    assert_eq!(store.commit_batch(&nothing).await.unwrap(), 3);

    // Empty and secret-only commits between changes keep their place.
    let qa = [created(&stage("qa", 1, StagePurpose::NonProduction))];
    let prod = [created(&stage("production", 2, StagePurpose::Production))];
    let secrets = [SecretOp::SetPassword {
        user: seed.user,
        hash: "$argon2id$between".to_owned(),
    }];
    let batch = [
        commit(seed.org, 3, &qa),
        commit(seed.org, 4, &[]),
        Commit {
            secrets: &secrets,
            request_id: Some("secrets-only"),
            ..commit(seed.org, 4, &[])
        },
        commit(seed.org, 4, &prod),
    ];
    assert_eq!(store.commit_batch(&batch).await.unwrap(), 5);
    assert_eq!(
        seqs(&store.events_after(seed.org, 0, 100).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        store
            .credentials(seed.org, seed.user)
            .await
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$between")
    );
    assert_eq!(
        store.find_request(seed.org, "secrets-only").await.unwrap(),
        None
    );
    // Secrets alone still take part in the compare-and-set.
    let stale = [Commit {
        secrets: &secrets,
        ..commit(seed.org, 3, &[])
    }];
    let result = store.commit_batch(&stale).await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
}

async fn concurrent_batches_exactly_one_wins(store: &dyn Store) {
    let seed = seed_org(store).await;
    let mut seq = 3;
    for round in 0..5u32 {
        let a: Vec<Change> = (0..3)
            .map(|i| {
                created(&stage(
                    &format!("a{round}-{i}"),
                    i,
                    StagePurpose::NonProduction,
                ))
            })
            .collect();
        let b: Vec<Change> = (0..2)
            .map(|i| {
                created(&stage(
                    &format!("b{round}-{i}"),
                    i,
                    StagePurpose::NonProduction,
                ))
            })
            .collect();
        let batch_a = [
            commit(seed.org, seq, &a[..1]),
            commit(seed.org, seq + 1, &a[1..]),
        ];
        let batch_b = [
            commit(seed.org, seq, &b[..1]),
            commit(seed.org, seq + 1, &b[1..]),
        ];
        let (result_a, result_b) =
            tokio::join!(store.commit_batch(&batch_a), store.commit_batch(&batch_b));
        let (winner, loser) = match (result_a, result_b) {
            (Ok(new), Err(StoreError::Conflict)) => {
                assert_eq!(new, seq + 3);
                (&a, &b)
            }
            (Err(StoreError::Conflict), Ok(new)) => {
                assert_eq!(new, seq + 2);
                (&b, &a)
            }
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        seq += winner.len() as u64;
        let (loaded, entities) = current(store, seed.org).await;
        assert_eq!(loaded, seq);
        for c in winner {
            assert!(entities.contains(c.after.as_ref().unwrap()));
        }
        for c in loser {
            assert!(!entities.contains(c.after.as_ref().unwrap()));
        }
    }
    let events = store.events_after(seed.org, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), (1..=seq).collect::<Vec<_>>());
}

async fn large_batch_spans_several_statements(store: &dyn Store) {
    let seed = seed_org(store).await;
    // More rows than one statement takes, in commits of 7 changes.
    let count = super::sql::ROWS_PER_STATEMENT * 2 + 13;
    let stages: Vec<Entity> = (0..count)
        .map(|i| {
            stage(
                &format!("s{i:05}"),
                u32::try_from(i).unwrap(),
                StagePurpose::NonProduction,
            )
        })
        .collect();
    let changes: Vec<Change> = stages.iter().map(created).collect();
    let mut batch = Vec::new();
    let mut seq = 3;
    for chunk in changes.chunks(7) {
        batch.push(Commit {
            request_id: None,
            ..commit(seed.org, seq, chunk)
        });
        seq += chunk.len() as u64;
    }
    assert_eq!(store.commit_batch(&batch).await.unwrap(), seq);
    let (loaded, entities) = current(store, seed.org).await;
    assert_eq!(loaded, 3 + count as u64);
    let mut expected = seed.entities.clone();
    expected.extend(stages.iter().cloned());
    assert_eq!(entities, sorted(expected));
    let events = store.events_after(seed.org, 0, 10_000).await.unwrap();
    assert_eq!(seqs(&events), (1..=loaded).collect::<Vec<_>>());

    // And all of it goes again in one batch.
    let deletions: Vec<Change> = stages.iter().map(deleted).collect();
    assert_eq!(
        store
            .commit_batch(&[commit(seed.org, loaded, &deletions)])
            .await
            .unwrap(),
        loaded + count as u64
    );
    assert_eq!(current(store, seed.org).await.1, sorted(seed.entities));
}

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

#[test]
fn database_url_is_replaced() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

/// Each way a commit can fail (stale sequence, unknown organization, used request id,
/// duplicate key inside the statement) is followed by a commit that must go through: a failure
/// rolls back what it started, on the connection the next commit uses.
async fn every_failed_commit_leaves_the_store_writable(store: &dyn Store) {
    let seed = seed_org(store).await;
    let mut seq = 3;
    let mut next = 0;
    let mut fresh = || {
        next += 1;
        [created(&stage(
            &format!("s{next}"),
            next,
            StagePurpose::NonProduction,
        ))]
    };
    let used = fresh();
    seq = store
        .commit(Commit {
            request_id: Some("used"),
            ..commit(seed.org, seq, &used)
        })
        .await
        .unwrap();
    let unknown = Uuid::new_v4();
    for what in ["stale", "ahead", "unknown organization", "used request id"] {
        let (failing, duplicate) = match what {
            "stale" => (commit(seed.org, seq - 1, &used), false),
            "ahead" => (commit(seed.org, seq + 1, &used), false),
            "unknown organization" => (commit(unknown, 0, &used), false),
            _ => (
                Commit {
                    request_id: Some("used"),
                    ..commit(seed.org, seq, &used)
                },
                true,
            ),
        };
        let result = store.commit(failing).await;
        assert!(
            if duplicate {
                matches!(result, Err(StoreError::DuplicateRequest))
            } else {
                matches!(result, Err(StoreError::Conflict))
            },
            "{what}: {result:?}"
        );
        let changes = fresh();
        let after = store
            .commit(commit(seed.org, seq, &changes))
            .await
            .unwrap_or_else(|e| panic!("the commit after a failed one ({what}): {e:?}"));
        assert_eq!(after, seq + 1, "{what}");
        seq = after;
    }
    let events = store.events_after(seed.org, 3, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (4..=seq).collect::<Vec<_>>()
    );
    assert!(store.load_organization(unknown).await.unwrap().is_none());
}

/// A commit whose caller goes away mid-statement (its future dropped after the first poll)
/// may or may not have been written; either way the store keeps committing, at the sequence
/// the store says.
async fn a_cancelled_commit_leaves_the_store_writable(store: &dyn Store) {
    let seed = seed_org(store).await;
    for round in 0..3u32 {
        let seq = store
            .load_organization(seed.org)
            .await
            .unwrap()
            .unwrap()
            .seq;
        let cancelled = [created(&stage(
            &format!("cancelled{round}"),
            round,
            StagePurpose::NonProduction,
        ))];
        {
            let mut future = store.commit(commit(seed.org, seq, &cancelled));
            // One poll sends the statement; dropping the future cancels the caller.
            let _ = tokio::time::timeout(std::time::Duration::ZERO, &mut future).await;
        }
        let now = store
            .load_organization(seed.org)
            .await
            .unwrap()
            .unwrap()
            .seq;
        assert!(now == seq || now == seq + 1, "{now} after {seq}");
        let changes = [created(&stage(
            &format!("after{round}"),
            round,
            StagePurpose::NonProduction,
        ))];
        let after = store.commit(commit(seed.org, now, &changes)).await;
        // The cancelled commit may land between the read above and this commit: then this one
        // conflicts, and goes through at the sequence after it.
        let after = match after {
            Ok(after) => after,
            Err(StoreError::Conflict) => store
                .commit(commit(seed.org, seq + 1, &changes))
                .await
                .unwrap(),
            Err(e) => panic!("after a cancelled commit: {e:?}"),
        };
        let events = store.events_after(seed.org, 0, 1000).await.unwrap();
        assert_eq!(events.last().map(|e| e.seq), Some(after));
        assert_eq!(events.len() as u64, after, "gap-free");
    }
}

/// `load_organization_into` (the start-up path) hands over the entities `load_organization`
/// returns, in the same order, and nothing for an unknown organization.
async fn streamed_load_hands_over_every_entity_once(store: &dyn Store) {
    let seed = seed_org(store).await;
    let mut streamed = Vec::new();
    let seq = store
        .load_organization_into(seed.org, &mut |e| streamed.push(e))
        .await
        .unwrap();
    let loaded = store.load_organization(seed.org).await.unwrap().unwrap();
    assert_eq!(seq, Some(loaded.seq));
    assert_eq!(streamed, loaded.entities);
    let mut sorted = seed.entities.clone();
    sorted.sort_by_key(|e| (e.kind(), e.key()));
    assert_eq!(streamed, sorted);

    let mut called = false;
    let unknown = store
        .load_organization_into(Uuid::new_v4(), &mut |_| called = true)
        .await
        .unwrap();
    assert_eq!(unknown, None);
    assert!(!called);
}
