//! The database stopped under both services (a PostgreSQL cluster of the test's own).

use shared::auth::Secret;
use shared::proto::portal::v1 as portal;
use shared::testkit::pg_cluster::{ClusterOptions, PgCluster};
use shared::testkit::server::TestServer;
use sqlx::{Connection as _, PgConnection};
use tonic_types::StatusExt as _;

use super::*;

const PORTAL_OPERATOR: &str = "psync_op_e2e_faults";

/// UNAVAILABLE with a `RetryInfo` and an `ErrorInfo`: what a client may retry, and when.
fn assert_retryable(what: &str, status: &tonic::Status) {
    assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
    let details = status.get_error_details();
    assert!(details.retry_info().is_some(), "{what} has no RetryInfo");
    assert!(details.error_info().is_some(), "{what} has no ErrorInfo");
}

fn companies(channel: Channel) -> portal::companies_client::CompaniesClient<Authed> {
    portal::companies_client::CompaniesClient::with_interceptor(
        channel,
        Credentials::bearer(Some(PORTAL_OPERATOR)),
    )
}

fn company(display_name: &str) -> portal::CreateCompanyRequest {
    portal::CreateCompanyRequest {
        company: Some(portal::Company {
            display_name: display_name.into(),
            ..Default::default()
        }),
        first_admin_email: "admin@outage.example".into(),
        first_admin_display_name: String::new(),
    }
}

async fn start_cluster() -> PgCluster {
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
    cluster
}

/// Both services on one cluster, which stops for a while: identity keeps answering reads from
/// memory, every write of either service is UNAVAILABLE with a RetryInfo (never INTERNAL), and
/// once the cluster is back both take writes again, without a restart; what was acknowledged
/// before is still there and what was refused is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_database_outage_writes_are_retryable_and_reads_from_memory_answer() {
    if pg::admin_url("faults::during_a_database_outage").is_none() {
        return;
    }
    let mut cluster = start_cluster().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut s = identity_svc::config::Settings::default();
    s.data_dir = dirs[0].path().to_path_buf();
    s.database_url = Some(cluster.url("127.0.0.1", "identity", ""));
    s.operator_token = Some(Secret::new(OPERATOR));
    let identity = TestServer::start(None, |listener, shutdown| {
        identity_svc::serve(listener, s, identity_svc::Dependencies::default(), shutdown)
    })
    .await;
    let mut s = portal_sync_svc::config::Settings::default();
    s.data_dir = dirs[1].path().to_path_buf();
    s.database_url = Some(cluster.url("127.0.0.1", "portal", ""));
    s.operator_token = Some(Secret::new(PORTAL_OPERATOR));
    s.sync.identity_url = format!("http://{}", identity.addr());
    let portal = TestServer::start(None, |listener, shutdown| {
        portal_sync_svc::serve(listener, s, shutdown)
    })
    .await;

    let (org, _) = organization(&identity.channel(), &dirs[0].path().join("mailbox")).await;
    let before = companies(portal.channel())
        .create_company(company("Before"))
        .await
        .unwrap()
        .into_inner()
        .name;

    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    // Reads identity answers from memory (the operator's token needs no database).
    let mut id_orgs = orgs(identity.channel(), OPERATOR);
    let got = id_orgs
        .get_organization(id::GetOrganizationRequest { name: org.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.display_name, "Faults");
    let asked = std::time::Instant::now();
    let refused = id_orgs
        .create_organization(id::CreateOrganizationRequest {
            organization: Some(id::Organization {
                display_name: "During".into(),
                ..Default::default()
            }),
            first_administrator_email: "bob@outage.example".into(),
        })
        .await
        .unwrap_err();
    assert_retryable("identity's write during the outage", &refused);
    eprintln!("identity refused a write after {:?}", asked.elapsed());
    let asked = std::time::Instant::now();
    let refused = companies(portal.channel())
        .create_company(company("During"))
        .await
        .unwrap_err();
    assert_retryable("portal's write during the outage", &refused);
    eprintln!("portal refused a write after {:?}", asked.elapsed());

    let cluster = tokio::task::spawn_blocking(move || {
        cluster
            .restart()
            .unwrap_or_else(|e| panic!("cannot start the cluster again: {e}"));
        cluster
    })
    .await
    .unwrap();
    let after = eventually("identity to take a write again", || {
        let mut id_orgs = orgs(identity.channel(), OPERATOR);
        async move {
            let request = id::CreateOrganizationRequest {
                organization: Some(id::Organization {
                    display_name: "After".into(),
                    ..Default::default()
                }),
                first_administrator_email: "carol@outage.example".into(),
            };
            match id_orgs.create_organization(request).await {
                Ok(o) => Some(o.into_inner().name),
                Err(status) => {
                    assert_retryable("identity's write while the database comes back", &status);
                    None
                }
            }
        }
    })
    .await;
    eventually("portal to take a write again", || {
        let mut client = companies(portal.channel());
        async move {
            match client.create_company(company("After")).await {
                Ok(_) => Some(()),
                Err(status) => {
                    assert_retryable("portal's write while the database comes back", &status);
                    None
                }
            }
        }
    })
    .await;
    let listed: Vec<String> = id_orgs
        .list_organizations(id::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .organizations
        .into_iter()
        .map(|o| o.display_name)
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|n| n != "During"), "{listed:?}");
    assert!(!after.is_empty());
    companies(portal.channel())
        .get_company(portal::GetCompanyRequest { name: before })
        .await
        .unwrap();
    identity.stop().await;
    portal.stop().await;
    drop(cluster);
}
