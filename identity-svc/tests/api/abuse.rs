//! The cost of unauthenticated work: the waits after wrong passwords (per account for
//! unfamiliar addresses, per address for familiar ones), the per-address rate limit of Login
//! and AcceptInvitation, and the bounded password-hashing pool. Client addresses are real:
//! each client binds its connections to its own loopback address (127.0.0.x).

use std::time::Duration;

use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::helpers::*;

crate::api_tests!(
    wrong_passwords_make_an_unfamiliar_address_wait_longer_each_time_until_a_success,
    a_familiar_address_keeps_logging_in_and_has_a_wait_of_its_own,
    failures_are_forgotten_after_a_quiet_period,
    the_address_limit_refuses_with_retry_info_while_another_address_logs_in,
    a_full_hashing_pool_refuses_with_retry_info,
);

const WRONG: &str = "Wrong-Password-1";

fn login(admin: &Session, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        organization: admin.org.clone(),
        email: "admin@acme.example".into(),
        password: password.into(),
    }
}

/// Logs in from `source` with `password` `n` times, each refused as a wrong password.
async fn fail(app: &TestApp, admin: &Session, source: &str, n: usize) {
    for _ in 0..n {
        let r = app.users_from(source).login(login(admin, WRONG)).await;
        assert_code(r, Code::Unauthenticated, None);
    }
}

/// A login from `source` with the right password is refused with LOCKED_OUT; the wait it
/// names.
async fn locked(app: &TestApp, admin: &Session, source: &str) -> Duration {
    let r = app.users_from(source).login(login(admin, PASSWORD)).await;
    retry_delay(&assert_code(r, Code::ResourceExhausted, Some("LOCKED_OUT")))
}

async fn wrong_passwords_make_an_unfamiliar_address_wait_longer_each_time_until_a_success(
    b: Backend,
) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    // Five wrong passwords from an address the user never logged in from: a 60 s wait.
    fail(&app, &admin, "127.0.0.2", 5).await;
    assert_eq!(
        locked(&app, &admin, "127.0.0.2").await,
        Duration::from_mins(1)
    );
    // Any other unfamiliar address waits too: the count is the account's.
    let waited = locked(&app, &admin, "127.0.0.3").await;
    assert!(waited <= Duration::from_mins(1), "{waited:?}");
    app.clock.advance(Duration::from_secs(59));
    assert_eq!(
        locked(&app, &admin, "127.0.0.2").await,
        Duration::from_secs(1)
    );
    // After the wait one more wrong password doubles it.
    app.clock.advance(Duration::from_secs(2));
    fail(&app, &admin, "127.0.0.2", 1).await;
    assert_eq!(
        locked(&app, &admin, "127.0.0.2").await,
        Duration::from_mins(2)
    );
    app.clock.advance(Duration::from_secs(121));
    fail(&app, &admin, "127.0.0.2", 1).await;
    assert_eq!(
        locked(&app, &admin, "127.0.0.2").await,
        Duration::from_mins(4)
    );
    // The right password after the wait opens a session and resets the count: four wrong
    // passwords from a new address begin no wait.
    app.clock.advance(Duration::from_secs(241));
    app.users_from("127.0.0.2")
        .login(login(&admin, PASSWORD))
        .await
        .unwrap();
    fail(&app, &admin, "127.0.0.4", 4).await;
    app.users_from("127.0.0.4")
        .login(login(&admin, PASSWORD))
        .await
        .unwrap();
    // An unknown email is refused the same way as a wrong password.
    let unknown = pb::LoginRequest {
        organization: admin.org.clone(),
        email: "nobody@acme.example".into(),
        password: PASSWORD.into(),
    };
    assert_code(
        app.users_from("127.0.0.2").login(unknown).await,
        Code::Unauthenticated,
        None,
    );
}

async fn a_familiar_address_keeps_logging_in_and_has_a_wait_of_its_own(b: Backend) {
    let app = spawn_app(b).await;
    // The administrator accepted the invitation and logged in from 127.0.0.1.
    let admin = app.admin("Acme").await;
    // An attacker elsewhere keeps the account waiting for the maximum...
    fail(&app, &admin, "127.0.0.2", 5).await;
    for _ in 0..5 {
        let wait = locked(&app, &admin, "127.0.0.2").await;
        app.clock.advance(wait + Duration::from_secs(1));
        fail(&app, &admin, "127.0.0.2", 1).await;
    }
    assert_eq!(
        locked(&app, &admin, "127.0.0.2").await,
        Duration::from_mins(15)
    );
    // ...and the user, from the address they logged in from before, is not held by it.
    app.users_from("127.0.0.1")
        .login(login(&admin, PASSWORD))
        .await
        .unwrap();
    // That address has its own count: five wrong passwords from it make it wait 60 s, while
    // the account's own wait (for the other addresses) is unchanged.
    fail(&app, &admin, "127.0.0.1", 5).await;
    assert_eq!(
        locked(&app, &admin, "127.0.0.1").await,
        Duration::from_mins(1)
    );
    assert_eq!(
        locked(&app, &admin, "127.0.0.2").await,
        Duration::from_mins(15)
    );
    app.clock.advance(Duration::from_secs(61));
    app.users_from("127.0.0.1")
        .login(login(&admin, PASSWORD))
        .await
        .unwrap();
    // A restart forgets the familiar addresses (they live in memory): the user then waits
    // like any other address, at most the maximum.
    let mut app = app;
    app.stop().await;
    app.start().await;
    let wait = locked(&app, &admin, "127.0.0.1").await;
    assert!(wait <= Duration::from_mins(15), "{wait:?}");
}

async fn failures_are_forgotten_after_a_quiet_period(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    fail(&app, &admin, "127.0.0.2", 5).await;
    locked(&app, &admin, "127.0.0.2").await;
    // Twelve hours without a failure after the wait ended: the count starts over, so one
    // wrong password begins no wait.
    app.clock
        .advance(Duration::from_mins(1) + Duration::from_hours(12));
    fail(&app, &admin, "127.0.0.2", 1).await;
    app.users_from("127.0.0.2")
        .login(login(&admin, PASSWORD))
        .await
        .unwrap();
}

async fn the_address_limit_refuses_with_retry_info_while_another_address_logs_in(b: Backend) {
    let mut app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    app.users(Some(&admin.token))
        .invite_user(pb::InviteUserRequest {
            parent: admin.org.clone(),
            email: "p@acme.example".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Three calls per address, then one a minute.
    app.tweak = Some(Box::new(|s| {
        s.login.address_rate_per_minute = 1;
        s.login.address_burst = 3;
    }));
    app.stop().await;
    app.start().await;
    fail(&app, &admin, "127.0.0.2", 3).await;
    let refused = app
        .users_from("127.0.0.2")
        .login(login(&admin, PASSWORD))
        .await;
    let status = assert_code(refused, Code::ResourceExhausted, Some("TOO_MANY_REQUESTS"));
    let wait = retry_delay(&status);
    assert!(
        wait > Duration::from_secs(30) && wait <= Duration::from_mins(1),
        "{wait:?}"
    );
    // AcceptInvitation shares the address's budget: refused before the token is even read.
    let accept = app
        .users_from("127.0.0.2")
        .accept_invitation(pb::AcceptInvitationRequest {
            invitation_token: app.invitation_token("p@acme.example"),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await;
    assert_code(accept, Code::ResourceExhausted, Some("TOO_MANY_REQUESTS"));
    // So does SignInWithIdentityProvider: refused before the provider is even looked up.
    let addr = app.server_addr();
    let sign_in = IdentityProvidersClient::new(shared::testkit::server::channel_from(
        addr,
        "127.0.0.2".parse().unwrap(),
    ))
    .sign_in_with_identity_provider(pb::SignInWithIdentityProviderRequest {
        identity_provider: format!("{}/identityProviders/{}", admin.org, uuid::Uuid::new_v4()),
        id_token: "header.payload.signature".into(),
        nonce: String::new(),
    })
    .await;
    assert_code(sign_in, Code::ResourceExhausted, Some("TOO_MANY_REQUESTS"));
    // Another address is not affected: the user logs in, and the invitation is accepted.
    app.users_from("127.0.0.3")
        .login(login(&admin, PASSWORD))
        .await
        .unwrap();
    app.users_from("127.0.0.3")
        .accept_invitation(pb::AcceptInvitationRequest {
            invitation_token: app.invitation_token("p@acme.example"),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap();
}

async fn a_full_hashing_pool_refuses_with_retry_info(b: Backend) {
    let mut app = spawn_app(b).await;
    let admin = app.admin("Acme").await;
    // One hash at a time, none waiting, no per-address limit.
    app.tweak = Some(Box::new(|s| {
        s.login.hash_workers = 1;
        s.login.hash_queue = 0;
        s.login.address_rate_per_minute = 0;
    }));
    app.stop().await;
    app.start().await;
    // Logins sent together (of an unknown email: no account counts them): one hashes, the
    // ones arriving meanwhile are refused at once.
    let unknown = pb::LoginRequest {
        organization: admin.org.clone(),
        email: "nobody@acme.example".into(),
        password: WRONG.into(),
    };
    let mut busy = None;
    for _ in 0..20 {
        let calls = (0..8).map(|_| {
            let mut users = app.users(None);
            let req = unknown.clone();
            async move { users.login(req).await }
        });
        let results = join_all(calls).await;
        assert!(
            results
                .iter()
                .any(|r| r.as_ref().is_err_and(|s| s.code() == Code::Unauthenticated)),
            "at least one password was checked: {results:?}"
        );
        busy = results
            .into_iter()
            .find_map(|r| r.err().filter(|s| s.code() == Code::ResourceExhausted));
        if busy.is_some() {
            break;
        }
    }
    let busy = busy.expect("eight logins at once never found the one-worker pool busy");
    let status = assert_code::<()>(Err(busy), Code::ResourceExhausted, Some("SERVER_BUSY"));
    assert_eq!(retry_delay(&status), Duration::from_secs(1));
    // Once the burst is over, the pool serves again.
    app.users(None)
        .login(login(&admin, PASSWORD))
        .await
        .unwrap();
}

/// Runs `calls` concurrently and returns their results in order.
async fn join_all<F: std::future::Future + Send + 'static>(
    calls: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
