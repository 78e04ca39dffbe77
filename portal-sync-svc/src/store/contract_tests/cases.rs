//! Support cases and approved contacts: create, approve, remove a contact.

use uuid::Uuid;

use super::fixtures::{
    T0, assert_conflict, assert_not_found, email, event, seed_company, seed_odc, seqs, support_case,
};
use super::harness::{run_postgres, run_sqlite};
use crate::domain::model::{CaseState, SupportCase};
use crate::store::PortalStore;

async fn cases_create_approve_and_remove_contact(store: &dyn PortalStore) {
    let (seed, odc) = seed_odc(store).await;
    let id = seed.company.id;
    let other = seed_company(store, "Other").await.company.id;

    let later = support_case(
        id,
        odc.id,
        "ada@example.com",
        &["cc1@example.com", "cc2@example.com"],
        T0 + 20,
    );
    let earlier = support_case(id, odc.id, "bob@example.com", &["cc1@example.com"], T0 + 10);
    let elsewhere = support_case(
        other,
        Uuid::new_v4(),
        "ada@example.com",
        &["cc1@example.com"],
        T0,
    );
    store
        .create_case(&later, &event("case.created"), T0 + 20)
        .await
        .unwrap();
    store
        .create_case(&earlier, &event("case.created"), T0 + 10)
        .await
        .unwrap();
    store
        .create_case(&elsewhere, &event("case.created"), T0)
        .await
        .unwrap();
    assert_eq!(
        store.cases(id).await.unwrap(),
        [earlier.clone(), later.clone()]
    );
    assert_eq!(
        store.cases(other).await.unwrap(),
        std::slice::from_ref(&elsewhere)
    );

    // Same id again: conflict; unknown company: not found.
    assert_conflict(
        store
            .create_case(&later, &event("case.created"), T0 + 30)
            .await,
    );
    let orphan = support_case(Uuid::new_v4(), odc.id, "x@example.com", &[], T0);
    assert_not_found(store.create_case(&orphan, &event("case.created"), T0).await);
    assert!(store.cases(orphan.company).await.unwrap().is_empty());

    // Approve: open, and the creator becomes a contact (once).
    store
        .approve_case(id, later.id, &event("case.approved"), T0 + 40)
        .await
        .unwrap();
    let cases = store.cases(id).await.unwrap();
    assert_eq!(cases[1].state, CaseState::Open);
    assert_eq!(cases[0].state, CaseState::AwaitingApproval);
    assert_eq!(
        cases[1],
        SupportCase {
            state: CaseState::Open,
            ..later.clone()
        }
    );
    assert_eq!(
        store.approved_contacts(id).await.unwrap(),
        [email("ada@example.com")]
    );
    store
        .approve_case(id, later.id, &event("case.approved"), T0 + 41)
        .await
        .unwrap();
    store
        .approve_case(id, earlier.id, &event("case.approved"), T0 + 42)
        .await
        .unwrap();
    assert_eq!(
        store.approved_contacts(id).await.unwrap(),
        [email("ada@example.com"), email("bob@example.com")]
    );
    assert!(store.approved_contacts(other).await.unwrap().is_empty());

    // A case of another company, or none: not found, nothing written.
    let before = store.events(id, 0, 100).await.unwrap();
    assert_not_found(
        store
            .approve_case(id, elsewhere.id, &event("case.approved"), T0)
            .await,
    );
    assert_not_found(
        store
            .approve_case(id, Uuid::new_v4(), &event("case.approved"), T0)
            .await,
    );
    assert_eq!(store.events(id, 0, 100).await.unwrap(), before);
    assert_eq!(
        store.cases(other).await.unwrap()[0].state,
        CaseState::AwaitingApproval
    );

    // Removing a CC removes it from every case of the company, not elsewhere.
    store
        .remove_contact(
            id,
            &email("cc1@example.com"),
            &event("contact.removed"),
            T0 + 50,
        )
        .await
        .unwrap();
    let cases = store.cases(id).await.unwrap();
    assert!(cases[0].cc.is_empty());
    assert_eq!(cases[1].cc, [email("cc2@example.com")]);
    assert_eq!(cases[1].state, CaseState::Open);
    assert_eq!(
        store.cases(other).await.unwrap()[0].cc,
        [email("cc1@example.com")]
    );

    // Removing an approved contact removes it from the list.
    store
        .remove_contact(
            id,
            &email("ada@example.com"),
            &event("contact.removed"),
            T0 + 60,
        )
        .await
        .unwrap();
    assert_eq!(
        store.approved_contacts(id).await.unwrap(),
        [email("bob@example.com")]
    );
    // Removing someone who is nowhere is harmless (and audited).
    store
        .remove_contact(
            id,
            &email("nobody@example.com"),
            &event("contact.removed"),
            T0 + 70,
        )
        .await
        .unwrap();
    assert_eq!(
        store.cases(id).await.unwrap()[1].cc,
        [email("cc2@example.com")]
    );

    let events = store.events(id, 0, 100).await.unwrap();
    // company, infra, 2 cases, 3 approvals, 3 removals.
    assert_eq!(seqs(&events), (1..=10).collect::<Vec<_>>());
    assert_eq!(events[9].event, event("contact.removed"));
    assert_eq!(events[9].time, T0 + 70);

    assert_not_found(
        store
            .remove_contact(Uuid::new_v4(), &email("ada@example.com"), &event("x"), T0)
            .await,
    );
}

mod sqlite {
    #[tokio::test]
    async fn cases_create_approve_and_remove_contact() {
        super::run_sqlite(|store| Box::pin(super::cases_create_approve_and_remove_contact(store)))
            .await;
    }
}

mod postgres {
    #[tokio::test]
    async fn cases_create_approve_and_remove_contact() {
        super::run_postgres(|store| {
            Box::pin(super::cases_create_approve_and_remove_contact(store))
        })
        .await;
    }
}
