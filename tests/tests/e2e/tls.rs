//! TLS between the services: portal-sync follows identity over mTLS, refuses a server
//! certificate of another CA, and identity's certificate is replaced under an open change
//! feed without ending it.

use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::certs::{PemDir, TestCa, client_config};
use shared::testkit::server::{Reach, channel_reached};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::*;
use crate::sync::{caught_up, invite, records, setup};

crate::e2e_tests!(
    portal_syncs_from_identity_over_mtls,
    an_identity_certificate_of_another_ca_is_refused,
    a_certificate_reload_keeps_an_open_change_feed,
);

/// identity serving mTLS with a certificate of `server_ca` (files checked every 100 ms) to
/// clients with a certificate of `clients`, the tests trusting `server_ca`, portal-sync
/// trusting `portal_trusts` and presenting its own client certificate.
fn identity_tls(
    dir: &PemDir,
    server_ca: &TestCa,
    clients: &TestCa,
    portal_trusts: &TestCa,
) -> IdentityTls {
    let server = dir.server_settings(server_ca, Some(clients), 100);
    let tests = clients.client("e2e tests");
    IdentityTls {
        server,
        portal_server: None,
        reach: Reach::Tls(client_config(server_ca, Some(&tests))),
        portal_ca_file: dir.write("identity-ca.pem", &portal_trusts.pem()),
        portal_identity: Some(dir.write_leaf("portal", &clients.client("portal-sync"))),
    }
}

/// The sync status of the setup's infrastructure.
async fn status(w: &World, infra: &str) -> portal::SyncStatus {
    w.sync(&w.portal_operator)
        .get_sync_status(portal::GetSyncStatusRequest {
            infrastructure: infra.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn portal_syncs_from_identity_over_mtls(b: Backend) {
    let dir = PemDir::new();
    let ca = TestCa::new("identity CA");
    let clients = TestCa::new("client CA");
    let w = World::start_with(b, Some(identity_tls(&dir, &ca, &clients, &ca))).await;
    // A client without a certificate is refused by identity.
    let bare = Reach::Tls(client_config(&ca, None));
    let refused = HealthClient::new(channel_reached(w.identity_addr(), &bare))
        .check(HealthCheckRequest::default())
        .await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );

    let s = setup(&w).await;
    invite(&w, &s, "dev@acme.example", Some("developer")).await;
    caught_up(&w, &s).await;
    assert_eq!(
        records(&w, &s).await.get("dev@acme.example"),
        Some(&portal::InfrastructurePermission::InfrastructureMember)
    );
    assert!(status(&w, &s.infra).await.last_error.is_empty());
}

async fn an_identity_certificate_of_another_ca_is_refused(b: Backend) {
    let dir = PemDir::new();
    let ca = TestCa::new("identity CA");
    let impostor_trust = TestCa::new("another CA");
    let clients = TestCa::new("client CA");
    let tls = identity_tls(&dir, &ca, &clients, &impostor_trust);
    let w = World::start_with(b, Some(tls)).await;
    let s = setup(&w).await;
    let st = eventually("the sync to report the refused certificate", || async {
        let st = status(&w, &s.infra).await;
        (!st.last_error.is_empty()).then_some(st)
    })
    .await;
    assert!(
        st.last_error
            .contains("invalid peer certificate: UnknownIssuer"),
        "{st:?}"
    );
    assert_eq!(st.cursor, 0, "{st:?}");
    assert!(records(&w, &s).await.is_empty(), "nothing is synced");
}

async fn a_certificate_reload_keeps_an_open_change_feed(b: Backend) {
    let dir = PemDir::new();
    let old_ca = TestCa::new("old identity CA");
    let new_ca = TestCa::new("new identity CA");
    let clients = TestCa::new("client CA");
    let mut tls = identity_tls(&dir, &old_ca, &clients, &old_ca);
    // The tests' own clients trust both CAs (they connect anew for every call); portal-sync
    // trusts only the old one, so it keeps following only if its open feed survives.
    tls.reach = Reach::Tls(
        client_config(&old_ca, Some(&clients.client("e2e tests")))
            .ca_certificate(tonic::transport::Certificate::from_pem(new_ca.pem())),
    );
    let w = World::start_with(b, Some(tls)).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    let after = status(&w, &s.infra).await.cursor;
    let mut feed = w
        .id_audit(&s.org.admin_token)
        .watch_changes(id::WatchChangesRequest {
            parent: s.org.name.clone(),
            after_sequence: after,
        })
        .await
        .unwrap()
        .into_inner();

    // A client trusting only the new CA is refused until the certificate is replaced; then
    // (the file check runs every 100 ms) new connections get the new certificate.
    let new_only = Reach::Tls(client_config(&new_ca, Some(&clients.client("new"))));
    let health = || async {
        HealthClient::new(channel_reached(w.identity_addr(), &new_only))
            .check(HealthCheckRequest::default())
            .await
            .ok()
    };
    assert!(health().await.is_none(), "the new CA is not in use yet");
    dir.write_leaf("server", &new_ca.server());
    eventually("new connections to get the new certificate", health).await;

    // A change made now still arrives on the stream opened before the reload.
    let email = "after-reload@acme.example";
    invite(&w, &s, email, Some("developer")).await;
    let event = tokio::time::timeout(std::time::Duration::from_secs(30), feed.message())
        .await
        .expect("the open feed delivers the change")
        .expect("the open feed is not broken by the reload")
        .expect("the open feed did not end");
    assert_eq!(event.sequence, after + 1, "{event:?}");
    assert!(format!("{event:?}").contains(email), "{event:?}");
    // And portal-sync's open feed (opened trusting the old CA) still follows.
    caught_up(&w, &s).await;
    assert!(records(&w, &s).await.contains_key(email));
}
