//! Health tells the truth: each service answers `NOT_SERVING` for what cannot work while a
//! dependency is down, within a few seconds, and `SERVING` again after it is back, without a
//! restart; `liveness` answers `SERVING` throughout.
//!
//! * Both services on a PostgreSQL cluster of the test's own, stopped and started again.
//! * portal-sync's `portal.v1.Sync` while identity is stopped (the rest of portal serves).

use std::time::{Duration, Instant};

use shared::auth::Secret;
use shared::health::{HealthSettings, LIVENESS};
use shared::proto::identity::v1 as id;
use shared::testkit::clients::{Authed, Credentials};
use shared::testkit::pg;
use shared::testkit::pg_cluster::{ClusterOptions, PgCluster};
use shared::testkit::server::TestServer;
use sqlx::{Connection as _, PgConnection};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::*;
use crate::sync::{caught_up, setup};

crate::e2e_tests!(portal_sync_answers_not_serving_while_identity_is_unreachable);

/// How long a change of a dependency may take to show in health.
const WITHIN: Duration = Duration::from_secs(10);

/// Probes as often as a test wants to wait.
fn quick_probes() -> HealthSettings {
    HealthSettings {
        probe_interval_ms: 200,
        probe_timeout_ms: 500,
    }
}

/// The status of `service` at `channel` (`None` when the call fails).
async fn status(channel: &Channel, service: &str) -> Option<ServingStatus> {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Polls until every `(service, status)` of `want` holds at `channel`, at most [`WITHIN`];
/// returns how long it took.
async fn wait_for(what: &str, channel: &Channel, want: &[(&str, ServingStatus)]) -> Duration {
    let started = Instant::now();
    loop {
        let mut seen = Vec::new();
        for (service, _) in want {
            seen.push(status(channel, service).await);
        }
        if want.iter().zip(&seen).all(|((_, w), s)| Some(*w) == *s) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WITHIN,
            "{what}: wanted {want:?}, saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `""` and every one of `services` at `status`, `liveness` SERVING.
fn all(services: &[&'static str], status: ServingStatus) -> Vec<(&'static str, ServingStatus)> {
    let mut want: Vec<_> = services
        .iter()
        .copied()
        .chain([""])
        .map(|s| (s, status))
        .collect();
    want.push((LIVENESS, ServingStatus::Serving));
    want
}

/// Both services on one cluster: stopping it turns every service and `""` NOT_SERVING on
/// both within seconds while `liveness` stays SERVING; starting it again brings them back,
/// and identity takes a write again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_answers_not_serving_while_its_database_is_down() {
    if pg::admin_url("health::each_service_answers_not_serving_while_its_database_is_down")
        .is_none()
    {
        return;
    }
    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking(|| PgCluster::start(&ClusterOptions::default()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}"));
    let mut admin = PgConnection::connect(&cluster.url("127.0.0.1", "postgres", ""))
        .await
        .unwrap();
    for database in ["identity", "portal"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    admin.close().await.unwrap();

    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut s = identity_svc::config::Settings::default();
    s.data_dir = dirs[0].path().to_path_buf();
    s.database_url = Some(cluster.url("127.0.0.1", "identity", ""));
    s.operator_token = Some(Secret::new("odc_op_e2e_health"));
    s.health = quick_probes();
    let identity = TestServer::start(None, |listener, shutdown| {
        identity_svc::serve(listener, s, identity_svc::Dependencies::default(), shutdown)
    })
    .await;
    let mut s = portal_sync_svc::config::Settings::default();
    s.data_dir = dirs[1].path().to_path_buf();
    s.database_url = Some(cluster.url("127.0.0.1", "portal", ""));
    s.operator_token = Some(Secret::new("psync_op_e2e_health"));
    s.sync.identity_url = format!("http://{}", identity.addr());
    s.health = quick_probes();
    let portal = TestServer::start(None, |listener, shutdown| {
        portal_sync_svc::serve(listener, s, shutdown)
    })
    .await;
    let services = [
        (
            "identity",
            identity.channel(),
            &identity_svc::server::SERVICE_NAMES[..],
        ),
        (
            "portal",
            portal.channel(),
            &portal_sync_svc::server::SERVICE_NAMES[..],
        ),
    ];
    for (name, channel, names) in &services {
        wait_for(name, channel, &all(names, ServingStatus::Serving)).await;
    }

    let mut cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    let stopped = Instant::now();
    for (name, channel, names) in &services {
        wait_for(name, channel, &all(names, ServingStatus::NotServing)).await;
        eprintln!(
            "{name}: NOT_SERVING {:?} after the database stopped",
            stopped.elapsed()
        );
    }

    let cluster = tokio::task::spawn_blocking(move || {
        cluster
            .restart()
            .unwrap_or_else(|e| panic!("cannot start the cluster again: {e}"));
        cluster
    })
    .await
    .unwrap();
    let back = Instant::now();
    for (name, channel, names) in &services {
        wait_for(name, channel, &all(names, ServingStatus::Serving)).await;
        eprintln!(
            "{name}: SERVING {:?} after the database was back",
            back.elapsed()
        );
    }
    let mut orgs: id::organizations_client::OrganizationsClient<Authed> =
        id::organizations_client::OrganizationsClient::with_interceptor(
            identity.channel(),
            Credentials::new(Some("odc_op_e2e_health"), None),
        );
    orgs.create_organization(id::CreateOrganizationRequest {
        organization: Some(id::Organization {
            display_name: "After the outage".into(),
            ..Default::default()
        }),
        first_administrator_email: "ada@health.example".into(),
    })
    .await
    .unwrap();
    identity.stop().await;
    portal.stop().await;
    drop(cluster);
    eprintln!("database outage test done in {:?}", started.elapsed());
}

/// With identity stopped, the sync finds it unreachable: `portal.v1.Sync` answers NOT_SERVING
/// within seconds while `""`, the other portal services and `liveness` keep SERVING; once
/// identity is back and the sync reaches it, `portal.v1.Sync` answers SERVING again.
async fn portal_sync_answers_not_serving_while_identity_is_unreachable(b: Backend) {
    use ServingStatus::{NotServing, Serving};
    const SYNC: &str = "portal.v1.Sync";
    const COMPANIES: &str = "portal.v1.Companies";
    let mut w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    let portal = w.portal_channel();
    let up = [("", Serving), (COMPANIES, Serving), (LIVENESS, Serving)];
    wait_for(
        "before",
        &portal,
        &[up.as_slice(), &[(SYNC, Serving)]].concat(),
    )
    .await;

    w.stop_identity().await;
    let took = wait_for(
        "identity stopped",
        &portal,
        &[up.as_slice(), &[(SYNC, NotServing)]].concat(),
    )
    .await;
    eprintln!("portal.v1.Sync NOT_SERVING {took:?} after identity stopped");

    w.start_identity().await;
    let took = wait_for(
        "identity back",
        &portal,
        &[up.as_slice(), &[(SYNC, Serving)]].concat(),
    )
    .await;
    eprintln!("portal.v1.Sync SERVING {took:?} after identity was back");
    caught_up(&w, &s).await;
}
