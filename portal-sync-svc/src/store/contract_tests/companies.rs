//! Companies and their infrastructures: creating a company with its first admin, a second
//! creation of the same company, infrastructures and the identity tokens of ODC ones.

use uuid::Uuid;

use super::fixtures::{
    T0, assert_conflict, assert_not_found, email, event, infra, member, seed_company, seqs,
};
use super::harness::{run_postgres, run_sqlite};
use crate::domain::model::{Company, InfraKind, PortalEvent};
use crate::store::PortalStore;

async fn create_company_stores_company_admin_and_event(store: &dyn PortalStore) {
    assert_eq!(store.company(Uuid::new_v4()).await.unwrap(), None);
    let seed = seed_company(store, "Acme").await;
    let id = seed.company.id;

    assert_eq!(store.company(id).await.unwrap(), Some(seed.company.clone()));
    assert_eq!(
        store.members(id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(
        store.member(id, seed.admin.id).await.unwrap(),
        Some(seed.admin.clone())
    );
    assert_eq!(
        store.member_by_email(id, &seed.admin.email).await.unwrap(),
        Some(seed.admin.clone())
    );
    assert_eq!(
        store.events(id, 0, 10).await.unwrap(),
        [PortalEvent {
            seq: 1,
            event: event("company.created"),
            time: T0,
        }]
    );
    assert!(store.infrastructures(id).await.unwrap().is_empty());
    assert!(store.cases(id).await.unwrap().is_empty());
    assert!(store.approved_contacts(id).await.unwrap().is_empty());

    // Another company may have a member with the same email; lookups stay per company.
    let other = Company {
        id: Uuid::new_v4(),
        display_name: "Other".to_owned(),
        create_time: T0 + 1,
    };
    let other_admin = member(other.id, seed.admin.email.as_str(), 1);
    store
        .create_company(&other, &other_admin, &event("company.created"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        store.members(other.id).await.unwrap(),
        std::slice::from_ref(&other_admin)
    );
    assert_eq!(
        store.members(id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(store.member(other.id, seed.admin.id).await.unwrap(), None);
    assert_eq!(
        store
            .member_by_email(other.id, &seed.admin.email)
            .await
            .unwrap(),
        Some(other_admin)
    );
    assert_eq!(
        store
            .member_by_email(id, &email("nobody@acme.example"))
            .await
            .unwrap(),
        None
    );
}

async fn create_company_twice_conflicts_and_writes_nothing(store: &dyn PortalStore) {
    let seed = seed_company(store, "Acme").await;
    let again = Company {
        display_name: "Again".to_owned(),
        ..seed.company.clone()
    };
    let admin = member(seed.company.id, "second@acme.example", 1);
    assert_conflict(
        store
            .create_company(&again, &admin, &event("company.created"), T0 + 1)
            .await,
    );
    assert_eq!(
        store.company(seed.company.id).await.unwrap(),
        Some(seed.company.clone())
    );
    assert_eq!(
        store.members(seed.company.id).await.unwrap(),
        std::slice::from_ref(&seed.admin)
    );
    assert_eq!(
        seqs(&store.events(seed.company.id, 0, 10).await.unwrap()),
        [1]
    );

    // A first admin of another company is refused, and the company is not created.
    let company = Company {
        id: Uuid::new_v4(),
        display_name: "Mismatch".to_owned(),
        create_time: T0,
    };
    let result = store
        .create_company(&company, &seed.admin, &event("company.created"), T0)
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(store.company(company.id).await.unwrap(), None);
}

async fn infrastructures_oldest_first_and_odc_with_token(store: &dyn PortalStore) {
    let a = seed_company(store, "A").await.company.id;
    let b = seed_company(store, "B").await.company.id;
    assert!(store.odc_infrastructures().await.unwrap().is_empty());

    let a_odc = infra(a, InfraKind::Odc, "A ODC", T0 + 20);
    let a_cloud = infra(a, InfraKind::O11Cloud, "A cloud", T0 + 10);
    let a_sentry = infra(a, InfraKind::O11Sentry, "A sentry", T0 + 30);
    let b_odc = infra(b, InfraKind::Odc, "B ODC", T0 + 5);
    let b_hybrid = infra(b, InfraKind::O11Hybrid, "B hybrid", T0 + 6);
    let b_self = infra(b, InfraKind::O11SelfManaged, "B self", T0 + 7);
    for (infra, token) in [
        (&a_odc, Some("token-a")),
        (&a_cloud, None),
        (&a_sentry, None),
        (&b_odc, Some("token-b")),
        (&b_hybrid, None),
        (&b_self, None),
    ] {
        store
            .create_infrastructure(infra, token, &event("infra.created"), infra.create_time)
            .await
            .unwrap();
    }

    assert_eq!(
        store.infrastructures(a).await.unwrap(),
        [a_cloud.clone(), a_odc.clone(), a_sentry]
    );
    assert_eq!(
        store.infrastructures(b).await.unwrap(),
        [b_odc.clone(), b_hybrid, b_self]
    );
    let mut odc = store.odc_infrastructures().await.unwrap();
    odc.sort_by_key(|(infra, _)| infra.create_time);
    assert_eq!(
        odc,
        [
            (b_odc.clone(), "token-b".to_owned()),
            (a_odc.clone(), "token-a".to_owned())
        ]
    );
    assert_eq!(seqs(&store.events(a, 0, 10).await.unwrap()), [1, 2, 3, 4]);

    // The same id twice is a conflict; an unknown company is not found. Neither writes.
    assert_conflict(
        store
            .create_infrastructure(&a_odc, Some("x"), &event("infra.created"), T0)
            .await,
    );
    let orphan = infra(Uuid::new_v4(), InfraKind::Odc, "Orphan", T0);
    assert_not_found(
        store
            .create_infrastructure(&orphan, Some("x"), &event("infra.created"), T0)
            .await,
    );
    assert_eq!(store.odc_infrastructures().await.unwrap().len(), 2);
    assert_eq!(seqs(&store.events(a, 0, 10).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(store.infrastructures(a).await.unwrap().len(), 3);
    assert!(
        store
            .infrastructures(orphan.company)
            .await
            .unwrap()
            .is_empty()
    );

    // Replacing the identity token: only of an ODC infrastructure of the company named, with
    // its event in the same transaction; anything else writes nothing.
    let replaced = event("infra.token_replaced");
    for (company, id) in [(a, a_cloud.id), (b, a_odc.id), (a, Uuid::new_v4())] {
        assert!(
            !store
                .set_identity_token(company, id, "token-x", &replaced, T0 + 40)
                .await
                .unwrap()
        );
    }
    assert_eq!(seqs(&store.events(a, 0, 10).await.unwrap()), [1, 2, 3, 4]);
    assert_eq!(
        store.identity_token(a_odc.id).await.unwrap().as_deref(),
        Some("token-a")
    );
    assert!(
        store
            .set_identity_token(a, a_odc.id, "token-a2", &replaced, T0 + 40)
            .await
            .unwrap()
    );
    assert_eq!(
        store.identity_token(a_odc.id).await.unwrap().as_deref(),
        Some("token-a2")
    );
    assert_eq!(store.identity_token(a_cloud.id).await.unwrap(), None);
    assert_eq!(
        store.identity_token(b_odc.id).await.unwrap().as_deref(),
        Some("token-b")
    );
    let events = store.events(a, 0, 10).await.unwrap();
    assert_eq!(seqs(&events), [1, 2, 3, 4, 5]);
    assert_eq!(events[4].event.action, "infra.token_replaced");
}

mod sqlite {
    #[tokio::test]
    async fn create_company_stores_company_admin_and_event() {
        super::run_sqlite(|store| {
            Box::pin(super::create_company_stores_company_admin_and_event(store))
        })
        .await;
    }

    #[tokio::test]
    async fn create_company_twice_conflicts_and_writes_nothing() {
        super::run_sqlite(|store| {
            Box::pin(super::create_company_twice_conflicts_and_writes_nothing(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn infrastructures_oldest_first_and_odc_with_token() {
        super::run_sqlite(|store| {
            Box::pin(super::infrastructures_oldest_first_and_odc_with_token(
                store,
            ))
        })
        .await;
    }
}

mod postgres {
    #[tokio::test]
    async fn create_company_stores_company_admin_and_event() {
        super::run_postgres(|store| {
            Box::pin(super::create_company_stores_company_admin_and_event(store))
        })
        .await;
    }

    #[tokio::test]
    async fn create_company_twice_conflicts_and_writes_nothing() {
        super::run_postgres(|store| {
            Box::pin(super::create_company_twice_conflicts_and_writes_nothing(
                store,
            ))
        })
        .await;
    }

    #[tokio::test]
    async fn infrastructures_oldest_first_and_odc_with_token() {
        super::run_postgres(|store| {
            Box::pin(super::infrastructures_oldest_first_and_odc_with_token(
                store,
            ))
        })
        .await;
    }
}
