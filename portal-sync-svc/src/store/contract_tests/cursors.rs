//! Sync cursors: written with the changes they produced, refused for another company's
//! infrastructure, reset.

use uuid::Uuid;

use super::fixtures::{
    T0, assert_not_found, changed, delete, event, infra, insert, member, seed_company, seed_odc,
    seqs, update,
};
use super::harness::{run_postgres, run_sqlite};
use crate::domain::model::InfraKind;
use crate::store::{PortalStore, SyncCursor, SyncState};

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
        fence: None,
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
                fence: None,
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
                        fence: None,
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
                fence: None,
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
                fence: None,
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

mod sqlite {
    #[tokio::test]
    async fn cursor_is_written_with_changes_and_keeps_snapshot_time() {
        super::run_sqlite(|store| {
            Box::pin(super::cursor_is_written_with_changes_and_keeps_snapshot_time(store))
        })
        .await;
    }

    #[tokio::test]
    async fn cursor_of_another_company_is_refused() {
        super::run_sqlite(|store| Box::pin(super::cursor_of_another_company_is_refused(store)))
            .await;
    }

    #[tokio::test]
    async fn reset_sync_forgets_cursor() {
        super::run_sqlite(|store| Box::pin(super::reset_sync_forgets_cursor(store))).await;
    }
}

mod postgres {
    #[tokio::test]
    async fn cursor_is_written_with_changes_and_keeps_snapshot_time() {
        super::run_postgres(|store| {
            Box::pin(super::cursor_is_written_with_changes_and_keeps_snapshot_time(store))
        })
        .await;
    }

    #[tokio::test]
    async fn cursor_of_another_company_is_refused() {
        super::run_postgres(|store| Box::pin(super::cursor_of_another_company_is_refused(store)))
            .await;
    }

    #[tokio::test]
    async fn reset_sync_forgets_cursor() {
        super::run_postgres(|store| Box::pin(super::reset_sync_forgets_cursor(store))).await;
    }
}
