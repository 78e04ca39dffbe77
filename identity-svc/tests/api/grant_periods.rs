//! Time-bound grants (R35): an assignment with a grant period counts only inside it, for
//! checks, effective permissions and holders; ListRoleAssignments shows scheduled and expired
//! grants; the service commits one event per boundary, also with two replicas racing for it.
//! The clock is the test's manual clock: nothing sleeps until a boundary.

use std::time::Duration;

use identity_svc::core::Clock as _;
use shared::proto::identity::v1 as pb;
use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    a_grant_counts_only_inside_its_period,
    grant_periods_are_validated_and_answered_with_their_state,
    two_replicas_commit_each_boundary_event_once,
);

const HOUR: i64 = 3_600_000_000;
const EFFECTIVE: &str = "role_assignment.became_effective";
const INEFFECTIVE: &str = "role_assignment.became_ineffective";

fn at(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap(),
    }
}

fn period(start: Option<i64>, end: Option<i64>) -> Option<pb::GrantPeriod> {
    Some(pb::GrantPeriod {
        start_time: start.map(at),
        end_time: end.map(at),
    })
}

fn org_scope() -> Option<pb::Scope> {
    Some(pb::Scope {
        kind: Some(pb::scope::Kind::Organization(true)),
    })
}

async fn assign(
    app: &TestApp,
    by: &Session,
    principal: &str,
    role_id: &str,
    scope: Option<pb::Scope>,
    grant_period: Option<pb::GrantPeriod>,
) -> Result<pb::RoleAssignment, tonic::Status> {
    app.access(Some(&by.token))
        .assign_role(pb::AssignRoleRequest {
            parent: by.org.clone(),
            principal: principal.into(),
            role: role(&by.org, role_id),
            scope,
            grant_period,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// What `principal` may do with the Developer role's `asset.open` in production, asked three
/// ways: the check, whether effective permissions list it, whether it is among the holders.
async fn access(app: &TestApp, by: &Session, principal: &str) -> (bool, bool, bool) {
    let checked = app
        .check(by, principal, "asset.open", "production", "")
        .await;
    let effective = app
        .access(Some(&by.token))
        .list_effective_permissions(pb::ListEffectivePermissionsRequest {
            parent: by.org.clone(),
            principal: principal.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .permissions
        .iter()
        .any(|p| p.permission == "asset.open");
    let held = app
        .access(Some(&by.token))
        .list_permission_holders(pb::ListPermissionHoldersRequest {
            parent: by.org.clone(),
            permission: "asset.open".into(),
            stage: stage(&by.org, "production"),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .holders
        .iter()
        .any(|h| h.principal == principal);
    (checked, effective, held)
}

/// The state ListRoleAssignments shows for the principal's only assignment.
async fn listed(app: &TestApp, by: &Session, principal: &str) -> pb::RoleAssignment {
    let mut all = app
        .access(Some(&by.token))
        .list_role_assignments(pb::ListRoleAssignmentsRequest {
            parent: by.org.clone(),
            principal: principal.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .role_assignments;
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// Returns once `app` has applied the organization's event `sequence` (a request carrying it
/// as its consistency token is answered only then).
async fn applied(app: &TestApp, by: &Session, sequence: i64) {
    let request = pb::ListAppsRequest {
        parent: by.org.clone(),
        ..Default::default()
    };
    app.apps(Some(&by.token))
        .list_apps(with_token(request, &sequence.to_string()))
        .await
        .unwrap();
}

/// Reads the feed until an event with `action` arrives (with a deadline).
async fn next_with_action(
    feed: &mut tonic::Streaming<pb::ChangeEvent>,
    action: &str,
) -> pb::ChangeEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = tokio::time::timeout_at(deadline, feed.next())
            .await
            .unwrap_or_else(|_| panic!("no {action} event in the feed"))
            .expect("the feed ended")
            .unwrap();
        if e.action == action {
            return e;
        }
    }
}

/// The grant states a boundary event moved between.
fn moved(e: &pb::ChangeEvent) -> (pb::GrantState, pb::GrantState) {
    let state = |r: &Option<pb::Resource>| match r.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(pb::resource::Kind::RoleAssignment(a)) => a.state(),
        other => panic!("not a role assignment: {other:?}"),
    };
    (state(&e.before), state(&e.after))
}

async fn a_grant_counts_only_inside_its_period(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app
        .invite_and_login(&admin, "dev@acme.example", |_| {})
        .await;
    let now = app.clock.now();
    let (start, end) = (now + HOUR, now + 2 * HOUR);
    let mut feed = app.watch_from_now(&admin).await;
    let a = assign(
        &app,
        &admin,
        &dev.user,
        "developer",
        org_scope(),
        period(Some(start), Some(end)),
    )
    .await
    .unwrap();
    assert_eq!(a.state(), pb::GrantState::Scheduled);
    assert_eq!(a.grant_period, period(Some(start), Some(end)));

    // Before the start: nothing, and the grant is listed as scheduled.
    assert_eq!(access(&app, &admin, &dev.user).await, (false, false, false));
    assert_eq!(
        listed(&app, &admin, &dev.user).await.state(),
        pb::GrantState::Scheduled
    );

    // The start: the service commits the event, then the grant counts everywhere.
    app.clock.advance(Duration::from_hours(1));
    let e = next_with_action(&mut feed, EFFECTIVE).await;
    assert_eq!(e.actor, "system");
    assert_eq!(e.affected_users, std::slice::from_ref(&dev.user));
    assert_eq!(
        moved(&e),
        (pb::GrantState::Scheduled, pb::GrantState::Active)
    );
    assert_eq!(access(&app, &admin, &dev.user).await, (true, true, true));
    assert_eq!(
        listed(&app, &admin, &dev.user).await.state(),
        pb::GrantState::Active
    );

    // The end: nothing at once, whether or not the event is committed yet (the clock is
    // compared too), and the grant is listed as expired.
    app.clock.advance(Duration::from_hours(1));
    assert_eq!(access(&app, &admin, &dev.user).await, (false, false, false));
    assert_eq!(
        listed(&app, &admin, &dev.user).await.state(),
        pb::GrantState::Expired
    );
    let e = next_with_action(&mut feed, INEFFECTIVE).await;
    assert_eq!(moved(&e), (pb::GrantState::Active, pb::GrantState::Expired));
    assert_eq!(access(&app, &admin, &dev.user).await, (false, false, false));
    let expired = listed(&app, &admin, &dev.user).await;
    assert_eq!(expired.state(), pb::GrantState::Expired);
    assert_eq!(expired.grant_period, period(Some(start), Some(end)));
}

async fn grant_periods_are_validated_and_answered_with_their_state(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let dev = app
        .invite_and_login(&admin, "dev@acme.example", |_| {})
        .await;
    let now = app.clock.now();
    let try_period = |p| assign(&app, &admin, &dev.user, "developer", org_scope(), p);

    // The end must follow the start and lie ahead; timestamps must be valid.
    assert_bad_field(
        try_period(period(Some(now + 2 * HOUR), Some(now + HOUR))).await,
        "grant_period.end_time",
    );
    assert_bad_field(
        try_period(period(Some(now + HOUR), Some(now + HOUR))).await,
        "grant_period.end_time",
    );
    assert_bad_field(
        try_period(period(None, Some(now - HOUR))).await,
        "grant_period.end_time",
    );
    let bad_nanos = Some(pb::GrantPeriod {
        start_time: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        }),
        end_time: None,
    });
    assert_bad_field(try_period(bad_nanos).await, "grant_period.start_time");
    assert!(listed_none(&app, &admin, &dev.user).await);

    // A period that has started is ACTIVE at once; an open one is no period.
    let a = try_period(period(Some(now - HOUR), Some(now + HOUR)))
        .await
        .unwrap();
    assert_eq!(a.state(), pb::GrantState::Active);
    assert!(
        app.check(&admin, &dev.user, "asset.open", "production", "")
            .await
    );
    let a = try_period(period(None, None)).await.unwrap();
    assert_eq!((a.state(), a.grant_period), (pb::GrantState::Active, None));

    // App scope takes a period too.
    let orders = app.app(&admin, "Orders").await;
    let app_scope = Some(pb::Scope {
        kind: Some(pb::scope::Kind::App(orders.clone())),
    });
    let a = assign(
        &app,
        &admin,
        &dev.user,
        "developer",
        app_scope,
        period(Some(now + HOUR), None),
    )
    .await
    .unwrap();
    assert_eq!(a.state(), pb::GrantState::Scheduled);

    // The last Administrator for good cannot be replaced by a grant that ends.
    let r = assign(
        &app,
        &admin,
        &admin.user,
        "administrator",
        org_scope(),
        period(None, Some(now + HOUR)),
    )
    .await;
    assert_code(r, Code::FailedPrecondition, Some("LAST_ADMINISTRATOR"));
}

/// Whether the principal holds no assignment (nothing was written by refused calls).
async fn listed_none(app: &TestApp, by: &Session, principal: &str) -> bool {
    app.access(Some(&by.token))
        .list_role_assignments(pb::ListRoleAssignmentsRequest {
            parent: by.org.clone(),
            principal: principal.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .role_assignments
        .is_empty()
}

/// The organization's events with `action`, as the store has them.
async fn events_with_action(app: &TestApp, by: &Session, action: &str) -> Vec<pb::ChangeEvent> {
    app.audit(Some(&by.token))
        .list_change_events(pb::ListChangeEventsRequest {
            parent: by.org.clone(),
            action: action.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn two_replicas_commit_each_boundary_event_once(b: Backend) {
    let first = spawn_app(b).await;
    let admin = first.admin("Acme").await;
    let dev = first
        .invite_and_login(&admin, "dev@acme.example", |_| {})
        .await;
    // Both replicas run the boundary task on the same clock. The second one has no follower:
    // it learns of the first one's events only by losing a compare-and-set and catching up,
    // so each boundary is raced for.
    let second = first.replica(|s| s.follow_interval_ms = 0).await;
    let now = first.clock.now();
    let a = assign(
        &first,
        &admin,
        &dev.user,
        "developer",
        org_scope(),
        period(Some(now + HOUR), Some(now + 2 * HOUR)),
    )
    .await
    .unwrap();
    assert_eq!(a.state(), pb::GrantState::Scheduled);
    // A write on the second replica catches it up: it knows the grant before the clock moves.
    second.app(&admin, "Zero").await;
    assert_eq!(
        listed(&second, &admin, &dev.user).await.state(),
        pb::GrantState::Scheduled
    );
    let mut feeds = [
        first.watch_from_now(&admin).await,
        second.watch_from_now(&admin).await,
    ];

    for (action, states) in [
        (
            EFFECTIVE,
            (pb::GrantState::Scheduled, pb::GrantState::Active),
        ),
        (
            INEFFECTIVE,
            (pb::GrantState::Active, pb::GrantState::Expired),
        ),
    ] {
        first.clock.advance(Duration::from_hours(1));
        // Both replicas' feeds carry the event, with the same sequence.
        let mut seen = Vec::new();
        for feed in &mut feeds {
            let e = next_with_action(feed, action).await;
            assert_eq!(moved(&e), states);
            seen.push(e.sequence);
        }
        assert_eq!(seen[0], seen[1], "{action}");
        let expected = matches!(action, EFFECTIVE);
        for replica in [&first, &second] {
            // The feed reads the database; a replica's state may apply the event a moment
            // later (the replica that lost the race catches up): the event's sequence as a
            // consistency token waits for that, as any client reading its own event would.
            applied(replica, &admin, seen[0]).await;
            assert_eq!(
                access(replica, &admin, &dev.user).await.0,
                expected,
                "{action}"
            );
        }
    }
    // Each boundary is in the trail exactly once: the replica that lost the race for it caught
    // up and found the grant already moved (read after one more write on each replica).
    first.app(&admin, "One").await;
    second.app(&admin, "Two").await;
    for replica in [&first, &second] {
        for action in [EFFECTIVE, INEFFECTIVE] {
            let events = events_with_action(replica, &admin, action).await;
            assert_eq!(events.len(), 1, "{action}: {events:?}");
        }
    }
}
