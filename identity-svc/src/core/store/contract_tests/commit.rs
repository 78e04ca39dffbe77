//! The contract of one commit: compare-and-set of the sequence, entity rows and events
//! written together or not at all, concurrent writers (exactly one wins), and a store that
//! stays writable after a failed or cancelled commit.

use uuid::Uuid;

use super::fixtures::{
    T0, commit, created, current, deleted, organization, seed_org, seqs, sorted, stage, token,
    updated, user,
};
use crate::core::store::{Commit, Credentials, SecretOp, Store, StoreError, TokenKind};
use crate::domain::model::{Principal, StagePurpose};

pub(super) async fn commit_at_expected_seq_advances_and_changes_rows(store: &dyn Store) {
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

pub(super) async fn stale_commit_conflicts_and_writes_nothing(store: &dyn Store) {
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

pub(super) async fn create_org_twice_conflicts(store: &dyn Store) {
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

pub(super) async fn empty_commit_keeps_sequence(store: &dyn Store) {
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

pub(super) async fn concurrent_commits_exactly_one_wins(store: &dyn Store) {
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

pub(super) async fn concurrent_create_org_exactly_one_wins(store: &dyn Store) {
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

/// Each way a commit can fail (stale sequence, unknown organization, used request id,
/// duplicate key inside the statement) is followed by a commit that must go through: a failure
/// rolls back what it started, on the connection the next commit uses.
pub(super) async fn every_failed_commit_leaves_the_store_writable(store: &dyn Store) {
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
pub(super) async fn a_cancelled_commit_leaves_the_store_writable(store: &dyn Store) {
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
