//! Team members written through `apply`: inserts, updates and deletes at the expected
//! revision, stale revisions, duplicate emails, misaddressed batches, concurrent writers.

use uuid::Uuid;

use super::fixtures::{
    T0, assert_conflict, assert_not_found, changed, delete, email, event, insert, member,
    seed_company, seed_odc, seqs, update,
};
use super::harness::{run_postgres, run_sqlite};
use crate::domain::model::TeamMember;
use crate::store::{PortalStore, SyncCursor, SyncState};

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
                fence: None,
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
                        fence: None,
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
                    fence: None,
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

mod sqlite {
    #[tokio::test]
    async fn apply_inserts_updates_deletes_with_revision_checks() {
        super::run_sqlite(|store| {
            Box::pin(super::apply_inserts_updates_deletes_with_revision_checks(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn stale_revision_in_batch_conflicts_and_writes_nothing() {
        super::run_sqlite(|store| {
            Box::pin(super::stale_revision_in_batch_conflicts_and_writes_nothing(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn duplicate_email_conflicts() {
        super::run_sqlite(|store| Box::pin(super::duplicate_email_conflicts(store))).await;
    }

    #[tokio::test]
    async fn misaddressed_batch_is_refused() {
        super::run_sqlite(|store| Box::pin(super::misaddressed_batch_is_refused(store))).await;
    }

    #[tokio::test]
    async fn concurrent_updates_of_one_revision_exactly_one_wins() {
        super::run_sqlite(|store| {
            Box::pin(super::concurrent_updates_of_one_revision_exactly_one_wins(
                store,
            ))
        })
        .await;
    }
}

mod postgres {
    #[tokio::test]
    async fn apply_inserts_updates_deletes_with_revision_checks() {
        super::run_postgres(|store| {
            Box::pin(super::apply_inserts_updates_deletes_with_revision_checks(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn stale_revision_in_batch_conflicts_and_writes_nothing() {
        super::run_postgres(|store| {
            Box::pin(super::stale_revision_in_batch_conflicts_and_writes_nothing(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn duplicate_email_conflicts() {
        super::run_postgres(|store| Box::pin(super::duplicate_email_conflicts(store))).await;
    }

    #[tokio::test]
    async fn misaddressed_batch_is_refused() {
        super::run_postgres(|store| Box::pin(super::misaddressed_batch_is_refused(store))).await;
    }

    #[tokio::test]
    async fn concurrent_updates_of_one_revision_exactly_one_wins() {
        super::run_postgres(|store| {
            Box::pin(super::concurrent_updates_of_one_revision_exactly_one_wins(
                store,
            ))
        })
        .await;
    }
}
