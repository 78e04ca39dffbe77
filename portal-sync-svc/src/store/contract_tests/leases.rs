//! Sync leases: one holder at a time until expiry or release, a fencing token incremented on
//! every acquisition, and sync writes refused (nothing written) once the writer lost its lease.

use uuid::Uuid;

use super::fixtures::{T0, event, insert, member, seed_odc, seqs};
use super::harness::{run_postgres, run_sqlite};
use crate::store::{Fence, PortalStore, StoreError, SyncCursor, SyncState};

/// Ten seconds, in microseconds.
const TTL: i64 = 10_000_000;

fn fence(holder: &str, token: u64) -> Fence {
    Fence {
        holder: holder.to_owned(),
        token,
    }
}

async fn one_replica_holds_a_lease_until_it_expires_or_is_released(store: &dyn PortalStore) {
    let (_, odc) = seed_odc(store).await;
    let i = odc.id;
    assert_eq!(store.lease(i).await.unwrap(), None);
    let a = store.acquire_lease(i, "a", T0, T0 + TTL).await.unwrap();
    assert_eq!(a.as_ref().map(|l| &l.fence), Some(&fence("a", 1)));
    // Held: another replica cannot take it, before expiry.
    assert_eq!(
        store
            .acquire_lease(i, "b", T0 + TTL - 1, T0 + 2 * TTL)
            .await
            .unwrap(),
        None
    );
    // Renewed by its holder (with the report), not with a stale token.
    assert!(
        store
            .renew_lease(i, &fence("a", 1), T0 + 1, T0 + 2 * TTL, "{}")
            .await
            .unwrap()
    );
    assert!(
        !store
            .renew_lease(i, &fence("a", 0), T0 + 1, T0 + 2 * TTL, "x")
            .await
            .unwrap()
    );
    let view = store.lease(i).await.unwrap().unwrap();
    assert_eq!((view.holder.as_str(), view.token), ("a", 1));
    assert_eq!(view.expire_time, T0 + 2 * TTL);
    assert_eq!(view.report.as_deref(), Some("{}"));
    assert!(view.held_at(T0 + 2 * TTL - 1) && !view.held_at(T0 + 2 * TTL));
    // Expired: another replica takes it, with the next token; the old holder cannot renew it.
    let b = store
        .acquire_lease(i, "b", T0 + 2 * TTL, T0 + 3 * TTL)
        .await
        .unwrap();
    assert_eq!(b.map(|l| l.fence), Some(fence("b", 2)));
    assert!(
        !store
            .renew_lease(i, &fence("a", 1), T0 + 2 * TTL, T0 + 4 * TTL, "")
            .await
            .unwrap()
    );
    assert!(!store.release_lease(i, &fence("a", 1)).await.unwrap());
    // Its holder may acquire it again (a new token fences its earlier runs).
    let again = store
        .acquire_lease(i, "b", T0 + 2 * TTL + 1, T0 + 3 * TTL)
        .await
        .unwrap();
    assert_eq!(again.map(|l| l.fence), Some(fence("b", 3)));
    // Released: free at once.
    assert!(store.release_lease(i, &fence("b", 3)).await.unwrap());
    assert!(
        !store
            .lease(i)
            .await
            .unwrap()
            .unwrap()
            .held_at(T0 + 2 * TTL + 2)
    );
    let a = store
        .acquire_lease(i, "a", T0 + 2 * TTL + 2, T0 + 3 * TTL)
        .await
        .unwrap();
    assert_eq!(a.map(|l| l.fence), Some(fence("a", 4)));
    // There is no lease of an infrastructure that does not exist.
    let unknown = store.acquire_lease(Uuid::new_v4(), "a", T0, T0 + TTL).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
}

async fn only_one_of_racing_replicas_acquires_a_free_lease(store: &dyn PortalStore) {
    let (_, odc) = seed_odc(store).await;
    let race = |h| store.acquire_lease(odc.id, h, T0, T0 + TTL);
    let (r1, r2, r3, r4) = tokio::join!(race("r1"), race("r2"), race("r3"), race("r4"));
    let won = [r1, r2, r3, r4];
    let winners: Vec<_> = won.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].fence.token, 1);
    let view = store.lease(odc.id).await.unwrap().unwrap();
    assert_eq!(view.holder, winners[0].fence.holder);
}

async fn a_write_of_a_replica_that_lost_its_lease_is_refused_and_changes_nothing(
    store: &dyn PortalStore,
) {
    let (seed, odc) = seed_odc(store).await;
    let company = seed.company.id;
    let cursor = |n, f: Fence| SyncCursor {
        infrastructure: odc.id,
        cursor: n,
        snapshot_time: None,
        fence: Some(f),
    };
    let a = store
        .acquire_lease(odc.id, "a", T0, T0 + TTL)
        .await
        .unwrap()
        .unwrap();
    let ada = member(company, "ada@example.com", 1);
    store
        .apply(
            company,
            &[insert(&ada)],
            &[event("member.created")],
            Some(&cursor(5, a.fence.clone())),
            T0 + 1,
        )
        .await
        .unwrap();
    // After the lease's expiry (nobody took it yet) its holder's writes are refused too.
    let bob = member(company, "bob@example.com", 1);
    let late = store
        .apply(
            company,
            &[insert(&bob)],
            &[event("member.created")],
            Some(&cursor(6, a.fence.clone())),
            T0 + TTL,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Fenced)), "{late:?}");
    // Another replica takes over; the old holder's write is refused and writes nothing.
    let b = store
        .acquire_lease(odc.id, "b", T0 + TTL, T0 + 2 * TTL)
        .await
        .unwrap()
        .unwrap();
    let before = (
        store.members(company).await.unwrap(),
        store.events(company, 0, 100).await.unwrap(),
    );
    let stale = store
        .apply(
            company,
            &[insert(&bob)],
            &[event("member.created")],
            Some(&cursor(6, a.fence)),
            T0 + TTL + 1,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Fenced)), "{stale:?}");
    assert_eq!(store.members(company).await.unwrap(), before.0);
    assert_eq!(
        seqs(&store.events(company, 0, 100).await.unwrap()),
        seqs(&before.1)
    );
    assert_eq!(
        store.sync_state(odc.id).await.unwrap(),
        SyncState {
            cursor: 5,
            snapshot_time: None
        }
    );
    // The new holder writes.
    store
        .apply(
            company,
            &[insert(&bob)],
            &[event("member.created")],
            Some(&cursor(6, b.fence)),
            T0 + TTL + 2,
        )
        .await
        .unwrap();
    assert_eq!(store.sync_state(odc.id).await.unwrap().cursor, 6);
    assert_eq!(store.member(company, bob.id).await.unwrap(), Some(bob));
}

mod sqlite {
    #[tokio::test]
    async fn one_replica_holds_a_lease_until_it_expires_or_is_released() {
        super::run_sqlite(|store| {
            Box::pin(super::one_replica_holds_a_lease_until_it_expires_or_is_released(store))
        })
        .await;
    }

    #[tokio::test]
    async fn only_one_of_racing_replicas_acquires_a_free_lease() {
        super::run_sqlite(|store| {
            Box::pin(super::only_one_of_racing_replicas_acquires_a_free_lease(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn a_write_of_a_replica_that_lost_its_lease_is_refused_and_changes_nothing() {
        super::run_sqlite(|store| {
            Box::pin(
                super::a_write_of_a_replica_that_lost_its_lease_is_refused_and_changes_nothing(
                    store,
                ),
            )
        })
        .await;
    }
}

mod postgres {
    #[tokio::test]
    async fn one_replica_holds_a_lease_until_it_expires_or_is_released() {
        super::run_postgres(|store| {
            Box::pin(super::one_replica_holds_a_lease_until_it_expires_or_is_released(store))
        })
        .await;
    }

    #[tokio::test]
    async fn only_one_of_racing_replicas_acquires_a_free_lease() {
        super::run_postgres(|store| {
            Box::pin(super::only_one_of_racing_replicas_acquires_a_free_lease(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn a_write_of_a_replica_that_lost_its_lease_is_refused_and_changes_nothing() {
        super::run_postgres(|store| {
            Box::pin(
                super::a_write_of_a_replica_that_lost_its_lease_is_refused_and_changes_nothing(
                    store,
                ),
            )
        })
        .await;
    }
}
