//! Access for the life of a stream: an open `WatchChanges` stream ends within a second with
//! UNAUTHENTICATED when its token is revoked or expires, its user is deactivated or deleted, its
//! service account is deleted or its session is logged out (also when that happened on another
//! replica), and with PERMISSION_DENIED when its principal loses `org.view_audit_trail`. Each
//! test first shows that its stream delivers, then measures from the moment the RPC that ended
//! the access answered OK.

use std::time::Duration;

use shared::proto::identity::v1 as pb;
use tokio::time::Instant;
use tonic::Code;
use tonic::codec::Streaming;

use crate::helpers::*;

crate::api_tests!(
    a_revoked_service_account_token_ends_its_stream,
    an_expired_token_ends_its_stream,
    a_deactivated_user_s_stream_ends,
    a_deleted_user_s_stream_ends,
    a_deleted_service_account_s_stream_ends,
    a_logged_out_session_s_stream_ends,
    losing_the_permission_ends_the_stream_with_permission_denied,
    a_revocation_or_deactivation_on_another_replica_ends_the_stream,
);

/// The functional bound: a stream ends this soon after the change that ended its access.
const BOUND: Duration = Duration::from_secs(1);

fn org_scope() -> Option<pb::Scope> {
    Some(pb::Scope {
        kind: Some(pb::scope::Kind::Organization(true)),
    })
}

/// A custom role granting only `org.view_audit_trail`; returns its name.
async fn auditor_role(app: &TestApp, admin: &Session) -> String {
    app.roles(Some(&admin.token))
        .create_role(pb::CreateRoleRequest {
            parent: admin.org.clone(),
            role: Some(pb::Role {
                display_name: format!("Auditor {}", uuid::Uuid::new_v4().simple()),
                grants: vec![pb::PermissionGrant {
                    permission: "org.view_audit_trail".into(),
                    stages: vec![],
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// A service account holding the auditor role, with a token living `ttl_seconds`: the
/// account as a session (its token, its name) and the token's resource name.
async fn service_watcher(app: &TestApp, admin: &Session, ttl_seconds: i64) -> (Session, String) {
    let role = auditor_role(app, admin).await;
    let mut sas = app.service_accounts(Some(&admin.token));
    let sa = sas
        .create_service_account(pb::CreateServiceAccountRequest {
            parent: admin.org.clone(),
            service_account: Some(pb::ServiceAccount {
                display_name: "portal-sync".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    app.access(Some(&admin.token))
        .assign_role(pb::AssignRoleRequest {
            parent: admin.org.clone(),
            principal: sa.name.clone(),
            role,
            scope: org_scope(),
            grant_period: None,
        })
        .await
        .unwrap();
    let token = sas
        .create_service_account_token(pb::CreateServiceAccountTokenRequest {
            parent: sa.name.clone(),
            ttl_seconds,
        })
        .await
        .unwrap()
        .into_inner();
    let session = Session {
        token: token.secret,
        user: sa.name,
        org: admin.org.clone(),
    };
    (session, token.token.unwrap().name)
}

/// A signed-in user holding the auditor role.
async fn user_watcher(app: &TestApp, admin: &Session) -> Session {
    let role = auditor_role(app, admin).await;
    app.member(admin, "auditor@acme.example", &role).await
}

/// Opens `watcher`'s stream on `app` from the organization's current sequence and shows that
/// it delivers.
async fn live_stream(
    app: &TestApp,
    admin: &Session,
    watcher: &Session,
) -> Streaming<pb::ChangeEvent> {
    let mut stream = open(app, admin, watcher).await;
    probe(app, admin, &mut [&mut stream]).await;
    stream
}

/// Opens `watcher`'s stream on `app` from the organization's current sequence.
async fn open(app: &TestApp, admin: &Session, watcher: &Session) -> Streaming<pb::ChangeEvent> {
    let after_sequence = app.sequence(admin).await;
    app.audit(Some(&watcher.token))
        .watch_changes(pb::WatchChangesRequest {
            parent: admin.org.clone(),
            after_sequence,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Shows that `streams` deliver: an app `admin` creates arrives on each.
async fn probe(app: &TestApp, admin: &Session, streams: &mut [&mut Streaming<pb::ChangeEvent>]) {
    let probe = app
        .app(admin, &format!("Probe {}", uuid::Uuid::new_v4().simple()))
        .await;
    for stream in streams {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream delivers")
            .unwrap()
            .expect("the stream is open");
        assert_eq!(event.target, probe);
    }
}

/// The next item of `stream`, read with a deadline of [`BOUND`] from `since`, is the error
/// that ends it: `code` with `reason`. Nothing is delivered after the access ended.
async fn ends_with(
    stream: &mut Streaming<pb::ChangeEvent>,
    since: Instant,
    code: Code,
    reason: &str,
) {
    let next = tokio::time::timeout_at(since + BOUND, stream.message())
        .await
        .unwrap_or_else(|_| panic!("the stream is still open {BOUND:?} after its access ended"));
    assert_code(next, code, Some(reason));
    // Ended for good.
    let after = tokio::time::timeout(BOUND, stream.message()).await;
    assert!(matches!(after, Ok(Ok(None))), "{after:?}");
}

async fn a_revoked_service_account_token_ends_its_stream(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let (sa, token_name) = service_watcher(&app, &admin, 0).await;
    let mut stream = live_stream(&app, &admin, &sa).await;
    app.service_accounts(Some(&admin.token))
        .revoke_service_account_token(pb::RevokeServiceAccountTokenRequest { name: token_name })
        .await
        .unwrap();
    ends_with(
        &mut stream,
        Instant::now(),
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    )
    .await;
}

async fn an_expired_token_ends_its_stream(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let (sa, _) = service_watcher(&app, &admin, 60).await;
    let mut stream = live_stream(&app, &admin, &sa).await;
    app.clock.advance(Duration::from_secs(61));
    ends_with(
        &mut stream,
        Instant::now(),
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    )
    .await;
}

async fn a_deactivated_user_s_stream_ends(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let auditor = user_watcher(&app, &admin).await;
    let mut stream = live_stream(&app, &admin, &auditor).await;
    app.users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: auditor.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    ends_with(
        &mut stream,
        Instant::now(),
        Code::Unauthenticated,
        "USER_DEACTIVATED",
    )
    .await;
}

async fn a_deleted_user_s_stream_ends(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let auditor = user_watcher(&app, &admin).await;
    let mut stream = live_stream(&app, &admin, &auditor).await;
    app.users(Some(&admin.token))
        .delete_user(pb::DeleteUserRequest {
            name: auditor.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    ends_with(
        &mut stream,
        Instant::now(),
        Code::Unauthenticated,
        "USER_DELETED",
    )
    .await;
}

async fn a_deleted_service_account_s_stream_ends(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let (sa, _) = service_watcher(&app, &admin, 0).await;
    let mut stream = live_stream(&app, &admin, &sa).await;
    app.service_accounts(Some(&admin.token))
        .delete_service_account(pb::DeleteServiceAccountRequest {
            name: sa.user.clone(),
        })
        .await
        .unwrap();
    ends_with(
        &mut stream,
        Instant::now(),
        Code::Unauthenticated,
        "SERVICE_ACCOUNT_DELETED",
    )
    .await;
}

async fn a_logged_out_session_s_stream_ends(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let auditor = user_watcher(&app, &admin).await;
    // A second session of the same user stays valid: only the stream's session ends.
    let other = app
        .login(&admin.org, "auditor@acme.example", &auditor.user)
        .await;
    let mut stream = open(&app, &admin, &auditor).await;
    let mut other_stream = open(&app, &admin, &other).await;
    probe(&app, &admin, &mut [&mut stream, &mut other_stream]).await;
    app.users(Some(&auditor.token))
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();
    ends_with(
        &mut stream,
        Instant::now(),
        Code::Unauthenticated,
        "SESSION_LOGGED_OUT",
    )
    .await;
    probe(&app, &admin, &mut [&mut other_stream]).await;
}

async fn losing_the_permission_ends_the_stream_with_permission_denied(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    let (sa, _) = service_watcher(&app, &admin, 0).await;
    let mut stream = live_stream(&app, &admin, &sa).await;
    app.access(Some(&admin.token))
        .revoke_role(pb::RevokeRoleRequest {
            parent: admin.org.clone(),
            principal: sa.user.clone(),
            scope: org_scope(),
        })
        .await
        .unwrap();
    ends_with(
        &mut stream,
        Instant::now(),
        Code::PermissionDenied,
        "PERMISSION_LOST",
    )
    .await;
}

/// Replica B (its follower at the default interval) revokes a token and deactivates a user
/// whose streams are open on replica A.
async fn a_revocation_or_deactivation_on_another_replica_ends_the_stream(b: Backend) {
    let a = spawn_app(b).await;
    let admin = a.admin("Acme").await;
    let (sa, token_name) = service_watcher(&a, &admin, 0).await;
    let auditor = user_watcher(&a, &admin).await;
    let replica = a.replica(|_| {}).await;
    let mut sa_stream = open(&a, &admin, &sa).await;
    let mut user_stream = open(&a, &admin, &auditor).await;
    probe(&a, &admin, &mut [&mut sa_stream, &mut user_stream]).await;

    replica
        .service_accounts(Some(&admin.token))
        .revoke_service_account_token(pb::RevokeServiceAccountTokenRequest { name: token_name })
        .await
        .unwrap();
    ends_with(
        &mut sa_stream,
        Instant::now(),
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    )
    .await;

    replica
        .users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: auditor.user.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    ends_with(
        &mut user_stream,
        Instant::now(),
        Code::Unauthenticated,
        "USER_DEACTIVATED",
    )
    .await;
}
