//! Several identity replicas on one database: each keeps its own in-memory state, applies the
//! events the others commit (the follower), and answers a request carrying a consistency token
//! only once it has applied that token (read-your-writes across replicas).

use std::time::Duration;

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::api_tests;
use crate::helpers::{
    Backend, Session, TestApp, assert_bad_field, assert_code, consistency_token_of, spawn_app,
    with_token,
};

api_tests!(
    consistency_token_reads_a_write_made_on_another_replica,
    an_organization_created_elsewhere_is_served_at_once,
    consistency_token_ahead_or_malformed_is_refused,
    follower_applies_other_replicas_events_to_state_and_feed,
    deactivation_on_one_replica_stops_the_user_on_the_other,
    a_token_revoked_on_one_replica_stops_on_the_other,
);

/// A replica whose follower is off: it learns of other replicas' writes only through
/// consistency tokens (or its own writes).
async fn without_follower(app: &TestApp) -> TestApp {
    app.replica(|s| s.follow_interval_ms = 0).await
}

/// A replica whose follower polls every 10 ms.
async fn with_follower(app: &TestApp) -> TestApp {
    app.replica(|s| s.follow_interval_ms = 10).await
}

async fn consistency_token_reads_a_write_made_on_another_replica(b: Backend) {
    let a = spawn_app(b).await;
    let admin = a.admin("Acme").await;
    let replica = without_follower(&a).await;
    // The replica has loaded the organization (and serves the admin's session from the
    // shared database).
    replica
        .apps(Some(&admin.token))
        .list_apps(pb::ListAppsRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let (name, token) = a.app_with_token(&admin, "Orders").await;

    // Without the token the replica answers from its state, which has not seen the write.
    let stale = replica
        .apps(Some(&admin.token))
        .get_app(pb::GetAppRequest { name: name.clone() })
        .await;
    assert_code(stale, Code::NotFound, None);

    // With it, the replica catches up first.
    let got = replica
        .apps(Some(&admin.token))
        .get_app(with_token(pb::GetAppRequest { name: name.clone() }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, name);
    assert_eq!(got.display_name, "Orders");

    // A write on the replica after catching up continues the same sequence.
    let (_, replica_token) = replica.app_with_token(&admin, "Billing").await;
    assert_eq!(
        replica_token.parse::<u64>().unwrap(),
        token.parse::<u64>().unwrap() + 1
    );
    // And the first replica reads it with that token.
    let apps = a
        .apps(Some(&admin.token))
        .list_apps(with_token(
            pb::ListAppsRequest {
                parent: admin.org.clone(),
                ..Default::default()
            },
            &replica_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<String> = apps.apps.into_iter().map(|x| x.display_name).collect();
    names.sort();
    assert_eq!(names, vec!["Billing".to_owned(), "Orders".to_owned()]);
}

/// A replica that has never seen an organization (created through another replica after it
/// started, no follower to load it) serves it at once: ListOrganizations lists it, and a
/// valid token of it is accepted (authentication loads the token's organization).
async fn an_organization_created_elsewhere_is_served_at_once(b: Backend) {
    let a = spawn_app(b).await;
    let replica = without_follower(&a).await;
    let admin = a.admin("Acme").await;
    let listed = replica
        .orgs(Some(&replica.operator))
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .organizations;
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, [admin.org.as_str()]);
    assert_eq!(listed[0].display_name, "Acme");
    let apps = replica
        .apps(Some(&admin.token))
        .list_apps(pb::ListAppsRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(apps.apps.is_empty(), "{apps:?}");
    // A token of no organization is still refused.
    let r = replica
        .apps(Some("odc_not_a_token"))
        .list_apps(pb::ListAppsRequest {
            parent: admin.org.clone(),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::Unauthenticated, None);
}

async fn consistency_token_ahead_or_malformed_is_refused(b: Backend) {
    let a = spawn_app(b).await;
    let admin = a.admin("Acme").await;
    let (_, token) = a.app_with_token(&admin, "Orders").await;
    let list = || pb::ListAppsRequest {
        parent: admin.org.clone(),
        ..Default::default()
    };
    let ahead = (token.parse::<u64>().unwrap() + 1).to_string();
    let r = a
        .apps(Some(&admin.token))
        .list_apps(with_token(list(), &ahead))
        .await;
    assert_code(r, Code::OutOfRange, Some("OUT_OF_RANGE"));
    let r = a
        .apps(Some(&admin.token))
        .list_apps(with_token(list(), "seven"))
        .await;
    assert_bad_field(r, "x-consistency-token");
    // The current token is fine.
    a.apps(Some(&admin.token))
        .list_apps(with_token(list(), &token))
        .await
        .unwrap();
}

/// Reads `stream` until the event with `sequence` arrives (or fails after a deadline).
async fn wait_for_event(
    stream: &mut tonic::Streaming<pb::ChangeEvent>,
    sequence: i64,
) -> pb::ChangeEvent {
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        loop {
            let e = stream.message().await.unwrap().expect("the feed ended");
            if e.sequence == sequence {
                return e;
            }
            assert!(e.sequence < sequence, "skipped past {sequence}: {e:?}");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("event {sequence} never reached the other replica's feed"))
}

/// Polls the replica's own state (a snapshot read without a consistency token) until it has
/// applied `sequence`: the follower runs in the background, so this waits for a condition, with
/// a deadline.
async fn wait_applied(replica: &TestApp, admin: &Session, sequence: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = replica.sequence(admin).await;
        if seen >= sequence {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never applied event {sequence} (state at {seen})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn follower_applies_other_replicas_events_to_state_and_feed(b: Backend) {
    let a = spawn_app(b).await;
    let admin = a.admin("Acme").await;
    let dev = a.member(&admin, "dev@acme.example", "developer").await;
    let replica = with_follower(&a).await;

    let check = || pb::CheckPermissionRequest {
        parent: admin.org.clone(),
        principal: dev.user.clone(),
        permission: "users.manage".into(),
        ..Default::default()
    };
    let before = replica
        .access(Some(&admin.token))
        .check_permission(check())
        .await
        .unwrap()
        .into_inner();
    assert!(!before.allowed);
    let mut feed = replica.watch_from_now(&admin).await;

    // Administrator replaces Developer, on the first replica.
    let r = a
        .access(Some(&admin.token))
        .assign_role(pb::AssignRoleRequest {
            parent: admin.org.clone(),
            principal: dev.user.clone(),
            role: format!("{}/roles/administrator", admin.org),
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::Organization(true)),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    let seq: i64 = consistency_token_of(&r).parse().unwrap();

    // The replica's watchers get it, and the follower applies it to the replica's state.
    let event = wait_for_event(&mut feed, seq).await;
    assert!(event.action.starts_with("role_assignment."), "{event:?}");
    wait_applied(&replica, &admin, seq).await;
    let after = replica
        .access(Some(&admin.token))
        .check_permission(check())
        .await
        .unwrap()
        .into_inner();
    assert!(after.allowed, "{after:?}");
}

async fn deactivation_on_one_replica_stops_the_user_on_the_other(b: Backend) {
    let a = spawn_app(b).await;
    let admin = a.admin("Acme").await;
    let dev = a.member(&admin, "dev@acme.example", "developer").await;
    let replica = with_follower(&a).await;
    let mine = || pb::ListEffectivePermissionsRequest {
        parent: dev.org.clone(),
        ..Default::default()
    };
    replica
        .access(Some(&dev.token))
        .list_effective_permissions(mine())
        .await
        .unwrap();
    let mut feed = replica.watch_from_now(&admin).await;

    let r = a
        .users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: dev.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let seq: i64 = consistency_token_of(&r).parse().unwrap();
    wait_for_event(&mut feed, seq).await;
    wait_applied(&replica, &admin, seq).await;

    let r = replica
        .access(Some(&dev.token))
        .list_effective_permissions(mine())
        .await;
    let status = r.expect_err("a deactivated user's session must stop working");
    assert!(
        matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ),
        "{status:?}"
    );
}

async fn a_token_revoked_on_one_replica_stops_on_the_other(b: Backend) {
    let a = spawn_app(b).await;
    let admin = a.admin("Acme").await;
    // The replica trusts cached token records for an hour: only its follower can tell it
    // about a revocation made elsewhere.
    let replica = a
        .replica(|s| {
            s.follow_interval_ms = 10;
            s.token_cache_ttl_ms = 3_600_000;
        })
        .await;
    let (_, token) = a.service_account_with_token(&admin, "portal-sync").await;
    let ask = |app: &TestApp, bearer: &str, org: &str| {
        let mut c = app.apps(Some(bearer));
        let org = org.to_owned();
        async move {
            c.list_apps(pb::ListAppsRequest {
                parent: org,
                ..Default::default()
            })
            .await
        }
    };
    // Both the service-account token and a second session of the admin are now cached by
    // the replica, once its follower has applied the service account's creation (a poll
    // with a deadline: the replica knows of it within a few follower passes).
    let session = a.login(&admin.org, "admin@acme.example", &admin.user).await;
    for bearer in [&token.secret, &session.token] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Err(status) = ask(&replica, bearer, &admin.org).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica never accepted a new token: {status:?}"
            );
            tokio::task::yield_now().await;
        }
    }

    a.service_accounts(Some(&admin.token))
        .revoke_service_account_token(pb::RevokeServiceAccountTokenRequest {
            name: token.token.unwrap().name,
        })
        .await
        .unwrap();
    a.users(Some(&session.token))
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();

    // On the replica both stop within a few follower passes (a poll with a deadline, far
    // below the cache's hour).
    for bearer in [&token.secret, &session.token] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match ask(&replica, bearer, &admin.org).await {
                Err(s) if s.code() == Code::Unauthenticated => break,
                other => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "a token revoked on another replica still works here: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    // The admin's first session was never revoked.
    ask(&replica, &admin.token, &admin.org).await.unwrap();
}
