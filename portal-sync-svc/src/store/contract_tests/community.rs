//! Community accounts: register, query, remove.

use super::fixtures::{T0, email};
use super::harness::{run_postgres, run_sqlite};
use crate::domain::model::Email;
use crate::store::PortalStore;

async fn community_accounts_register_query_remove(store: &dyn PortalStore) {
    assert!(store.community_accounts(&[]).await.unwrap().is_empty());
    let ada = email("ada@example.com");
    let bob = email("bob@example.com");
    let eve = email("eve@example.com");
    store.register_community_account(&bob, T0).await.unwrap();
    store.register_community_account(&ada, T0).await.unwrap();
    // Idempotent.
    store
        .register_community_account(&ada, T0 + 1)
        .await
        .unwrap();

    assert_eq!(
        store
            .community_accounts(&[eve.clone(), bob.clone(), ada.clone(), bob.clone()])
            .await
            .unwrap(),
        [ada.clone(), bob.clone()]
    );
    assert!(
        store
            .community_accounts(std::slice::from_ref(&eve))
            .await
            .unwrap()
            .is_empty()
    );

    // A long list (more than one IN list).
    let mut many: Vec<Email> = (0..1200)
        .map(|i| email(&format!("user{i:04}@example.com")))
        .collect();
    for i in [3, 700, 1199] {
        store
            .register_community_account(&many[i], T0)
            .await
            .unwrap();
    }
    many.push(ada.clone());
    let found = store.community_accounts(&many).await.unwrap();
    assert_eq!(
        found,
        [
            ada.clone(),
            email("user0003@example.com"),
            email("user0700@example.com"),
            email("user1199@example.com")
        ]
    );

    assert!(store.remove_community_account(&ada).await.unwrap());
    assert!(!store.remove_community_account(&ada).await.unwrap());
    assert!(!store.remove_community_account(&eve).await.unwrap());
    assert_eq!(
        store
            .community_accounts(&[ada.clone(), bob.clone()])
            .await
            .unwrap(),
        std::slice::from_ref(&bob)
    );
    // Registering again after removal works.
    store.register_community_account(&ada, T0).await.unwrap();
    assert_eq!(
        store
            .community_accounts(&[ada.clone(), bob.clone()])
            .await
            .unwrap(),
        [ada, bob]
    );
}

mod sqlite {
    #[tokio::test]
    async fn community_accounts_register_query_remove() {
        super::run_sqlite(|store| Box::pin(super::community_accounts_register_query_remove(store)))
            .await;
    }
}

mod postgres {
    #[tokio::test]
    async fn community_accounts_register_query_remove() {
        super::run_postgres(|store| {
            Box::pin(super::community_accounts_register_query_remove(store))
        })
        .await;
    }
}
