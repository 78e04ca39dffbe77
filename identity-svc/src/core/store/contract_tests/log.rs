//! The contract of the log: organizations and their sequences, the start-up load, the change
//! events in order, the audit listing's filters and paging, and idempotency keys.

use uuid::Uuid;

use super::fixtures::{
    SECOND, T0, commit, created, current, deleted, seed_org, seqs, sorted, stage, updated, user,
};
use crate::core::store::{Commit, EventFilter, EventRecord, Store, StoreError};
use crate::domain::model::{Change, Micros, StagePurpose};

pub(super) async fn commit_creates_organization(store: &dyn Store) {
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

pub(super) async fn sequences_follow_every_commit(store: &dyn Store) {
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

pub(super) async fn events_after_is_gap_free_and_ascending(store: &dyn Store) {
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

pub(super) async fn list_events_filters_and_pages(store: &dyn Store) {
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

pub(super) async fn request_id_is_remembered_once(store: &dyn Store) {
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

/// `load_organization_into` (the start-up path) hands over the entities `load_organization`
/// returns, in the same order, and nothing for an unknown organization.
pub(super) async fn streamed_load_hands_over_every_entity_once(store: &dyn Store) {
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
