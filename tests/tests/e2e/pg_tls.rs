//! Both services on a PostgreSQL cluster of the test's own that accepts only TLS connections
//! (`hostssl` lines only), its certificate signed by a CA the test made: with
//! `sslmode=verify-full` and that CA as `sslrootcert` each serves a write and a read; trusting
//! another CA, each refuses to start with an error that says why and hides the password.

use std::path::Path;
use std::time::{Duration, Instant};

use shared::auth::Secret;
use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::certs::TestCa;
use shared::testkit::clients::{Authed, Credentials};
use shared::testkit::pg;
use shared::testkit::pg_cluster::{ClusterOptions, PgCluster};
use shared::testkit::server::TestServer;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

/// The password in the services' URLs: trust authentication ignores it, the errors must not
/// show it.
const DB_PASSWORD: &str = "db-pass-never-shown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_verify_the_postgresql_certificate() {
    if pg::admin_url("pg_tls::both_services_verify_the_postgresql_certificate").is_none() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("e2e database CA");
    let ca_pem = ca.write_cert(dir.path(), "ca.pem");
    let other_pem = TestCa::new("another CA").write_cert(dir.path(), "other-ca.pem");
    let tls = ca.server_cert(&["localhost", "127.0.0.1"], dir.path(), "server");
    let cluster =
        tokio::task::spawn_blocking(move || PgCluster::start(&ClusterOptions { tls: Some(tls) }))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}"));
    eprintln!("TLS cluster up in {:?}", started.elapsed());

    let url = |database: &str, ca: &Path| {
        let params = format!("sslmode=verify-full&sslrootcert={}", ca.display());
        cluster.url("localhost", database, &params).replacen(
            "postgres@",
            &format!("postgres:{DB_PASSWORD}@"),
            1,
        )
    };
    let mut admin = PgConnection::connect(&url("postgres", &ca_pem))
        .await
        .unwrap();
    for database in ["identity", "portal"] {
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    // Without TLS the server refuses, so whatever the services do below went over TLS.
    let plain = cluster.url("127.0.0.1", "postgres", "sslmode=disable");
    let refused = PgConnection::connect(&plain).await.unwrap_err().to_string();
    assert!(refused.contains("pg_hba.conf"), "{refused}");

    let (identity, _identity_data) = identity_writes_and_reads(&url("identity", &ca_pem)).await;
    portal_writes_and_reads(&url("portal", &ca_pem), identity.addr()).await;
    let tls_sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.datname IN ('identity', 'portal')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(tls_sessions >= 2, "{tls_sessions} TLS sessions");
    identity.stop().await;

    for (service, error) in [
        (
            "identity",
            identity_start_error(&url("identity", &other_pem)).await,
        ),
        (
            "portal",
            portal_start_error(&url("portal", &other_pem)).await,
        ),
    ] {
        eprintln!("{service} refused to start: {error}");
        assert!(
            error.contains("cannot open the store"),
            "{service}: {error}"
        );
        assert!(
            error.contains(&format!("postgres:***@localhost:{}", cluster.port())),
            "{service}: {error}"
        );
        assert!(
            error.contains("certificate") || error.contains("UnknownIssuer"),
            "{service}: {error}"
        );
        assert!(!error.contains(DB_PASSWORD), "{service}: {error}");
    }
    admin.close().await.unwrap();
    drop(cluster);
    eprintln!("TLS cluster test done in {:?}", started.elapsed());
}

fn identity_settings(database_url: &str, data_dir: &Path) -> identity_svc::config::Settings {
    let mut s = identity_svc::config::Settings::default();
    s.data_dir = data_dir.to_path_buf();
    s.database_url = Some(database_url.to_owned());
    s.operator_token = Some(Secret::new("odc_op_e2e_tls"));
    s.follow_interval_ms = 0;
    s
}

fn portal_settings(
    database_url: &str,
    data_dir: &Path,
    identity: std::net::SocketAddr,
) -> portal_sync_svc::config::Settings {
    let mut s = portal_sync_svc::config::Settings::default();
    s.data_dir = data_dir.to_path_buf();
    s.database_url = Some(database_url.to_owned());
    s.operator_token = Some(Secret::new("psync_op_e2e_tls"));
    s.sync.identity_url = format!("http://{identity}");
    s
}

/// Starts identity on `database_url`, creates an organization and reads it back.
/// Returns the running server and its data directory.
async fn identity_writes_and_reads(database_url: &str) -> (TestServer, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let settings = identity_settings(database_url, data.path());
    let server = TestServer::start(None, |listener, shutdown| {
        identity_svc::serve(
            listener,
            settings,
            identity_svc::Dependencies::default(),
            shutdown,
        )
    })
    .await;
    let mut orgs: id::organizations_client::OrganizationsClient<Authed> =
        id::organizations_client::OrganizationsClient::with_interceptor(
            server.channel(),
            Credentials::new(Some("odc_op_e2e_tls"), None),
        );
    let created = orgs
        .create_organization(id::CreateOrganizationRequest {
            organization: Some(id::Organization {
                display_name: "Over TLS".into(),
                ..Default::default()
            }),
            first_administrator_email: "ada@tls.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let read = orgs
        .get_organization(id::GetOrganizationRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.display_name, "Over TLS");
    (server, data)
}

/// Starts portal-sync on `database_url`, creates a company and reads it back.
async fn portal_writes_and_reads(database_url: &str, identity: std::net::SocketAddr) {
    let data = tempfile::tempdir().unwrap();
    let settings = portal_settings(database_url, data.path(), identity);
    let server = TestServer::start(None, |listener, shutdown| {
        portal_sync_svc::serve(listener, settings, shutdown)
    })
    .await;
    let mut companies = portal::companies_client::CompaniesClient::with_interceptor(
        server.channel(),
        Credentials::new(Some("psync_op_e2e_tls"), None),
    );
    let created = companies
        .create_company(portal::CreateCompanyRequest {
            company: Some(portal::Company {
                display_name: "Acme over TLS".into(),
                ..Default::default()
            }),
            first_admin_email: "carla@tls.example".into(),
            first_admin_display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let read = companies
        .get_company(portal::GetCompanyRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.display_name, "Acme over TLS");
    server.stop().await;
}

/// The error identity stops with when started on `database_url`.
async fn identity_start_error(database_url: &str) -> String {
    let data = tempfile::tempdir().unwrap();
    let settings = identity_settings(database_url, data.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = identity_svc::serve(
        listener,
        settings,
        identity_svc::Dependencies::default(),
        std::future::pending(),
    );
    let result = tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("identity neither started nor failed");
    format!(
        "{:#}",
        result.expect_err("identity started on an unverified server")
    )
}

/// The error portal-sync stops with when started on `database_url`.
async fn portal_start_error(database_url: &str) -> String {
    let data = tempfile::tempdir().unwrap();
    let settings = portal_settings(database_url, data.path(), "127.0.0.1:9".parse().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = portal_sync_svc::serve(listener, settings, std::future::pending());
    let result = tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("portal-sync neither started nor failed");
    format!(
        "{:#}",
        result.expect_err("portal-sync started on an unverified server")
    )
}
