//! Large and ordered batches of `apply`: batches that span several multi-row statements, a
//! late conflict that writes nothing, and the batch order deciding email changes and repeated
//! members.

use uuid::Uuid;

use super::fixtures::{
    T0, assert_conflict, changed, delete, email, event, insert, member, seed_company, seed_odc,
    seqs, update,
};
use super::harness::{run_postgres, run_sqlite};
use crate::domain::model::{NewEvent, PortalEvent, TeamMember};
use crate::store::{MemberChange, PortalStore, SyncCursor, SyncState};

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
    let per_statement =
        crate::store::sql::runs::rows_per_statement(crate::store::sql::runs::MEMBER_INSERT_BINDS)
            .max(crate::store::sql::runs::rows_per_statement(
                crate::store::sql::runs::EVENT_BINDS,
            ));
    let n = 2 * per_statement + per_statement / 2;
    let cursor = |cursor, snapshot_time| SyncCursor {
        infrastructure: odc.id,
        cursor,
        snapshot_time,
        fence: None,
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

mod sqlite {
    #[tokio::test]
    async fn large_batch_spans_statements_and_a_late_conflict_writes_nothing() {
        super::run_sqlite(|store| {
            Box::pin(super::large_batch_spans_statements_and_a_late_conflict_writes_nothing(store))
        })
        .await;
    }

    #[tokio::test]
    async fn batch_order_decides_email_changes_and_repeated_members() {
        super::run_sqlite(|store| {
            Box::pin(super::batch_order_decides_email_changes_and_repeated_members(store))
        })
        .await;
    }
}

mod postgres {
    #[tokio::test]
    async fn large_batch_spans_statements_and_a_late_conflict_writes_nothing() {
        super::run_postgres(|store| {
            Box::pin(super::large_batch_spans_statements_and_a_late_conflict_writes_nothing(store))
        })
        .await;
    }

    #[tokio::test]
    async fn batch_order_decides_email_changes_and_repeated_members() {
        super::run_postgres(|store| {
            Box::pin(super::batch_order_decides_email_changes_and_repeated_members(store))
        })
        .await;
    }
}
