//! The contract of credentials: invitation tokens put, found and deleted by commits, and a
//! user's password hash and login-failure counters through their lifecycle.

use uuid::Uuid;

use super::fixtures::{SECOND, T0, commit, seed_org};
use crate::core::store::{Commit, Credentials, InvitationToken, SecretOp, Store};

pub(super) async fn invitation_tokens_put_find_delete(store: &dyn Store) {
    let seed = seed_org(store).await;
    let invitation = Uuid::new_v4();
    let other_user = Uuid::new_v4();
    let secrets = [
        SecretOp::PutInvitationToken {
            hash: "inv-1".to_owned(),
            invitation,
            user: seed.user,
            expire_time: T0 + 7 * 24 * 3600 * SECOND,
        },
        SecretOp::PutInvitationToken {
            hash: "inv-2".to_owned(),
            invitation,
            user: seed.user,
            expire_time: T0 + SECOND,
        },
        SecretOp::PutInvitationToken {
            hash: "inv-other".to_owned(),
            invitation: Uuid::new_v4(),
            user: other_user,
            expire_time: T0,
        },
    ];
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(
        store.find_invitation_token("inv-1").await.unwrap(),
        Some(InvitationToken {
            org: seed.org,
            invitation,
            user: seed.user,
            expire_time: T0 + 7 * 24 * 3600 * SECOND,
        })
    );
    assert!(
        store
            .find_invitation_token("inv-2")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.find_invitation_token("nope").await.unwrap(), None);

    let delete = [SecretOp::DeleteInvitationTokens { user: seed.user }];
    store
        .commit(Commit {
            secrets: &delete,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(store.find_invitation_token("inv-1").await.unwrap(), None);
    assert_eq!(store.find_invitation_token("inv-2").await.unwrap(), None);
    assert!(
        store
            .find_invitation_token("inv-other")
            .await
            .unwrap()
            .is_some()
    );
}

pub(super) async fn credentials_lifecycle(store: &dyn Store) {
    let seed = seed_org(store).await;
    let creds = |user| async move { store.credentials(seed.org, user).await.unwrap() };
    assert_eq!(creds(seed.user).await, Credentials::default());

    let set = |hash: &str| {
        [SecretOp::SetPassword {
            user: seed.user,
            hash: hash.to_owned(),
        }]
    };
    let secrets = set("$argon2id$first");
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$first".to_owned()),
            failed_logins: 0,
            locked_until: None,
        }
    );

    store
        .set_login_failures(seed.org, seed.user, 5, Some(T0 + 60 * SECOND))
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$first".to_owned()),
            failed_logins: 5,
            locked_until: Some(T0 + 60 * SECOND),
        }
    );

    // A new password keeps the counters.
    let secrets = set("$argon2id$second");
    store
        .commit(Commit {
            secrets: &secrets,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$second".to_owned()),
            failed_logins: 5,
            locked_until: Some(T0 + 60 * SECOND),
        }
    );
    store
        .set_login_failures(seed.org, seed.user, 0, None)
        .await
        .unwrap();
    assert_eq!(
        creds(seed.user).await,
        Credentials {
            password_hash: Some("$argon2id$second".to_owned()),
            failed_logins: 0,
            locked_until: None,
        }
    );

    // Counters of a user without a password.
    let stranger = Uuid::new_v4();
    store
        .set_login_failures(seed.org, stranger, u32::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        creds(stranger).await,
        Credentials {
            password_hash: None,
            failed_logins: u32::MAX,
            locked_until: None,
        }
    );

    let delete = [SecretOp::DeleteCredentials { user: seed.user }];
    store
        .commit(Commit {
            secrets: &delete,
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    assert_eq!(creds(seed.user).await, Credentials::default());
    assert_eq!(creds(stranger).await.failed_logins, u32::MAX);
    // Credentials are per organization.
    assert_eq!(
        store.credentials(Uuid::new_v4(), stranger).await.unwrap(),
        Credentials::default()
    );
}
