//! The contract of [`PortalStore`], one suite run on every backend.
//!
//! Each case is an `async fn(&dyn PortalStore)`; [`contract!`] turns the list of cases into one
//! `#[tokio::test]` per case and backend: `sqlite::<case>` on a fresh database file, always,
//! and `postgres::<case>` on a fresh database `portal_test_<uuid>` created through
//! `PORTAL_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped
//! afterwards, even when the case panics, since the server keeps state between runs. A
//! PostgreSQL that cannot be reached fails the tests; `PORTAL_TEST_PG_URL=off` skips them
//! (saying so), unless `PORTAL_REQUIRE_PG=1`.

use std::future::Future;
use std::pin::Pin;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{MemberChange, PortalStore, StoreError, SyncCursor, SyncState};
use crate::domain::model::{
    Access, CaseState, Company, CompanyPermission, Email, InfraKind, InfraPermission,
    Infrastructure, Micros, NewEvent, PortalEvent, Source, SupportCase, TeamMember, TeamRole,
};

// ---------------------------------------------------------------------------------------------
// Harness

type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
type Case = for<'a> fn(&'a dyn PortalStore) -> CaseFuture<'a>;

/// Runs `case` on a fresh SQLite file.
async fn run_sqlite(case: Case) {
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
async fn with_pg_database<F, Fut>(body: F)
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
async fn run_postgres(case: Case) {
    with_pg_database(|url| async move {
        let store = PgStore::connect(&url).await.unwrap();
        case(&store).await;
    })
    .await;
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
    create_company_stores_company_admin_and_event,
    create_company_twice_conflicts_and_writes_nothing,
    infrastructures_oldest_first_and_odc_with_token,
    apply_inserts_updates_deletes_with_revision_checks,
    stale_revision_in_batch_conflicts_and_writes_nothing,
    duplicate_email_conflicts,
    cursor_is_written_with_changes_and_keeps_snapshot_time,
    cursor_of_another_company_is_refused,
    misaddressed_batch_is_refused,
    reset_sync_forgets_cursor,
    events_are_gap_free_per_company_and_paged,
    community_accounts_register_query_remove,
    cases_create_approve_and_remove_contact,
    concurrent_updates_of_one_revision_exactly_one_wins,
    concurrent_event_appends_stay_gap_free,
    large_batch_spans_statements_and_a_late_conflict_writes_nothing,
    batch_order_decides_email_changes_and_repeated_members,
);

// ---------------------------------------------------------------------------------------------
// Reopening: the data is in the database, not in the store value.

/// Writes a company with members, a case, a contact, a Community account and a cursor.
async fn fill(store: &dyn PortalStore) -> Seed {
    let seed = seed_company(store, "Acme").await;
    let odc = infra(seed.company.id, InfraKind::Odc, "ODC", T0 + 1);
    store
        .create_infrastructure(&odc, Some("token-1"), &event("infra.created"), T0 + 1)
        .await
        .unwrap();
    let ada = member(seed.company.id, "ada@example.com", 1);
    store
        .apply(
            seed.company.id,
            &[insert(&ada)],
            &[event("member.created")],
            Some(&SyncCursor {
                infrastructure: odc.id,
                cursor: 42,
                snapshot_time: Some(T0 + 2),
            }),
            T0 + 2,
        )
        .await
        .unwrap();
    let case = support_case(seed.company.id, odc.id, "ada@example.com", &[], T0 + 3);
    store
        .create_case(&case, &event("case.created"), T0 + 3)
        .await
        .unwrap();
    store
        .approve_case(seed.company.id, case.id, &event("case.approved"), T0 + 4)
        .await
        .unwrap();
    store
        .register_community_account(&email("ada@example.com"), T0)
        .await
        .unwrap();
    seed
}

/// Checks what [`fill`] wrote.
async fn check_filled(store: &dyn PortalStore, seed: &Seed) {
    let id = seed.company.id;
    assert_eq!(store.company(id).await.unwrap(), Some(seed.company.clone()));
    let emails: Vec<String> = store
        .members(id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.email.to_string())
        .collect();
    assert_eq!(emails, ["ada@example.com", "admin@acme.example"]);
    let odc = store.odc_infrastructures().await.unwrap();
    assert_eq!(odc.len(), 1);
    assert_eq!(odc[0].1, "token-1");
    assert_eq!(
        store.sync_state(odc[0].0.id).await.unwrap(),
        SyncState {
            cursor: 42,
            snapshot_time: Some(T0 + 2)
        }
    );
    assert_eq!(store.cases(id).await.unwrap()[0].state, CaseState::Open);
    assert_eq!(
        store.approved_contacts(id).await.unwrap(),
        [email("ada@example.com")]
    );
    assert_eq!(
        store
            .community_accounts(&[email("ada@example.com")])
            .await
            .unwrap(),
        [email("ada@example.com")]
    );
    assert_eq!(
        seqs(&store.events(id, 0, 100).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn sqlite_data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    let seed = {
        let store = SqliteStore::open(&path).await.unwrap();
        fill(&store).await
    };
    // Opening again migrates nothing and finds everything.
    let store = SqliteStore::open(&path).await.unwrap();
    check_filled(&store, &seed).await;
    // And keeps counting where it stopped.
    store
        .apply(seed.company.id, &[], &[event("after.reopen")], None, T0 + 9)
        .await
        .unwrap();
    assert_eq!(
        seqs(&store.events(seed.company.id, 5, 100).await.unwrap()),
        [6]
    );
}

#[tokio::test]
async fn postgres_data_survives_reconnecting() {
    with_pg_database(|url| async move {
        let seed = {
            let store = PgStore::connect(&url).await.unwrap();
            fill(&store).await
        };
        let store = PgStore::connect(&url).await.unwrap();
        check_filled(&store, &seed).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

const T0: Micros = 1_700_000_000_000_000;

fn email(text: &str) -> Email {
    Email::parse(text).unwrap()
}

fn event(action: &str) -> NewEvent {
    NewEvent {
        actor: "tester".to_owned(),
        action: action.to_owned(),
        target: format!("targets/{action}"),
        detail: format!("detail of {action}"),
    }
}

/// A member with some access, so that the stored document is not trivial.
fn member(company: Uuid, address: &str, rev: u64) -> TeamMember {
    TeamMember {
        id: Uuid::new_v4(),
        company,
        email: email(address),
        display_name: address.split('@').next().unwrap_or_default().to_owned(),
        team_role: TeamRole::Developer,
        company_permission: CompanyPermission::Member,
        access: vec![Access {
            infrastructure: Uuid::new_v4(),
            permission: InfraPermission::Admin,
            source: Source::Odc {
                identity_user: Uuid::new_v4(),
            },
        }],
        phone: Some("+351 000".to_owned()),
        lifetime_username: None,
        development_permissions: true,
        created_by_sync: true,
        create_time: T0,
        update_time: T0,
        rev,
    }
}

/// `member` changed from its current revision to the next one.
fn changed(member: &TeamMember, display_name: &str) -> TeamMember {
    TeamMember {
        display_name: display_name.to_owned(),
        update_time: member.update_time + 1,
        rev: member.rev + 1,
        ..member.clone()
    }
}

fn insert(member: &TeamMember) -> MemberChange {
    MemberChange::Upsert {
        member: member.clone(),
        expected_rev: None,
    }
}

/// Replaces the member at `expected_rev` by `member`.
fn update(member: &TeamMember, expected_rev: u64) -> MemberChange {
    MemberChange::Upsert {
        member: member.clone(),
        expected_rev: Some(expected_rev),
    }
}

fn delete(member: &TeamMember, expected_rev: u64) -> MemberChange {
    MemberChange::Delete {
        company: member.company,
        id: member.id,
        expected_rev,
    }
}

fn infra(company: Uuid, kind: InfraKind, name: &str, create_time: Micros) -> Infrastructure {
    Infrastructure {
        id: Uuid::new_v4(),
        company,
        display_name: name.to_owned(),
        kind,
        identity_org: (kind == InfraKind::Odc).then(Uuid::new_v4),
        create_time,
    }
}

fn support_case(
    company: Uuid,
    infrastructure: Uuid,
    creator: &str,
    cc: &[&str],
    create_time: Micros,
) -> SupportCase {
    SupportCase {
        id: Uuid::new_v4(),
        company,
        infrastructure,
        subject: format!("help {create_time}"),
        creator: email(creator),
        cc: cc.iter().map(|c| email(c)).collect(),
        state: CaseState::AwaitingApproval,
        create_time,
        creator_removed: false,
    }
}

fn seqs(events: &[PortalEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// A created company and its first admin.
struct Seed {
    company: Company,
    admin: TeamMember,
}

/// Creates a company whose first admin is `admin@<name>.example`; its event sequence is then 1.
async fn seed_company(store: &dyn PortalStore, name: &str) -> Seed {
    let company = Company {
        id: Uuid::new_v4(),
        display_name: name.to_owned(),
        create_time: T0,
    };
    let admin = TeamMember {
        company_permission: CompanyPermission::Admin,
        created_by_sync: false,
        ..member(
            company.id,
            &format!("admin@{}.example", name.to_lowercase()),
            1,
        )
    };
    store
        .create_company(&company, &admin, &event("company.created"), T0)
        .await
        .unwrap();
    Seed { company, admin }
}

/// A company with an ODC infrastructure (event sequence 2).
async fn seed_odc(store: &dyn PortalStore) -> (Seed, Infrastructure) {
    let seed = seed_company(store, "Acme").await;
    let odc = infra(seed.company.id, InfraKind::Odc, "ODC", T0);
    store
        .create_infrastructure(&odc, Some("secret"), &event("infra.created"), T0)
        .await
        .unwrap();
    (seed, odc)
}

fn assert_conflict(result: Result<(), StoreError>) {
    match result {
        Err(StoreError::Conflict) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn assert_not_found(result: Result<(), StoreError>) {
    match result {
        Err(StoreError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

async fn create_company_stores_company_admin_and_event(store: &dyn PortalStore) {
    assert_eq!(store.company(Uuid::new_v4()).await.unwrap(), None);
    let seed = seed_company(store, "Acme").await;
    let id = seed.company.id;

    assert_eq!(store.company(id).await.unwrap(), Some(seed.company.clone()));
    assert_eq!(
        store.members(id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(
        store.member(id, seed.admin.id).await.unwrap(),
        Some(seed.admin.clone())
    );
    assert_eq!(
        store.member_by_email(id, &seed.admin.email).await.unwrap(),
        Some(seed.admin.clone())
    );
    assert_eq!(
        store.events(id, 0, 10).await.unwrap(),
        [PortalEvent {
            seq: 1,
            event: event("company.created"),
            time: T0,
        }]
    );
    assert!(store.infrastructures(id).await.unwrap().is_empty());
    assert!(store.cases(id).await.unwrap().is_empty());
    assert!(store.approved_contacts(id).await.unwrap().is_empty());

    // Another company may have a member with the same email; lookups stay per company.
    let other = Company {
        id: Uuid::new_v4(),
        display_name: "Other".to_owned(),
        create_time: T0 + 1,
    };
    let other_admin = member(other.id, seed.admin.email.as_str(), 1);
    store
        .create_company(&other, &other_admin, &event("company.created"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        store.members(other.id).await.unwrap(),
        std::slice::from_ref(&other_admin)
    );
    assert_eq!(
        store.members(id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(store.member(other.id, seed.admin.id).await.unwrap(), None);
    assert_eq!(
        store
            .member_by_email(other.id, &seed.admin.email)
            .await
            .unwrap(),
        Some(other_admin)
    );
    assert_eq!(
        store
            .member_by_email(id, &email("nobody@acme.example"))
            .await
            .unwrap(),
        None
    );
}

async fn create_company_twice_conflicts_and_writes_nothing(store: &dyn PortalStore) {
    let seed = seed_company(store, "Acme").await;
    let again = Company {
        display_name: "Again".to_owned(),
        ..seed.company.clone()
    };
    let admin = member(seed.company.id, "second@acme.example", 1);
    assert_conflict(
        store
            .create_company(&again, &admin, &event("company.created"), T0 + 1)
            .await,
    );
    assert_eq!(
        store.company(seed.company.id).await.unwrap(),
        Some(seed.company.clone())
    );
    assert_eq!(
        store.members(seed.company.id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(
        seqs(&store.events(seed.company.id, 0, 10).await.unwrap()),
        [1]
    );

    // A first admin of another company is refused, and the company is not created.
    let company = Company {
        id: Uuid::new_v4(),
        display_name: "Mismatch".to_owned(),
        create_time: T0,
    };
    let result = store
        .create_company(&company, &seed.admin, &event("company.created"), T0)
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(store.company(company.id).await.unwrap(), None);
}

async fn infrastructures_oldest_first_and_odc_with_token(store: &dyn PortalStore) {
    let a = seed_company(store, "A").await.company.id;
    let b = seed_company(store, "B").await.company.id;
    assert!(store.odc_infrastructures().await.unwrap().is_empty());

    let a_odc = infra(a, InfraKind::Odc, "A ODC", T0 + 20);
    let a_cloud = infra(a, InfraKind::O11Cloud, "A cloud", T0 + 10);
    let a_sentry = infra(a, InfraKind::O11Sentry, "A sentry", T0 + 30);
    let b_odc = infra(b, InfraKind::Odc, "B ODC", T0 + 5);
    let b_hybrid = infra(b, InfraKind::O11Hybrid, "B hybrid", T0 + 6);
    let b_self = infra(b, InfraKind::O11SelfManaged, "B self", T0 + 7);
    for (infra, token) in [
        (&a_odc, Some("token-a")),
        (&a_cloud, None),
        (&a_sentry, None),
        (&b_odc, Some("token-b")),
        (&b_hybrid, None),
        (&b_self, None),
    ] {
        store
            .create_infrastructure(infra, token, &event("infra.created"), infra.create_time)
            .await
            .unwrap();
    }

    assert_eq!(
        store.infrastructures(a).await.unwrap(),
        [a_cloud.clone(), a_odc.clone(), a_sentry]
    );
    assert_eq!(
        store.infrastructures(b).await.unwrap(),
        [b_odc.clone(), b_hybrid, b_self]
    );
    let mut odc = store.odc_infrastructures().await.unwrap();
    odc.sort_by_key(|(infra, _)| infra.create_time);
    assert_eq!(
        odc,
        [
            (b_odc.clone(), "token-b".to_owned()),
            (a_odc.clone(), "token-a".to_owned())
        ]
    );
    assert_eq!(seqs(&store.events(a, 0, 10).await.unwrap()), [1, 2, 3, 4]);

    // The same id twice is a conflict; an unknown company is not found. Neither writes.
    assert_conflict(
        store
            .create_infrastructure(&a_odc, Some("x"), &event("infra.created"), T0)
            .await,
    );
    let orphan = infra(Uuid::new_v4(), InfraKind::Odc, "Orphan", T0);
    assert_not_found(
        store
            .create_infrastructure(&orphan, Some("x"), &event("infra.created"), T0)
            .await,
    );
    assert_eq!(store.odc_infrastructures().await.unwrap().len(), 2);
    assert_eq!(seqs(&store.events(a, 0, 10).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(store.infrastructures(a).await.unwrap().len(), 3);
    assert!(
        store
            .infrastructures(orphan.company)
            .await
            .unwrap()
            .is_empty()
    );

    // Replacing the identity token: only of an ODC infrastructure of the company named, with
    // its event in the same transaction; anything else writes nothing.
    let replaced = event("infra.token_replaced");
    for (company, id) in [(a, a_cloud.id), (b, a_odc.id), (a, Uuid::new_v4())] {
        assert!(
            !store
                .set_identity_token(company, id, "token-x", &replaced, T0 + 40)
                .await
                .unwrap()
        );
    }
    assert_eq!(seqs(&store.events(a, 0, 10).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(
        store.identity_token(a_odc.id).await.unwrap().as_deref(),
        Some("token-a")
    );
    assert!(
        store
            .set_identity_token(a, a_odc.id, "token-a2", &replaced, T0 + 40)
            .await
            .unwrap()
    );
    assert_eq!(
        store.identity_token(a_odc.id).await.unwrap().as_deref(),
        Some("token-a2")
    );
    assert_eq!(store.identity_token(a_cloud.id).await.unwrap(), None);
    assert_eq!(
        store.identity_token(b_odc.id).await.unwrap().as_deref(),
        Some("token-b")
    );
    let events = store.events(a, 0, 10).await.unwrap();
    assert_eq!(seqs(&events), [1, 2, 3, 4, 5]);
    assert_eq!(events[4].event.action, "infra.token_replaced");
}

async fn apply_inserts_updates_deletes_with_revision_checks(store: &dyn PortalStore) {
    let seed = seed_company(store, "Acme").await;
    let id = seed.company.id;
    let zoe = member(id, "zoe@example.com", 1);
    let bob = member(id, "bob@example.com", 1);

    store
        .apply(
            id,
            &[insert(&zoe), insert(&bob)],
            &[event("member.created"), event("member.created")],
            None,
            T0 + 1,
        )
        .await
        .unwrap();
    // By email.
    assert_eq!(
        store.members(id).await.unwrap(),
        [seed.admin.clone(), bob.clone(), zoe.clone()]
    );
    assert_eq!(store.member(id, zoe.id).await.unwrap(), Some(zoe.clone()));

    // Update at the stored revision, with a new email.
    let zoe2 = TeamMember {
        email: email("aaron@example.com"),
        ..changed(&zoe, "Zoe Two")
    };
    store
        .apply(
            id,
            &[update(&zoe2, 1)],
            &[event("member.updated")],
            None,
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(store.member(id, zoe.id).await.unwrap(), Some(zoe2.clone()));
    assert_eq!(
        store.member_by_email(id, &zoe2.email).await.unwrap(),
        Some(zoe2.clone())
    );
    assert_eq!(store.member_by_email(id, &zoe.email).await.unwrap(), None);
    assert_eq!(
        store.members(id).await.unwrap(),
        [zoe2.clone(), seed.admin.clone(), bob.clone()]
    );

    // Stale revision, unknown member, existing id inserted again: conflicts.
    let stale = changed(&zoe, "Stale");
    assert_conflict(
        store
            .apply(id, &[update(&stale, 1)], &[], None, T0 + 3)
            .await,
    );
    let ghost = member(id, "ghost@example.com", 2);
    assert_conflict(
        store
            .apply(id, &[update(&ghost, 1)], &[], None, T0 + 3)
            .await,
    );
    let reinserted = TeamMember {
        email: email("other@example.com"),
        ..bob.clone()
    };
    assert_conflict(
        store
            .apply(id, &[insert(&reinserted)], &[], None, T0 + 3)
            .await,
    );
    assert_eq!(store.member(id, zoe.id).await.unwrap(), Some(zoe2.clone()));
    assert_eq!(store.member(id, ghost.id).await.unwrap(), None);

    // Delete: only at the stored revision, and only once.
    assert_conflict(store.apply(id, &[delete(&bob, 2)], &[], None, T0 + 4).await);
    assert_eq!(store.member(id, bob.id).await.unwrap(), Some(bob.clone()));
    store
        .apply(
            id,
            &[delete(&bob, 1)],
            &[event("member.deleted")],
            None,
            T0 + 4,
        )
        .await
        .unwrap();
    assert_eq!(store.member(id, bob.id).await.unwrap(), None);
    assert_eq!(store.member_by_email(id, &bob.email).await.unwrap(), None);
    assert_conflict(store.apply(id, &[delete(&bob, 1)], &[], None, T0 + 5).await);
    assert_eq!(
        store.members(id).await.unwrap(),
        [zoe2.clone(), seed.admin.clone()]
    );

    // The freed email can be taken again; update then delete in one batch.
    let bob_again = member(id, "bob@example.com", 1);
    let zoe3 = changed(&zoe2, "Zoe Three");
    store
        .apply(
            id,
            &[insert(&bob_again), update(&zoe3, 2), delete(&zoe3, 3)],
            &[event("member.created"), event("member.deleted")],
            None,
            T0 + 6,
        )
        .await
        .unwrap();
    assert_eq!(store.members(id).await.unwrap(), [seed.admin, bob_again]);

    let events = store.events(id, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), [1, 2, 3, 4, 5, 6, 7]);
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "company.created",
            "member.created",
            "member.created",
            "member.updated",
            "member.deleted",
            "member.created",
            "member.deleted"
        ]
    );
    assert_eq!(events[6].time, T0 + 6);
}

async fn stale_revision_in_batch_conflicts_and_writes_nothing(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    let id = seed.company.id;
    let ada = member(id, "ada@example.com", 1);
    let bob = member(id, "bob@example.com", 1);
    store
        .apply(
            id,
            &[insert(&ada), insert(&bob)],
            &[event("member.created")],
            Some(&SyncCursor {
                infrastructure: odc.id,
                cursor: 5,
                snapshot_time: Some(T0),
            }),
            T0,
        )
        .await
        .unwrap();
    // Bob moves on meanwhile.
    let bob2 = changed(&bob, "Bob 2");
    store
        .apply(
            id,
            &[update(&bob2, 1)],
            &[event("member.updated")],
            None,
            T0,
        )
        .await
        .unwrap();

    let members = store.members(id).await.unwrap();
    let events = store.events(id, 0, 100).await.unwrap();
    let state = store.sync_state(odc.id).await.unwrap();
    assert_eq!(
        state,
        SyncState {
            cursor: 5,
            snapshot_time: Some(T0)
        }
    );

    // Each batch has valid changes first and one computed from a stale revision last.
    let carl = member(id, "carl@example.com", 1);
    let stale_batches = [
        vec![
            insert(&carl),
            update(&changed(&ada, "Ada 2"), 1),
            update(&changed(&bob, "Stale Bob"), 1),
        ],
        vec![insert(&carl), delete(&ada, 1), delete(&bob, 1)],
        vec![update(&changed(&ada, "Ada 2"), 1), delete(&bob2, 3)],
    ];
    for batch in &stale_batches {
        for snapshot_time in [None, Some(T0 + 100)] {
            let result = store
                .apply(
                    id,
                    batch,
                    &[event("stale.one"), event("stale.two")],
                    Some(&SyncCursor {
                        infrastructure: odc.id,
                        cursor: 9,
                        snapshot_time,
                    }),
                    T0 + 100,
                )
                .await;
            assert_conflict(result);
            assert_eq!(store.members(id).await.unwrap(), members);
            assert_eq!(store.events(id, 0, 100).await.unwrap(), events);
            assert_eq!(store.sync_state(odc.id).await.unwrap(), state);
        }
    }

    // The next good batch takes the next sequence number: nothing was consumed.
    store
        .apply(id, &[], &[event("after")], None, T0 + 200)
        .await
        .unwrap();
    assert_eq!(
        seqs(&store.events(id, 0, 100).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
}

async fn duplicate_email_conflicts(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    let id = seed.company.id;
    let before_events = store.events(id, 0, 100).await.unwrap();

    // A new member with the admin's email.
    let twin = member(id, seed.admin.email.as_str(), 1);
    assert_conflict(
        store
            .apply(
                id,
                &[insert(&twin)],
                &[event("member.created")],
                Some(&SyncCursor {
                    infrastructure: odc.id,
                    cursor: 3,
                    snapshot_time: None,
                }),
                T0,
            )
            .await,
    );
    // Two new members with one email in the same batch.
    let ann = member(id, "ann@example.com", 1);
    let ann_twin = member(id, "ann@example.com", 1);
    assert_conflict(
        store
            .apply(
                id,
                &[insert(&ann), insert(&ann_twin)],
                &[event("x")],
                None,
                T0,
            )
            .await,
    );
    assert_eq!(
        store.members(id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(store.events(id, 0, 100).await.unwrap(), before_events);
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState::default()
    );

    // An update to an email that is taken.
    store
        .apply(id, &[insert(&ann)], &[], None, T0)
        .await
        .unwrap();
    let ann_as_admin = TeamMember {
        email: seed.admin.email.clone(),
        ..changed(&ann, "Ann")
    };
    assert_conflict(
        store
            .apply(id, &[update(&ann_as_admin, 1)], &[event("x")], None, T0)
            .await,
    );
    assert_eq!(store.member(id, ann.id).await.unwrap(), Some(ann));
}

async fn cursor_is_written_with_changes_and_keeps_snapshot_time(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    let id = seed.company.id;
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState::default()
    );
    assert_eq!(
        store.sync_state(Uuid::new_v4()).await.unwrap(),
        SyncState::default()
    );
    let cursor = |cursor, snapshot_time| SyncCursor {
        infrastructure: odc.id,
        cursor,
        snapshot_time,
    };

    // A snapshot batch.
    let ada = member(id, "ada@example.com", 1);
    store
        .apply(
            id,
            &[insert(&ada)],
            &[event("member.created")],
            Some(&cursor(5, Some(T0 + 10))),
            T0 + 10,
        )
        .await
        .unwrap();
    assert_eq!(store.member(id, ada.id).await.unwrap(), Some(ada.clone()));
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState {
            cursor: 5,
            snapshot_time: Some(T0 + 10)
        }
    );

    // An incremental batch moves the cursor and keeps the snapshot time.
    let ada2 = changed(&ada, "Ada 2");
    store
        .apply(
            id,
            &[update(&ada2, 1)],
            &[event("member.updated")],
            Some(&cursor(7, None)),
            T0 + 20,
        )
        .await
        .unwrap();
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState {
            cursor: 7,
            snapshot_time: Some(T0 + 10)
        }
    );

    // A cursor alone (events that changed no record), and a batch without cursor.
    store
        .apply(id, &[], &[], Some(&cursor(8, None)), T0 + 30)
        .await
        .unwrap();
    store
        .apply(
            id,
            &[delete(&ada2, 2)],
            &[event("member.deleted")],
            None,
            T0 + 40,
        )
        .await
        .unwrap();
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState {
            cursor: 8,
            snapshot_time: Some(T0 + 10)
        }
    );

    // A new snapshot replaces the time.
    store
        .apply(id, &[], &[], Some(&cursor(12, Some(T0 + 50))), T0 + 50)
        .await
        .unwrap();
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState {
            cursor: 12,
            snapshot_time: Some(T0 + 50)
        }
    );

    // The first cursor of an infrastructure without snapshot time has none.
    let second = infra(id, InfraKind::Odc, "Second", T0 + 60);
    store
        .create_infrastructure(&second, Some("t"), &event("infra.created"), T0 + 60)
        .await
        .unwrap();
    store
        .apply(
            id,
            &[],
            &[],
            Some(&SyncCursor {
                infrastructure: second.id,
                cursor: 3,
                snapshot_time: None,
            }),
            T0 + 60,
        )
        .await
        .unwrap();
    assert_eq!(
        store.sync_state(second.id).await.unwrap(),
        SyncState {
            cursor: 3,
            snapshot_time: None
        }
    );
    assert_eq!(store.sync_state(odc.id).await.unwrap().cursor, 12);
}

async fn cursor_of_another_company_is_refused(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    let other = seed_company(store, "Other").await;
    let bob = member(other.company.id, "bob@example.com", 1);
    // Other's batch with Acme's infrastructure, or an unknown one: not found, nothing written.
    for infrastructure in [odc.id, Uuid::new_v4()] {
        assert_not_found(
            store
                .apply(
                    other.company.id,
                    &[insert(&bob)],
                    &[event("member.created")],
                    Some(&SyncCursor {
                        infrastructure,
                        cursor: 4,
                        snapshot_time: Some(T0),
                    }),
                    T0,
                )
                .await,
        );
    }
    assert_eq!(store.member(other.company.id, bob.id).await.unwrap(), None);
    assert_eq!(
        seqs(&store.events(other.company.id, 0, 10).await.unwrap()),
        [1]
    );
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState::default()
    );
    assert_eq!(
        seqs(&store.events(seed.company.id, 0, 10).await.unwrap()),
        [1, 2]
    );
}

async fn misaddressed_batch_is_refused(store: &dyn PortalStore) {
    let acme = seed_company(store, "Acme").await;
    let other = seed_company(store, "Other").await;
    let ada = member(acme.company.id, "ada@example.com", 1);

    // Applying to Other a change of an Acme member.
    let result = store
        .apply(other.company.id, &[insert(&ada)], &[event("x")], None, T0)
        .await;
    assert!(result.is_err(), "{result:?}");
    let result = store
        .apply(
            other.company.id,
            &[delete(&acme.admin, 1)],
            &[event("x")],
            None,
            T0,
        )
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(store.members(acme.company.id).await.unwrap(), [acme.admin]);
    assert_eq!(
        store.members(other.company.id).await.unwrap(),
        [other.admin]
    );
    assert_eq!(
        seqs(&store.events(other.company.id, 0, 10).await.unwrap()),
        [1]
    );

    // A company that does not exist.
    let unknown = Uuid::new_v4();
    assert_not_found(store.apply(unknown, &[], &[event("x")], None, T0).await);
    assert!(store.events(unknown, 0, 10).await.unwrap().is_empty());
}

async fn reset_sync_forgets_cursor(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    store
        .apply(
            seed.company.id,
            &[],
            &[],
            Some(&SyncCursor {
                infrastructure: odc.id,
                cursor: 40,
                snapshot_time: Some(T0 + 5),
            }),
            T0 + 5,
        )
        .await
        .unwrap();

    store.reset_sync(odc.id).await.unwrap();
    let state = store.sync_state(odc.id).await.unwrap();
    // Cursor 0 is "never synced": the worker takes a snapshot next.
    assert_eq!(state.cursor, 0);
    // Resetting twice, or an infrastructure never synced, is fine.
    store.reset_sync(odc.id).await.unwrap();
    store.reset_sync(Uuid::new_v4()).await.unwrap();

    // The snapshot that follows writes the cursor again.
    store
        .apply(
            seed.company.id,
            &[],
            &[],
            Some(&SyncCursor {
                infrastructure: odc.id,
                cursor: 41,
                snapshot_time: Some(T0 + 9),
            }),
            T0 + 9,
        )
        .await
        .unwrap();
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState {
            cursor: 41,
            snapshot_time: Some(T0 + 9)
        }
    );
    // The members are untouched by the reset.
    assert_eq!(store.members(seed.company.id).await.unwrap(), [seed.admin]);
}

async fn events_are_gap_free_per_company_and_paged(store: &dyn PortalStore) {
    let a = seed_company(store, "A").await.company.id;
    let b = seed_company(store, "B").await.company.id;
    for i in 0_u8..5 {
        let events: Vec<NewEvent> = (0..=i).map(|j| event(&format!("a.{i}.{j}"))).collect();
        store
            .apply(a, &[], &events, None, T0 + i64::from(i))
            .await
            .unwrap();
        store
            .apply(b, &[], &[event(&format!("b.{i}"))], None, T0 + i64::from(i))
            .await
            .unwrap();
        // A batch without events consumes no sequence number.
        store.apply(a, &[], &[], None, T0).await.unwrap();
    }

    let a_events = store.events(a, 0, 1000).await.unwrap();
    assert_eq!(seqs(&a_events), (1..=16).collect::<Vec<_>>());
    assert_eq!(a_events[1].event, event("a.0.0"));
    assert_eq!(a_events[15].event, event("a.4.4"));
    assert_eq!(a_events[15].time, T0 + 4);
    let b_events = store.events(b, 0, 1000).await.unwrap();
    assert_eq!(seqs(&b_events), [1, 2, 3, 4, 5, 6]);
    assert_eq!(b_events[5].event, event("b.4"));

    // Pages.
    assert_eq!(seqs(&store.events(a, 0, 3).await.unwrap()), [1, 2, 3]);
    assert_eq!(seqs(&store.events(a, 3, 3).await.unwrap()), [4, 5, 6]);
    assert_eq!(seqs(&store.events(a, 14, 10).await.unwrap()), [15, 16]);
    assert!(store.events(a, 16, 10).await.unwrap().is_empty());
    assert!(store.events(a, 0, 0).await.unwrap().is_empty());
    assert_eq!(store.events(a, 5, usize::MAX).await.unwrap().len(), 11);
    assert!(
        store
            .events(Uuid::new_v4(), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn community_accounts_register_query_remove(store: &dyn PortalStore) {
    assert!(store.community_accounts(&[]).await.unwrap().is_empty());
    let ada = email("ada@example.com");
    let bob = email("bob@example.com");
    let eve = email("eve@example.com");
    store.register_community_account(&bob, T0).await.unwrap();
    store.register_community_account(&ada, T0).await.unwrap();
    // Idempotent.
    store
        .register_community_account(&ada, T0 + 1)
        .await
        .unwrap();

    assert_eq!(
        store
            .community_accounts(&[eve.clone(), bob.clone(), ada.clone(), bob.clone()])
            .await
            .unwrap(),
        [ada.clone(), bob.clone()]
    );
    assert!(
        store
            .community_accounts(std::slice::from_ref(&eve))
            .await
            .unwrap()
            .is_empty()
    );

    // A long list (more than one IN list).
    let mut many: Vec<Email> = (0..1200)
        .map(|i| email(&format!("user{i:04}@example.com")))
        .collect();
    for i in [3, 700, 1199] {
        store
            .register_community_account(&many[i], T0)
            .await
            .unwrap();
    }
    many.push(ada.clone());
    let found = store.community_accounts(&many).await.unwrap();
    assert_eq!(
        found,
        [
            ada.clone(),
            email("user0003@example.com"),
            email("user0700@example.com"),
            email("user1199@example.com")
        ]
    );

    assert!(store.remove_community_account(&ada).await.unwrap());
    assert!(!store.remove_community_account(&ada).await.unwrap());
    assert!(!store.remove_community_account(&eve).await.unwrap());
    assert_eq!(
        store
            .community_accounts(&[ada.clone(), bob.clone()])
            .await
            .unwrap(),
        std::slice::from_ref(&bob)
    );
    // Registering again after removal works.
    store.register_community_account(&ada, T0).await.unwrap();
    assert_eq!(
        store
            .community_accounts(&[ada.clone(), bob.clone()])
            .await
            .unwrap(),
        [ada, bob]
    );
}

async fn cases_create_approve_and_remove_contact(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    let id = seed.company.id;
    let other = seed_company(store, "Other").await.company.id;

    let later = support_case(
        id,
        odc.id,
        "ada@example.com",
        &["cc1@example.com", "cc2@example.com"],
        T0 + 20,
    );
    let earlier = support_case(id, odc.id, "bob@example.com", &["cc1@example.com"], T0 + 10);
    let elsewhere = support_case(
        other,
        Uuid::new_v4(),
        "ada@example.com",
        &["cc1@example.com"],
        T0,
    );
    store
        .create_case(&later, &event("case.created"), T0 + 20)
        .await
        .unwrap();
    store
        .create_case(&earlier, &event("case.created"), T0 + 10)
        .await
        .unwrap();
    store
        .create_case(&elsewhere, &event("case.created"), T0)
        .await
        .unwrap();
    assert_eq!(
        store.cases(id).await.unwrap(),
        [earlier.clone(), later.clone()]
    );
    assert_eq!(
        store.cases(other).await.unwrap(),
        std::slice::from_ref(&elsewhere)
    );

    // Same id again: conflict; unknown company: not found.
    assert_conflict(
        store
            .create_case(&later, &event("case.created"), T0 + 30)
            .await,
    );
    let orphan = support_case(Uuid::new_v4(), odc.id, "x@example.com", &[], T0);
    assert_not_found(store.create_case(&orphan, &event("case.created"), T0).await);
    assert!(store.cases(orphan.company).await.unwrap().is_empty());

    // Approve: open, and the creator becomes a contact (once).
    store
        .approve_case(id, later.id, &event("case.approved"), T0 + 40)
        .await
        .unwrap();
    let cases = store.cases(id).await.unwrap();
    assert_eq!(cases[1].state, CaseState::Open);
    assert_eq!(cases[0].state, CaseState::AwaitingApproval);
    assert_eq!(
        cases[1],
        SupportCase {
            state: CaseState::Open,
            ..later.clone()
        }
    );
    assert_eq!(
        store.approved_contacts(id).await.unwrap(),
        [email("ada@example.com")]
    );
    store
        .approve_case(id, later.id, &event("case.approved"), T0 + 41)
        .await
        .unwrap();
    store
        .approve_case(id, earlier.id, &event("case.approved"), T0 + 42)
        .await
        .unwrap();
    assert_eq!(
        store.approved_contacts(id).await.unwrap(),
        [email("ada@example.com"), email("bob@example.com")]
    );
    assert!(store.approved_contacts(other).await.unwrap().is_empty());

    // A case of another company, or none: not found, nothing written.
    let before = store.events(id, 0, 100).await.unwrap();
    assert_not_found(
        store
            .approve_case(id, elsewhere.id, &event("case.approved"), T0)
            .await,
    );
    assert_not_found(
        store
            .approve_case(id, Uuid::new_v4(), &event("case.approved"), T0)
            .await,
    );
    assert_eq!(store.events(id, 0, 100).await.unwrap(), before);
    assert_eq!(
        store.cases(other).await.unwrap()[0].state,
        CaseState::AwaitingApproval
    );

    // Removing a CC removes it from every case of the company, not elsewhere.
    store
        .remove_contact(
            id,
            &email("cc1@example.com"),
            &event("contact.removed"),
            T0 + 50,
        )
        .await
        .unwrap();
    let cases = store.cases(id).await.unwrap();
    assert!(cases[0].cc.is_empty());
    assert_eq!(cases[1].cc, [email("cc2@example.com")]);
    assert_eq!(cases[1].state, CaseState::Open);
    assert_eq!(
        store.cases(other).await.unwrap()[0].cc,
        [email("cc1@example.com")]
    );

    // Removing an approved contact removes it from the list.
    store
        .remove_contact(
            id,
            &email("ada@example.com"),
            &event("contact.removed"),
            T0 + 60,
        )
        .await
        .unwrap();
    assert_eq!(
        store.approved_contacts(id).await.unwrap(),
        [email("bob@example.com")]
    );
    // Removing someone who is nowhere is harmless (and audited).
    store
        .remove_contact(
            id,
            &email("nobody@example.com"),
            &event("contact.removed"),
            T0 + 70,
        )
        .await
        .unwrap();
    assert_eq!(
        store.cases(id).await.unwrap()[1].cc,
        [email("cc2@example.com")]
    );

    let events = store.events(id, 0, 100).await.unwrap();
    // company, infra, 2 cases, 3 approvals, 3 removals.
    assert_eq!(seqs(&events), (1..=10).collect::<Vec<_>>());
    assert_eq!(events[9].event, event("contact.removed"));
    assert_eq!(events[9].time, T0 + 70);

    assert_not_found(
        store
            .remove_contact(Uuid::new_v4(), &email("ada@example.com"), &event("x"), T0)
            .await,
    );
}

async fn concurrent_updates_of_one_revision_exactly_one_wins(store: &dyn PortalStore) {
    let seed = seed_company(store, "Acme").await;
    let id = seed.company.id;
    let ada = member(id, "ada@example.com", 1);
    store
        .apply(id, &[insert(&ada)], &[], None, T0)
        .await
        .unwrap();

    let writers: Vec<TeamMember> = (0..4).map(|i| changed(&ada, &format!("Ada {i}"))).collect();
    let write = |m: &TeamMember| {
        let change = [update(m, 1)];
        async move {
            store
                .apply(id, &change, &[event("member.updated")], None, T0 + 1)
                .await
        }
    };
    let (r0, r1, r2, r3) = tokio::join!(
        write(&writers[0]),
        write(&writers[1]),
        write(&writers[2]),
        write(&writers[3])
    );
    let results = [r0, r1, r2, r3];
    let winners: Vec<usize> = (0..4).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for result in results {
        if result.is_err() {
            assert_conflict(result);
        }
    }
    assert_eq!(
        store.member(id, ada.id).await.unwrap(),
        Some(writers[winners[0]].clone())
    );
    assert_eq!(seqs(&store.events(id, 0, 100).await.unwrap()), [1, 2]);

    // Concurrent inserts of one email: one wins.
    let twins: Vec<TeamMember> = (0..3).map(|_| member(id, "bob@example.com", 1)).collect();
    let create = |m: &TeamMember| {
        let change = [insert(m)];
        async move {
            store
                .apply(id, &change, &[event("member.created")], None, T0 + 2)
                .await
        }
    };
    let (r0, r1, r2) = tokio::join!(create(&twins[0]), create(&twins[1]), create(&twins[2]));
    let results = [r0, r1, r2];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for result in results {
        if result.is_err() {
            assert_conflict(result);
        }
    }
    assert_eq!(store.members(id).await.unwrap().len(), 3);
    assert_eq!(seqs(&store.events(id, 0, 100).await.unwrap()), [1, 2, 3]);
}

async fn concurrent_event_appends_stay_gap_free(store: &dyn PortalStore) {
    let a = seed_company(store, "A").await.company.id;
    let b = seed_company(store, "B").await.company.id;
    let append = |company: Uuid, tag: &'static str| async move {
        for i in 0..5 {
            let events = [
                event(&format!("{tag}.{i}.0")),
                event(&format!("{tag}.{i}.1")),
            ];
            store
                .apply(company, &[], &events, None, T0 + i)
                .await
                .unwrap();
        }
    };
    tokio::join!(
        append(a, "w"),
        append(a, "x"),
        append(b, "y"),
        append(a, "z")
    );
    let events = store.events(a, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), (1..=31).collect::<Vec<_>>());
    // The two events of one batch are adjacent.
    for pair in events[1..].chunks(2) {
        let first = pair[0].event.action.strip_suffix(".0").unwrap();
        assert_eq!(pair[1].event.action, format!("{first}.1"));
    }
    assert_eq!(
        seqs(&store.events(b, 0, 100).await.unwrap()),
        (1..=11).collect::<Vec<_>>()
    );
}

/// Members in id order (the store lists them by email, whose order depends on the collation).
fn by_id(mut members: Vec<TeamMember>) -> Vec<TeamMember> {
    members.sort_by_key(|m| m.id);
    members
}

/// Members `name0@..` to `name{n-1}@..` of `company` at revision 1.
fn many(company: Uuid, name: &str, n: usize) -> Vec<TeamMember> {
    (0..n)
        .map(|i| member(company, &format!("{name}{i:05}@example.com"), 1))
        .collect()
}

/// Everything `apply` may write for `company` and `infrastructure`.
async fn written(
    store: &dyn PortalStore,
    company: Uuid,
    infrastructure: Uuid,
) -> (Vec<TeamMember>, Vec<PortalEvent>, SyncState) {
    (
        store.members(company).await.unwrap(),
        store.events(company, 0, 1_000_000).await.unwrap(),
        store.sync_state(infrastructure).await.unwrap(),
    )
}

async fn large_batch_spans_statements_and_a_late_conflict_writes_nothing(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    let id = seed.company.id;
    // More than two multi-row statements of every kind, events included.
    let per_statement = super::sql::rows_per_statement(super::sql::MEMBER_INSERT_BINDS)
        .max(super::sql::rows_per_statement(super::sql::EVENT_BINDS));
    let n = 2 * per_statement + per_statement / 2;
    let cursor = |cursor, snapshot_time| SyncCursor {
        infrastructure: odc.id,
        cursor,
        snapshot_time,
    };
    let events =
        |tag: &str| -> Vec<NewEvent> { (0..n).map(|i| event(&format!("{tag}.{i}"))).collect() };

    let members = many(id, "m", n);
    let inserts: Vec<MemberChange> = members.iter().map(insert).collect();
    store
        .apply(
            id,
            &inserts,
            &events("created"),
            Some(&cursor(5, Some(T0))),
            T0,
        )
        .await
        .unwrap();
    let before = written(store, id, odc.id).await;
    let mut expected = members.clone();
    expected.push(seed.admin.clone());
    expected.sort_by(|a, b| a.email.cmp(&b.email));
    assert_eq!(before.0, expected);
    assert_eq!(seqs(&before.1), (1..=n as u64 + 2).collect::<Vec<_>>());
    assert_eq!(before.1[n + 1].event, event(&format!("created.{}", n - 1)));
    assert_eq!(before.1[n + 1].time, T0);
    assert_eq!(
        before.2,
        SyncState {
            cursor: 5,
            snapshot_time: Some(T0)
        }
    );

    // One bad change at the end of the batch, in its last statement: nothing is written, not
    // even the statements before it, the events or the cursor.
    let updated: Vec<TeamMember> = members.iter().map(|m| changed(m, "Changed")).collect();
    let good_updates: Vec<MemberChange> = updated.iter().map(|m| update(m, 1)).collect();
    let mut stale_update = good_updates.clone();
    stale_update[n - 1] = update(&updated[n - 1], 7);
    let mut stale_delete: Vec<MemberChange> = members.iter().map(|m| delete(m, 1)).collect();
    stale_delete[n - 1] = delete(&members[n - 1], 2);
    let mut taken_email: Vec<MemberChange> = many(id, "new", n).iter().map(insert).collect();
    taken_email[n - 1] = insert(&member(id, members[0].email.as_str(), 1));
    let mut taken_id: Vec<MemberChange> = many(id, "new", n).iter().map(insert).collect();
    taken_id[n - 1] = insert(&TeamMember {
        email: email("fresh@example.com"),
        ..members[3].clone()
    });
    // Updates and deletes mixed, the stale one last.
    let mut mixed: Vec<MemberChange> = Vec::new();
    for (i, m) in members.iter().enumerate().take(n - 1) {
        mixed.push(if i % 3 == 0 {
            delete(m, 1)
        } else {
            update(&updated[i], 1)
        });
    }
    mixed.push(update(&updated[n - 1], 3));
    for batch in [stale_update, stale_delete, taken_email, taken_id, mixed] {
        assert_conflict(
            store
                .apply(id, &batch, &events("bad"), Some(&cursor(9, None)), T0 + 1)
                .await,
        );
        assert_eq!(written(store, id, odc.id).await, before);
    }

    // The same updates without the stale one: all written, and the events continue from the
    // last sequence (the failed batches consumed none).
    store
        .apply(
            id,
            &good_updates,
            &events("updated"),
            Some(&cursor(9, None)),
            T0 + 2,
        )
        .await
        .unwrap();
    let (stored, stored_events, state) = written(store, id, odc.id).await;
    let mut expected = updated.clone();
    expected.push(seed.admin.clone());
    expected.sort_by(|a, b| a.email.cmp(&b.email));
    assert_eq!(stored, expected);
    assert_eq!(
        seqs(&stored_events),
        (1..=2 * n as u64 + 2).collect::<Vec<_>>()
    );
    assert_eq!(
        stored_events[2 * n + 1].event,
        event(&format!("updated.{}", n - 1))
    );
    assert_eq!(
        state,
        SyncState {
            cursor: 9,
            snapshot_time: Some(T0)
        }
    );

    // Deleting them all, at their new revision.
    let deletes: Vec<MemberChange> = updated.iter().map(|m| delete(m, 2)).collect();
    store
        .apply(id, &deletes, &[], Some(&cursor(10, None)), T0 + 3)
        .await
        .unwrap();
    assert_eq!(
        store.members(id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(store.sync_state(odc.id).await.unwrap().cursor, 10);
}

async fn batch_order_decides_email_changes_and_repeated_members(store: &dyn PortalStore) {
    let seed = seed_company(store, "Acme").await;
    let id = seed.company.id;
    let [a, b, c] = [
        member(id, "a@example.com", 1),
        member(id, "b@example.com", 1),
        member(id, "c@example.com", 1),
    ];
    store
        .apply(id, &[insert(&a), insert(&b), insert(&c)], &[], None, T0)
        .await
        .unwrap();
    let with_email = |m: &TeamMember, address: &str| TeamMember {
        email: email(address),
        ..changed(m, "Moved")
    };

    // b takes a's email after a moves on, in the same batch, next to an update that keeps
    // its email: applied in order, it works.
    let a2 = with_email(&a, "a2@example.com");
    let b2 = with_email(&b, "a@example.com");
    let c2 = changed(&c, "C");
    store
        .apply(
            id,
            &[update(&c2, 1), update(&a2, 1), update(&b2, 1)],
            &[],
            None,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        by_id(store.members(id).await.unwrap()),
        by_id(vec![a2.clone(), b2.clone(), c2.clone(), seed.admin.clone()])
    );

    // The other way round, c would take a2's email while a2 still holds it: a conflict,
    // although the batch as a whole would leave the emails unique.
    let before = store.members(id).await.unwrap();
    let c3 = with_email(&c2, "a2@example.com");
    let a3 = with_email(&a2, "a3@example.com");
    assert_conflict(
        store
            .apply(
                id,
                &[update(&c3, 2), update(&a3, 2)],
                &[event("x")],
                None,
                T0 + 2,
            )
            .await,
    );
    // A new member with an email that a later change frees: a conflict too.
    let newcomer = member(id, "a@example.com", 1);
    let b3 = with_email(&b2, "b3@example.com");
    assert_conflict(
        store
            .apply(
                id,
                &[insert(&newcomer), update(&b3, 2)],
                &[event("x")],
                None,
                T0 + 2,
            )
            .await,
    );
    assert_eq!(store.members(id).await.unwrap(), before);
    assert_eq!(seqs(&store.events(id, 0, 10).await.unwrap()), [1]);

    // In the order that works, both batches succeed.
    store
        .apply(id, &[update(&a3, 2), update(&c3, 2)], &[], None, T0 + 3)
        .await
        .unwrap();
    store
        .apply(id, &[update(&b3, 2), insert(&newcomer)], &[], None, T0 + 3)
        .await
        .unwrap();

    // One member changed twice and then deleted, and a deleted member's email taken by a new
    // member, in one batch.
    let c4 = changed(&c3, "C4");
    let c5 = changed(&c4, "C5");
    let taker = member(id, "a3@example.com", 1);
    store
        .apply(
            id,
            &[
                update(&c4, 3),
                update(&c5, 4),
                delete(&a3, 3),
                insert(&taker),
                delete(&c5, 5),
            ],
            &[],
            None,
            T0 + 4,
        )
        .await
        .unwrap();
    assert_eq!(
        by_id(store.members(id).await.unwrap()),
        by_id(vec![newcomer, taker, seed.admin, b3])
    );
}
