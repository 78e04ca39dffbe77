//! Starts identity-svc and portal-sync-svc wired to each other, with fresh databases, and
//! gives typed clients; helpers set up an identity organization and an ODC infrastructure.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::TcpListener;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The password every test user gets.
pub const PASSWORD: &str = "Correct-Horse-42";
/// The service token portal-sync accepts from its callers.
pub const SERVICE_TOKEN: &str = "odc_svc_e2e_service_token";

/// Which store both services run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `sqlite::<name>` and `postgres::<name>` for each `async fn name(Backend)`.
#[macro_export]
macro_rules! e2e_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::harness::Backend::Sqlite).await; }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::harness::Backend::Postgres).await; }
            )*
        }
    };
}

/// Adds `authorization` and, when set, `x-acting-for`.
#[derive(Clone, Debug)]
pub struct Auth {
    token: Option<String>,
    acting_for: Option<String>,
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        if let Some(p) = &self.acting_for {
            req.metadata_mut()
                .insert("x-acting-for", p.parse().unwrap());
        }
        Ok(req)
    }
}

/// A channel with credentials.
pub type Authed = InterceptedService<Channel, Auth>;

struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&url).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

fn pg_admin_url() -> String {
    std::env::var("E2E_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, params) = url
        .split_once('?')
        .map_or((url, None), |(b, p)| (b, Some(p)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = base[authority..]
        .find('/')
        .map_or(base, |s| &base[..authority + s]);
    match params {
        Some(p) => format!("{base}/{db}?{p}"),
        None => format!("{base}/{db}"),
    }
}

async fn fresh_database(prefix: &str) -> (String, PgDatabase) {
    let admin_url = pg_admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut c = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required for this test: {e}"));
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    (
        with_database(&admin_url, &name),
        PgDatabase { admin_url, name },
    )
}

/// One running server: how to stop it.
struct Running {
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Both services.
pub struct World {
    pub identity_operator: String,
    pub portal_operator: String,
    identity_dir: tempfile::TempDir,
    portal_dir: tempfile::TempDir,
    identity_db: Option<String>,
    portal_db: Option<String>,
    identity: Option<Running>,
    portal: Option<Running>,
    identity_addr: SocketAddr,
    portal_addr: Option<SocketAddr>,
    _pg: Vec<PgDatabase>,
}

impl Drop for World {
    fn drop(&mut self) {
        for r in [self.identity.take(), self.portal.take()]
            .into_iter()
            .flatten()
        {
            let _ = r.shutdown.send(());
            r.task.abort();
        }
    }
}

/// Binds `addr` (port 0 for any), retrying briefly while a just-stopped server lets it go.
async fn bind(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("cannot bind {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

impl World {
    /// Starts identity, then portal-sync pointed at it.
    pub async fn start(backend: Backend) -> World {
        let mut pg = Vec::new();
        let (identity_db, portal_db) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (a, ga) = fresh_database("e2e_identity").await;
                let (b, gb) = fresh_database("e2e_portal").await;
                pg.push(ga);
                pg.push(gb);
                (Some(a), Some(b))
            }
        };
        let mut w = World {
            identity_operator: format!("odc_op_{}", uuid::Uuid::new_v4().simple()),
            portal_operator: format!("odc_op_{}", uuid::Uuid::new_v4().simple()),
            identity_dir: tempfile::tempdir().unwrap(),
            portal_dir: tempfile::tempdir().unwrap(),
            identity_db,
            portal_db,
            identity: None,
            portal: None,
            identity_addr: "127.0.0.1:0".parse().unwrap(),
            portal_addr: None,
            _pg: pg,
        };
        w.start_identity().await;
        w.start_portal().await;
        w
    }

    /// (Re)starts identity on its address (a fresh port the first time).
    pub async fn start_identity(&mut self) {
        let listener = bind(self.identity_addr).await;
        self.identity_addr = listener.local_addr().unwrap();
        let mut s = identity_svc::config::Settings::default();
        s.data_dir = self.identity_dir.path().to_path_buf();
        s.database_url = self.identity_db.clone();
        s.operator_token = Some(shared::auth::Secret::new(self.identity_operator.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            identity_svc::serve(
                listener,
                s,
                identity_svc::Dependencies::default(),
                async move {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
        });
        self.identity = Some(Running {
            addr: self.identity_addr,
            shutdown: tx,
            task,
        });
        wait_serving(self.identity_addr).await;
    }

    /// Stops identity (graceful) and waits for it to exit.
    pub async fn stop_identity(&mut self) {
        if let Some(r) = self.identity.take() {
            let _ = r.shutdown.send(());
            let _ = r.task.await;
        }
    }

    /// (Re)starts portal-sync.
    pub async fn start_portal(&mut self) {
        let listener = bind(
            self.portal_addr
                .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
        )
        .await;
        let addr = listener.local_addr().unwrap();
        self.portal_addr = Some(addr);
        let mut s = portal_sync_svc::config::Settings::default();
        s.data_dir = self.portal_dir.path().to_path_buf();
        s.database_url = self.portal_db.clone();
        s.operator_token = Some(shared::auth::Secret::new(self.portal_operator.clone()));
        s.service_tokens = vec![shared::auth::Secret::new(SERVICE_TOKEN.to_owned())];
        s.sync.identity_url = format!("http://{}", self.identity_addr);
        s.sync.discovery_interval_ms = 100;
        s.sync.backoff_min_ms = 20;
        s.sync.backoff_max_ms = 300;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            portal_sync_svc::serve(listener, s, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        self.portal = Some(Running {
            addr,
            shutdown: tx,
            task,
        });
        wait_serving(addr).await;
    }

    /// Stops portal-sync (graceful) and waits for it to exit.
    pub async fn stop_portal(&mut self) {
        if let Some(r) = self.portal.take() {
            let _ = r.shutdown.send(());
            let _ = r.task.await;
        }
    }

    fn channel(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy()
    }

    fn auth(token: Option<&str>, acting_for: Option<&str>) -> Auth {
        Auth {
            token: token.map(str::to_owned),
            acting_for: acting_for.map(str::to_owned),
        }
    }

    // ---- identity clients
    pub fn id_orgs(&self, token: &str) -> id::organizations_client::OrganizationsClient<Authed> {
        id::organizations_client::OrganizationsClient::with_interceptor(
            Self::channel(self.identity_addr),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_users(&self, token: Option<&str>) -> id::users_client::UsersClient<Authed> {
        id::users_client::UsersClient::with_interceptor(
            Self::channel(self.identity_addr),
            Self::auth(token, None),
        )
    }
    pub fn id_roles(&self, token: &str) -> id::roles_client::RolesClient<Authed> {
        id::roles_client::RolesClient::with_interceptor(
            Self::channel(self.identity_addr),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_access(&self, token: &str) -> id::access_client::AccessClient<Authed> {
        id::access_client::AccessClient::with_interceptor(
            Self::channel(self.identity_addr),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_apps(&self, token: &str) -> id::apps_client::AppsClient<Authed> {
        id::apps_client::AppsClient::with_interceptor(
            Self::channel(self.identity_addr),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_service_accounts(
        &self,
        token: &str,
    ) -> id::service_accounts_client::ServiceAccountsClient<Authed> {
        id::service_accounts_client::ServiceAccountsClient::with_interceptor(
            Self::channel(self.identity_addr),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_audit(&self, token: &str) -> id::audit_client::AuditClient<Authed> {
        id::audit_client::AuditClient::with_interceptor(
            Self::channel(self.identity_addr),
            Self::auth(Some(token), None),
        )
    }

    // ---- portal clients (token + the person acted for)
    fn portal_channel(&self) -> Channel {
        Self::channel(self.portal_addr.unwrap())
    }
    pub fn companies(
        &self,
        token: &str,
        who: Option<&str>,
    ) -> portal::companies_client::CompaniesClient<Authed> {
        portal::companies_client::CompaniesClient::with_interceptor(
            self.portal_channel(),
            Self::auth(Some(token), who),
        )
    }
    pub fn members(
        &self,
        who: Option<&str>,
    ) -> portal::team_members_client::TeamMembersClient<Authed> {
        portal::team_members_client::TeamMembersClient::with_interceptor(
            self.portal_channel(),
            Self::auth(Some(SERVICE_TOKEN), who),
        )
    }
    pub fn members_with(
        &self,
        token: Option<&str>,
        who: Option<&str>,
    ) -> portal::team_members_client::TeamMembersClient<Authed> {
        portal::team_members_client::TeamMembersClient::with_interceptor(
            self.portal_channel(),
            Self::auth(token, who),
        )
    }
    pub fn community(&self) -> portal::community_accounts_client::CommunityAccountsClient<Authed> {
        portal::community_accounts_client::CommunityAccountsClient::with_interceptor(
            self.portal_channel(),
            Self::auth(Some(SERVICE_TOKEN), None),
        )
    }
    pub fn support(&self, who: &str) -> portal::support_client::SupportClient<Authed> {
        portal::support_client::SupportClient::with_interceptor(
            self.portal_channel(),
            Self::auth(Some(SERVICE_TOKEN), Some(who)),
        )
    }
    pub fn capabilities(&self) -> portal::capabilities_client::CapabilitiesClient<Authed> {
        portal::capabilities_client::CapabilitiesClient::with_interceptor(
            self.portal_channel(),
            Self::auth(Some(SERVICE_TOKEN), None),
        )
    }
    pub fn sync(&self, token: &str) -> portal::sync_client::SyncClient<Authed> {
        portal::sync_client::SyncClient::with_interceptor(
            self.portal_channel(),
            Self::auth(Some(token), None),
        )
    }

    /// The newest invitation token sent to `email` by identity.
    pub fn invitation_token(&self, email: &str) -> String {
        let dir = self.identity_dir.path().join("mailbox");
        let mut newest: Option<(String, String)> = None;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if !text
                .lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("To: {email}")))
            {
                continue;
            }
            let token = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("invitation_token: "))
                .unwrap()
                .to_owned();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if newest.as_ref().is_none_or(|(n, _)| name > *n) {
                newest = Some((name, token));
            }
        }
        newest
            .unwrap_or_else(|| panic!("no invitation for {email}"))
            .1
    }
}

async fn wait_serving(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = tonic_health_client(addr);
        let ok = c
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok_and(|r| r.into_inner().status == 1);
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server at {addr} did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn tonic_health_client(addr: SocketAddr) -> tonic_health::pb::health_client::HealthClient<Channel> {
    tonic_health::pb::health_client::HealthClient::new(World::channel(addr))
}

/// An identity organization with a signed-in administrator and a read-only service account
/// for portal-sync (a custom role holding `org.view_audit_trail`).
pub struct Org {
    pub name: String,
    pub admin_token: String,
    pub admin_user: String,
    pub sync_token: String,
    /// Resource name of `sync_token` (empty where the test does not need it).
    pub sync_token_name: String,
}

/// Waits until `f` returns `Some`, with a deadline (no fixed sleeps).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
