//! Reopening: the data is in the database, not in the store value (both backends).

use super::fixtures::{
    Seed, T0, email, event, infra, insert, member, seed_company, seqs, support_case,
};
use super::harness::with_pg_database;
use crate::domain::model::{CaseState, InfraKind};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::test_keyring;
use crate::store::{EventStore, MemberStore, PortalStore, SyncCursor, SyncState};

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
                fence: None,
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
        let store = SqliteStore::open(&path, test_keyring()).await.unwrap();
        fill(&store).await
    };
    // Opening again migrates nothing and finds everything.
    let store = SqliteStore::open(&path, test_keyring()).await.unwrap();
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
            let store = PgStore::connect(&url, test_keyring()).await.unwrap();
            fill(&store).await
        };
        let store = PgStore::connect(&url, test_keyring()).await.unwrap();
        check_filled(&store, &seed).await;
    })
    .await;
}
