//! Starts identity-svc and portal-sync-svc wired to each other, with fresh databases, and
//! gives typed clients; helpers set up an identity organization and an ODC infrastructure.
//! Starting, stopping and the PostgreSQL switch are the shared kit's (`shared::testkit`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::clients::{Credentials, invitation_token};
use shared::testkit::pg::{self, TestDatabase};
use shared::testkit::server::{self, Reach, TestServer};
use shared::tls::TlsSettings;
use shared::traces::TelemetrySettings;
use tonic::transport::Channel;

/// Which store both services run on.
pub use shared::testkit::Backend;
/// A channel with credentials.
pub use shared::testkit::clients::Authed;

/// The password every test user gets.
pub const PASSWORD: &str = "Correct-Horse-42";
/// The service token portal-sync accepts from its callers.
pub const SERVICE_TOKEN: &str = "odc_svc_e2e_service_token";

/// Generates `sqlite::<name>` and `postgres::<name>` for each `async fn name(Backend)`.
/// The PostgreSQL variants honour the switch of `shared::testkit::pg` (`TEST_PG_URL=off`).
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
                async fn $name() {
                    let backend = $crate::harness::Backend::Postgres;
                    let test = concat!(module_path!(), "::", stringify!($name));
                    if shared::testkit::should_run(backend, test) {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}

/// A fresh database on the tests' PostgreSQL server (the e2e_tests! macro has already
/// skipped the test when the switch is off).
async fn fresh_database(prefix: &str) -> TestDatabase {
    let admin_url = pg::admin_url(prefix)
        .expect("the e2e_tests! macro skips PostgreSQL tests when TEST_PG_URL=off");
    TestDatabase::create(&admin_url, prefix).await
}

/// A change to identity's settings, applied at every start.
type IdentityTweak = Box<dyn Fn(&mut identity_svc::config::Settings) + Send + Sync>;

/// Traces exported to `otlp_endpoint` in batches every 50 ms.
fn traced(otlp_endpoint: String) -> TelemetrySettings {
    TelemetrySettings {
        otlp_endpoint: Some(otlp_endpoint),
        export_delay_ms: 50,
        ..TelemetrySettings::default()
    }
}

/// TLS on identity (and on portal-sync when `portal_server` is set): the servers' settings,
/// how the tests' clients reach them, and what portal-sync trusts and presents to identity.
#[derive(Debug, Clone)]
pub struct IdentityTls {
    /// identity's `tls` settings.
    pub server: TlsSettings,
    /// portal-sync's `tls` settings, if it serves TLS too (reached as identity is).
    pub portal_server: Option<TlsSettings>,
    /// How the tests' own clients reach identity (and portal-sync when it serves TLS).
    pub reach: Reach,
    /// portal-sync's `sync.identity_ca_file`.
    pub portal_ca_file: PathBuf,
    /// portal-sync's `sync.identity_cert_file` and `identity_key_file`.
    pub portal_identity: Option<(PathBuf, PathBuf)>,
}

/// Both services. The servers come first: fields drop in order, so they stop before their
/// data directories and databases go away.
pub struct World {
    identity: Option<TestServer>,
    portal: Option<TestServer>,
    pub identity_operator: String,
    pub portal_operator: String,
    identity_dir: tempfile::TempDir,
    portal_dir: tempfile::TempDir,
    identity_db: Option<String>,
    portal_db: Option<String>,
    identity_addr: SocketAddr,
    portal_addr: Option<SocketAddr>,
    identity_tls: Option<IdentityTls>,
    /// identity's clock when the test moves it (`start_with_manual_clock`); the system clock
    /// otherwise.
    identity_clock: Option<identity_svc::core::ManualClock>,
    /// Both services' `[telemetry]` (traces off unless [`World::start_traced`]).
    telemetry: TelemetrySettings,
    /// Applied to identity's settings at every start ([`World::start_identity_traced`]).
    identity_tweak: Option<IdentityTweak>,
    _pg: Vec<TestDatabase>,
}

impl World {
    /// Starts identity, then portal-sync pointed at it.
    pub async fn start(backend: Backend) -> World {
        Self::start_with(backend, None).await
    }

    /// Starts identity on a manual clock that only [`World::identity_clock`] moves, then
    /// portal-sync pointed at it.
    pub async fn start_with_manual_clock(backend: Backend) -> World {
        Self::start_full(
            backend,
            None,
            Some(identity_svc::core::ManualClock::default()),
        )
        .await
    }

    /// Starts identity (serving TLS per `identity_tls`), then portal-sync pointed at it.
    pub async fn start_with(backend: Backend, identity_tls: Option<IdentityTls>) -> World {
        Self::start_full(backend, identity_tls, None).await
    }

    async fn start_full(
        backend: Backend,
        identity_tls: Option<IdentityTls>,
        identity_clock: Option<identity_svc::core::ManualClock>,
    ) -> World {
        let mut w = Self::prepare(backend, identity_tls, identity_clock).await;
        w.start_identity().await;
        w.start_portal().await;
        w
    }

    /// Starts both services exporting their traces to `otlp_endpoint` (in batches every 50 ms).
    pub async fn start_traced(backend: Backend, otlp_endpoint: String) -> World {
        Self::start_with_telemetry(backend, traced(otlp_endpoint)).await
    }

    /// Starts both services with `telemetry` as their `[telemetry]` settings.
    pub async fn start_with_telemetry(backend: Backend, telemetry: TelemetrySettings) -> World {
        let mut w = Self::prepare(backend, None, None).await;
        w.telemetry = telemetry;
        w.start_identity().await;
        w.start_portal().await;
        w
    }

    /// Starts identity alone, exporting its traces as [`World::start_traced`] does, with its
    /// settings changed by `tweak` (at every start).
    pub async fn start_identity_traced(
        backend: Backend,
        otlp_endpoint: String,
        tweak: impl Fn(&mut identity_svc::config::Settings) + Send + Sync + 'static,
    ) -> World {
        let mut w = Self::prepare(backend, None, None).await;
        w.telemetry = traced(otlp_endpoint);
        w.identity_tweak = Some(Box::new(tweak));
        w.start_identity().await;
        w
    }

    /// The databases, directories and tokens of both services, neither started.
    async fn prepare(
        backend: Backend,
        identity_tls: Option<IdentityTls>,
        identity_clock: Option<identity_svc::core::ManualClock>,
    ) -> World {
        let pg = match backend {
            Backend::Sqlite => Vec::new(),
            Backend::Postgres => vec![
                fresh_database("e2e_identity").await,
                fresh_database("e2e_portal").await,
            ],
        };
        World {
            identity: None,
            portal: None,
            identity_operator: format!("odc_op_{}", uuid::Uuid::new_v4().simple()),
            portal_operator: format!("odc_op_{}", uuid::Uuid::new_v4().simple()),
            identity_dir: tempfile::tempdir().unwrap(),
            portal_dir: tempfile::tempdir().unwrap(),
            identity_db: pg.first().map(|db| db.url().to_owned()),
            portal_db: pg.get(1).map(|db| db.url().to_owned()),
            identity_addr: "127.0.0.1:0".parse().unwrap(),
            portal_addr: None,
            identity_tls,
            identity_clock,
            telemetry: TelemetrySettings::default(),
            identity_tweak: None,
            _pg: pg,
        }
    }

    /// (Re)starts identity on its address (a fresh port the first time).
    pub async fn start_identity(&mut self) {
        let s = self.identity_settings();
        let deps = self.identity_dependencies();
        let server = TestServer::start_reached(
            Some(self.identity_addr),
            self.identity_reach(),
            |listener, shutdown| identity_svc::serve(listener, s, deps, shutdown),
        )
        .await;
        self.identity_addr = server.addr();
        self.identity = Some(server);
    }

    /// Another identity replica on identity's database and data directory, on a port of its
    /// own, with its settings changed by `tweak`; it stops when dropped.
    pub async fn start_identity_replica(
        &self,
        tweak: impl Fn(&mut identity_svc::config::Settings),
    ) -> TestServer {
        let mut s = self.identity_settings();
        tweak(&mut s);
        let deps = self.identity_dependencies();
        TestServer::start_reached(None, self.identity_reach(), |listener, shutdown| {
            identity_svc::serve(listener, s, deps, shutdown)
        })
        .await
    }

    /// What identity starts with: the world's database, directory, operator, telemetry and TLS,
    /// then the tweak.
    fn identity_settings(&self) -> identity_svc::config::Settings {
        let mut s = identity_svc::config::Settings::default();
        s.data_dir = self.identity_dir.path().to_path_buf();
        s.database_url.clone_from(&self.identity_db);
        s.operator_token = Some(shared::auth::Secret::new(self.identity_operator.clone()));
        s.telemetry = self.telemetry.clone();
        // The tests' OpenID provider (`shared::testkit::oidc_provider`) serves plain http.
        s.oidc.allow_http_issuers = true;
        if let Some(tls) = &self.identity_tls {
            s.tls = tls.server.clone();
        }
        if let Some(tweak) = &self.identity_tweak {
            tweak(&mut s);
        }
        s
    }

    /// identity's dependencies: the world's manual clock, if it has one.
    fn identity_dependencies(&self) -> identity_svc::Dependencies {
        let mut deps = identity_svc::Dependencies::default();
        if let Some(clock) = &self.identity_clock {
            deps.clock = std::sync::Arc::new(clock.clone());
        }
        deps
    }

    /// identity's manual clock (only for a world started with `start_with_manual_clock`).
    pub fn identity_clock(&self) -> &identity_svc::core::ManualClock {
        self.identity_clock
            .as_ref()
            .expect("the world was started with start_with_manual_clock")
    }

    /// Stops identity (graceful) and waits for it to exit.
    pub async fn stop_identity(&mut self) {
        if let Some(server) = self.identity.take() {
            server.stop().await;
        }
    }

    /// (Re)starts portal-sync.
    pub async fn start_portal(&mut self) {
        let s = self.portal_settings();
        let reach = self.portal_reach();
        let server = TestServer::start_reached(self.portal_addr, reach, |listener, shutdown| {
            portal_sync_svc::serve(listener, s, shutdown)
        })
        .await;
        self.portal_addr = Some(server.addr());
        self.portal = Some(server);
    }

    /// The settings portal-sync runs with (its database, identity, tokens; for another replica
    /// on the same database too).
    pub fn portal_settings(&self) -> portal_sync_svc::config::Settings {
        let mut s = portal_sync_svc::config::Settings::default();
        s.data_dir = self.portal_dir.path().to_path_buf();
        s.database_url.clone_from(&self.portal_db);
        s.operator_token = Some(shared::auth::Secret::new(self.portal_operator.clone()));
        s.service_tokens = vec![shared::auth::Secret::new(SERVICE_TOKEN.to_owned())];
        s.telemetry = self.telemetry.clone();
        s.sync.identity_url = format!("http://{}", self.identity_addr);
        if let Some(tls) = &self.identity_tls {
            s.sync.identity_url = format!("https://{}", self.identity_addr);
            s.sync.identity_ca_file = Some(tls.portal_ca_file.clone());
            s.sync.identity_cert_file = tls.portal_identity.as_ref().map(|(c, _)| c.clone());
            s.sync.identity_key_file = tls.portal_identity.as_ref().map(|(_, k)| k.clone());
        }
        s.sync.discovery_interval_ms = 100;
        s.sync.backoff_min_ms = 20;
        s.sync.backoff_max_ms = 300;
        if let Some(tls) = self.portal_tls() {
            s.tls = tls;
        }
        s
    }

    /// Stops portal-sync (graceful) and waits for it to exit.
    pub async fn stop_portal(&mut self) {
        if let Some(server) = self.portal.take() {
            server.stop().await;
        }
    }

    fn channel(addr: SocketAddr) -> Channel {
        server::channel(addr)
    }

    /// How the tests' clients reach identity.
    fn identity_reach(&self) -> Reach {
        self.identity_tls
            .as_ref()
            .map_or(Reach::Plain, |tls| tls.reach.clone())
    }

    /// portal-sync's server TLS settings, if it serves TLS.
    fn portal_tls(&self) -> Option<TlsSettings> {
        self.identity_tls.as_ref()?.portal_server.clone()
    }

    /// How the tests' clients reach portal-sync.
    fn portal_reach(&self) -> Reach {
        match (&self.identity_tls, self.portal_tls()) {
            (Some(tls), Some(_)) => tls.reach.clone(),
            _ => Reach::Plain,
        }
    }

    /// A channel to identity (TLS when it serves TLS).
    pub fn identity_channel(&self) -> Channel {
        server::channel_reached(self.identity_addr, &self.identity_reach())
    }

    /// identity's address.
    pub fn identity_addr(&self) -> SocketAddr {
        self.identity_addr
    }

    /// A channel to an identity replica ([`World::start_identity_replica`]).
    pub fn replica_channel(&self, replica: &TestServer) -> Channel {
        server::channel_reached(replica.addr(), &self.identity_reach())
    }

    fn auth(token: Option<&str>, acting_for: Option<&str>) -> Credentials {
        Credentials::new(token, acting_for)
    }

    // ---- identity clients
    pub fn id_orgs(&self, token: &str) -> id::organizations_client::OrganizationsClient<Authed> {
        id::organizations_client::OrganizationsClient::with_interceptor(
            self.identity_channel(),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_users(&self, token: Option<&str>) -> id::users_client::UsersClient<Authed> {
        id::users_client::UsersClient::with_interceptor(
            self.identity_channel(),
            Self::auth(token, None),
        )
    }
    pub fn id_roles(&self, token: &str) -> id::roles_client::RolesClient<Authed> {
        id::roles_client::RolesClient::with_interceptor(
            self.identity_channel(),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_access(&self, token: &str) -> id::access_client::AccessClient<Authed> {
        id::access_client::AccessClient::with_interceptor(
            self.identity_channel(),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_apps(&self, token: &str) -> id::apps_client::AppsClient<Authed> {
        id::apps_client::AppsClient::with_interceptor(
            self.identity_channel(),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_service_accounts(
        &self,
        token: &str,
    ) -> id::service_accounts_client::ServiceAccountsClient<Authed> {
        id::service_accounts_client::ServiceAccountsClient::with_interceptor(
            self.identity_channel(),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_groups(&self, token: &str) -> id::groups_client::GroupsClient<Authed> {
        id::groups_client::GroupsClient::with_interceptor(
            self.identity_channel(),
            Self::auth(Some(token), None),
        )
    }
    pub fn id_providers(
        &self,
        token: Option<&str>,
    ) -> id::identity_providers_client::IdentityProvidersClient<Authed> {
        id::identity_providers_client::IdentityProvidersClient::with_interceptor(
            self.identity_channel(),
            Self::auth(token, None),
        )
    }
    pub fn id_audit(&self, token: &str) -> id::audit_client::AuditClient<Authed> {
        id::audit_client::AuditClient::with_interceptor(
            self.identity_channel(),
            Self::auth(Some(token), None),
        )
    }

    // ---- portal clients (token + the person acted for)
    pub fn portal_channel(&self) -> Channel {
        server::channel_reached(self.portal_addr.unwrap(), &self.portal_reach())
    }

    /// portal-sync's address.
    pub fn portal_addr(&self) -> SocketAddr {
        self.portal_addr.unwrap()
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

    /// Creates an organization named `display_name` through the operator, on identity or the
    /// replica `channel` leads to; its first administrator is invited as `first_admin`.
    /// Returns the organization's name.
    pub async fn create_org_through(
        &self,
        channel: Channel,
        display_name: &str,
        first_admin: &str,
    ) -> String {
        id::organizations_client::OrganizationsClient::with_interceptor(
            channel,
            Self::auth(Some(&self.identity_operator), None),
        )
        .create_organization(id::CreateOrganizationRequest {
            organization: Some(id::Organization {
                display_name: display_name.into(),
                ..Default::default()
            }),
            first_administrator_email: first_admin.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
    }

    /// [`World::create_org_through`] identity.
    pub async fn create_org(&self, display_name: &str, first_admin: &str) -> String {
        self.create_org_through(self.identity_channel(), display_name, first_admin)
            .await
    }

    /// Accepts the invitation mailed to `email` as `display_name`, then logs in to `org`:
    /// the user's resource name and session token.
    pub async fn accept_and_login(
        &self,
        org: &str,
        email: &str,
        display_name: &str,
    ) -> (String, String) {
        let user = self
            .id_users(None)
            .accept_invitation(id::AcceptInvitationRequest {
                invitation_token: self.invitation_token(email),
                password: PASSWORD.into(),
                display_name: display_name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .name;
        let session = self
            .id_users(None)
            .login(id::LoginRequest {
                organization: org.into(),
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .session_token;
        (user, session)
    }

    /// The newest invitation token sent to `email` by identity.
    pub fn invitation_token(&self, email: &str) -> String {
        invitation_token(&self.identity_dir.path().join("mailbox"), email)
    }
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

/// The value of a counter (`name{labels}` as Prometheus writes it) in this process's metrics,
/// 0 when it was never incremented. The servers run in this process and record into its global
/// recorder, installed here the first time; the tests run in parallel, so a counter only says
/// "at least" what one test did.
pub fn counter(series: &str) -> u64 {
    metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The value of a gauge (`name{labels}`) in this process's metrics; None when never set.
pub fn gauge(series: &str) -> Option<f64> {
    metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// This process's metrics as Prometheus text (the recorder is installed on the first call).
fn metrics_text() -> String {
    static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    METRICS
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder in the e2e tests")
        })
        .render()
}
