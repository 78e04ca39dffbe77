//! The contract of bearer tokens: stored by a commit or on their own, found by hash, listed
//! per principal, revoked one by one or all of a principal, and the revocations since a time.

use uuid::Uuid;

use super::fixtures::{SECOND, T0, commit, seed_org, token};
use crate::core::store::{Commit, SecretOp, Store, TokenKind, TokenRecord};
use crate::domain::model::Principal;

pub(super) async fn tokens_insert_find_revoke_list(store: &dyn Store) {
    let seed = seed_org(store).await;
    let ada = Principal::User(seed.user);
    let robot = Principal::ServiceAccount(Uuid::new_v4());

    let first = token(seed.org, ada, TokenKind::Session, T0);
    store.insert_token(&first).await.unwrap();
    assert_eq!(
        store.find_token(&first.hash).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.find_token("unknown").await.unwrap(), None);

    assert!(store.revoke_token(first.id, T0 + SECOND).await.unwrap());
    assert!(!store.revoke_token(first.id, T0 + 2 * SECOND).await.unwrap());
    assert!(!store.revoke_token(Uuid::new_v4(), T0).await.unwrap());
    let revoked = store.find_token(&first.hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoke_time, Some(T0 + SECOND));

    let second = token(seed.org, ada, TokenKind::Session, T0 + 10 * SECOND);
    let third = token(seed.org, ada, TokenKind::Session, T0 + 20 * SECOND);
    store.insert_token(&second).await.unwrap();
    let robot_token = token(seed.org, robot, TokenKind::ServiceAccount, T0 + 5 * SECOND);
    let robot_other = token(seed.org, robot, TokenKind::ServiceAccount, T0 + 6 * SECOND);
    // Tokens written by a commit, and a revocation of all of Ada's tokens.
    let secrets = [
        SecretOp::PutToken(third.clone()),
        SecretOp::PutToken(robot_token.clone()),
        SecretOp::PutToken(robot_other.clone()),
        SecretOp::RevokeTokensOf {
            principal: ada,
            at: T0 + 30 * SECOND,
        },
        SecretOp::RevokeToken {
            id: robot_other.id,
            at: T0 + 31 * SECOND,
        },
    ];
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();

    let listed = store.list_tokens(seed.org, ada).await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [third.id, second.id, first.id],
        "newest first"
    );
    // Revoked from T0 + 30 s on: the commit's revocations, not the earlier one nor live tokens.
    let mut recent = store.revoked_since(T0 + 30 * SECOND).await.unwrap();
    recent.sort();
    let mut expected = vec![second.id, third.id, robot_other.id];
    expected.sort();
    assert_eq!(recent, expected);
    assert_eq!(
        store.revoked_since(T0 + 31 * SECOND).await.unwrap(),
        vec![robot_other.id]
    );
    assert!(
        store
            .revoked_since(T0 + 32 * SECOND)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.revoked_since(T0).await.unwrap().len(), 4);
    // The token revoked earlier keeps its revocation time.
    assert_eq!(
        listed.iter().map(|t| t.revoke_time).collect::<Vec<_>>(),
        [
            Some(T0 + 30 * SECOND),
            Some(T0 + 30 * SECOND),
            Some(T0 + SECOND)
        ]
    );
    let robots = store.list_tokens(seed.org, robot).await.unwrap();
    assert_eq!(
        robots,
        vec![
            TokenRecord {
                revoke_time: Some(T0 + 31 * SECOND),
                ..robot_other
            },
            robot_token.clone()
        ]
    );
    assert_eq!(
        store.find_token(&robot_token.hash).await.unwrap(),
        Some(robot_token)
    );
    assert!(
        store
            .list_tokens(Uuid::new_v4(), ada)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_tokens(seed.org, Principal::ServiceAccount(seed.user))
            .await
            .unwrap()
            .is_empty()
    );
}
