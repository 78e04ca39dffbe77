//! No secret in a log line, an answer or a status: both services run with every log line of
//! their crates (debug and up) captured while the sync's identity token is used, revoked and
//! replaced, a user is invited and logs in (once with a wrong password). Neither the ODC
//! identity tokens, the operator and service tokens, the session, the invitation secret nor
//! the password appears in the captured lines, the sync status, the infrastructure as
//! listed or the company's audit trail.
//!
//! The capture is a global log subscriber, so the test runs again in a child process of the
//! test binary (`shared::testkit::env`), where nothing else has set one.

use std::io::Write;
use std::sync::{Arc, Mutex};

use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::env::{in_child, run_in_child};

use crate::harness::*;
use crate::sync::{caught_up, invite, portal_events, setup};

crate::e2e_tests!(no_secret_reaches_a_log_line_an_answer_or_a_status);

/// Log lines written so far.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line of both services' crates at debug and up, other crates at info.
    fn install() -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("info,identity_svc=debug,portal_sync_svc=debug,shared=debug")
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn no_secret_reaches_a_log_line_an_answer_or_a_status(b: Backend) {
    if !in_child() {
        let variant = match b {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        let test =
            format!("secrets::{variant}::no_secret_reaches_a_log_line_an_answer_or_a_status");
        tokio::task::spawn_blocking(move || run_in_child(&test, &[]))
            .await
            .unwrap();
        return;
    }
    let logs = Captured::install();
    let w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    let invitation = {
        invite(&w, &s, "dev@acme.example", Some("developer")).await;
        w.invitation_token("dev@acme.example")
    };
    let wrong = w
        .id_users(None)
        .login(id::LoginRequest {
            organization: s.org.name.clone(),
            email: "admin@acme.example".into(),
            password: "Wrong-Horse-13".into(),
        })
        .await;
    assert_eq!(wrong.unwrap_err().code(), tonic::Code::Unauthenticated);

    // The sync's token revoked: the refusal is logged and shown in the status.
    w.id_service_accounts(&s.org.admin_token)
        .revoke_service_account_token(id::RevokeServiceAccountTokenRequest {
            name: s.org.sync_token_name.clone(),
        })
        .await
        .unwrap();
    let status = || async {
        w.sync(&w.portal_operator)
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: s.infra.clone(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let refused = eventually("the sync to report the refused token", || async {
        let st = status().await;
        (st.health() == portal::SyncHealth::Refused).then_some(st)
    })
    .await;
    // And replaced.
    let sa = s.org.sync_token_name.rsplit_once("/tokens/").unwrap().0;
    let fresh = w
        .id_service_accounts(&s.org.admin_token)
        .create_service_account_token(id::CreateServiceAccountTokenRequest {
            parent: sa.to_owned(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let replaced = w
        .companies(&w.portal_operator, None)
        .set_identity_token(portal::SetIdentityTokenRequest {
            name: s.infra.clone(),
            identity_token: fresh.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    caught_up(&w, &s).await;
    let listed = w
        .companies(&w.portal_operator, None)
        .list_infrastructures(portal::ListInfrastructuresRequest {
            parent: s.company.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let answers = format!(
        "{refused:?} {:?} {replaced:?} {listed:?} {:?}",
        status().await,
        portal_events(&w, &s).await
    );

    let lines = logs.text();
    // The capture works: the worker's refusal is among the lines.
    assert!(
        lines.contains("sync failed; retrying") && lines.contains("revoked"),
        "the refusal was not logged:\n{lines}"
    );
    let secrets = [
        ("the first ODC identity token", s.org.sync_token.as_str()),
        ("the replacing ODC identity token", fresh.as_str()),
        ("identity's operator token", w.identity_operator.as_str()),
        ("portal's operator token", w.portal_operator.as_str()),
        ("portal's service token", SERVICE_TOKEN),
        ("the administrator's session", s.org.admin_token.as_str()),
        ("the invitation secret", invitation.as_str()),
        ("the password", PASSWORD),
        ("the wrong password", "Wrong-Horse-13"),
    ];
    for (what, secret) in secrets {
        assert!(!lines.contains(secret), "{what} is in the log");
        assert!(
            !answers.contains(secret),
            "{what} is in an answer: {answers}"
        );
    }
}
