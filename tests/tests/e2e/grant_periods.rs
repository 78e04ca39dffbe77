//! Time-bound grants (R35) in the Customer Portal: a grant outside its period yields no
//! record, and identity's boundary events make records appear and disappear, without
//! portal-sync reading any clock. identity runs on a manual clock the test moves.

use std::collections::BTreeMap;
use std::time::Duration;

use identity_svc::core::Clock as _;
use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;

use crate::harness::*;
use crate::sync::{Setup, caught_up, invite, records, setup};

crate::e2e_tests!(portal_records_appear_and_disappear_at_the_grant_boundaries);

const HOUR: i64 = 3_600_000_000;

fn at(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap(),
    }
}

/// Assigns Developer at organization scope to `user` from `start` to `end`.
async fn assign_for(w: &World, s: &Setup, user: &str, start: i64, end: i64) {
    let r = w
        .id_access(&s.org.admin_token)
        .assign_role(id::AssignRoleRequest {
            parent: s.org.name.clone(),
            principal: user.into(),
            role: format!("{}/roles/developer", s.org.name),
            scope: Some(id::Scope {
                kind: Some(id::scope::Kind::Organization(true)),
            }),
            grant_period: Some(id::GrantPeriod {
                start_time: Some(at(start)),
                end_time: Some(at(end)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let expected = if start > w.identity_clock().now() {
        id::GrantState::Scheduled
    } else {
        id::GrantState::Active
    };
    assert_eq!(r.state(), expected);
}

/// Waits until the ODC-derived records are `expected` (the sync applies identity's events in
/// the background).
async fn records_become(
    w: &World,
    s: &Setup,
    expected: &[(&str, portal::InfrastructurePermission)],
) {
    let expected: BTreeMap<String, _> = expected
        .iter()
        .map(|(e, p)| ((*e).to_owned(), *p))
        .collect();
    eventually("the portal records", || async {
        (records(w, s).await == expected).then_some(())
    })
    .await;
}

async fn portal_records_appear_and_disappear_at_the_grant_boundaries(b: Backend) {
    use portal::InfrastructurePermission::{
        InfrastructureAdmin as ADMIN, InfrastructureMember as MEMBER,
    };
    let w = World::start_with_manual_clock(b).await;
    let s = setup(&w).await;
    let later = invite(&w, &s, "later@acme.example", None).await;
    let now_only = invite(&w, &s, "now@acme.example", None).await;
    let now = w.identity_clock().now();
    // One grant starts in an hour and ends in two; the other is in effect for the next hour.
    assign_for(&w, &s, &later, now + HOUR, now + 2 * HOUR).await;
    assign_for(&w, &s, &now_only, now - HOUR, now + HOUR).await;
    caught_up(&w, &s).await;
    assert_eq!(
        records(&w, &s).await,
        [("admin@acme.example", ADMIN), ("now@acme.example", MEMBER)]
            .map(|(e, p)| (e.to_owned(), p))
            .into()
    );

    // One hour on: one grant ends, the other starts.
    w.identity_clock().advance(Duration::from_hours(1));
    records_become(
        &w,
        &s,
        &[
            ("admin@acme.example", ADMIN),
            ("later@acme.example", MEMBER),
        ],
    )
    .await;

    // Two hours on: the second one ends too.
    w.identity_clock().advance(Duration::from_hours(1));
    records_become(&w, &s, &[("admin@acme.example", ADMIN)]).await;
    caught_up(&w, &s).await;
    assert_eq!(records(&w, &s).await.len(), 1);
}
