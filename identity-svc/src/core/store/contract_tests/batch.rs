//! The contract of a batch of commits (group commit): each commit written as if one after the
//! other, the net entity writes, all or nothing on a conflict or a used request id, refused
//! batches that do not continue, concurrent batches, batches larger than one statement.

use uuid::Uuid;

use super::fixtures::{
    T0, commit, created, current, deleted, seed_org, seqs, sorted, stage, target, updated, user,
};
use crate::core::store::{Commit, Credentials, EventRecord, SecretOp, Store, StoreError};
use crate::domain::model::{Change, Entity, Micros, StagePurpose};

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

pub(super) async fn batch_writes_each_commit_as_if_one_after_the_other(store: &dyn Store) {
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

pub(super) async fn batch_net_entity_writes_match_sequential_commits(store: &dyn Store) {
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

pub(super) async fn stale_batch_conflicts_and_writes_nothing(store: &dyn Store) {
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

pub(super) async fn batch_with_a_used_request_id_writes_nothing(store: &dyn Store) {
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

pub(super) async fn batch_that_does_not_continue_is_refused(store: &dyn Store) {
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

pub(super) async fn batch_of_empty_and_secret_only_commits(store: &dyn Store) {
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

pub(super) async fn concurrent_batches_exactly_one_wins(store: &dyn Store) {
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

pub(super) async fn large_batch_spans_several_statements(store: &dyn Store) {
    let seed = seed_org(store).await;
    // More rows than one statement takes, in commits of 7 changes.
    let count = crate::core::store::sql::batch::ROWS_PER_STATEMENT * 2 + 13;
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
