//! Audit events: gap-free per company, paged, and gap-free under concurrent writers.

use uuid::Uuid;

use super::fixtures::{T0, event, seed_company, seqs};
use super::harness::{run_postgres, run_sqlite};
use crate::domain::model::NewEvent;
use crate::store::PortalStore;

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

mod sqlite {
    #[tokio::test]
    async fn events_are_gap_free_per_company_and_paged() {
        super::run_sqlite(|store| {
            Box::pin(super::events_are_gap_free_per_company_and_paged(store))
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_event_appends_stay_gap_free() {
        super::run_sqlite(|store| Box::pin(super::concurrent_event_appends_stay_gap_free(store)))
            .await;
    }
}

mod postgres {
    #[tokio::test]
    async fn events_are_gap_free_per_company_and_paged() {
        super::run_postgres(|store| {
            Box::pin(super::events_are_gap_free_per_company_and_paged(store))
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_event_appends_stay_gap_free() {
        super::run_postgres(|store| Box::pin(super::concurrent_event_appends_stay_gap_free(store)))
            .await;
    }
}
