//! Test harness: `spawn_app` starts the real server with a fresh database and a manual clock;
//! typed clients carry a bearer token; helpers walk the invitation flow through the mailbox.
//! Starting, stopping and the PostgreSQL switch are the shared kit's (`shared::testkit`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use identity_svc::config::Settings;
use identity_svc::core::clock::ManualClock;
use shared::proto::identity::v1 as pb;
use shared::testkit::clients::{Credentials, invitation_token};
use shared::testkit::pg::{self, TestDatabase};
use shared::testkit::server::TestServer;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use pb::access_client::AccessClient;
pub use pb::apps_client::AppsClient;
pub use pb::audit_client::AuditClient;
pub use pb::groups_client::GroupsClient;
pub use pb::identity_providers_client::IdentityProvidersClient;
pub use pb::organizations_client::OrganizationsClient;
pub use pb::roles_client::RolesClient;
pub use pb::service_accounts_client::ServiceAccountsClient;
pub use pb::stages_client::StagesClient;
pub use pb::users_client::UsersClient;
/// Which store the server runs on.
pub use shared::testkit::Backend;
/// A channel with a bearer token.
pub use shared::testkit::clients::Authed;

/// A strong password that satisfies the policy.
pub const PASSWORD: &str = "Correct-Horse-42";

/// Generates `sqlite::<name>` and `postgres::<name>` tests for each `async fn name(Backend)`.
/// The PostgreSQL variants honour the switch of `shared::testkit::pg` (`TEST_PG_URL=off`).
#[macro_export]
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = $crate::helpers::Backend::Postgres;
                    let test = concat!(module_path!(), "::", stringify!($name));
                    if shared::testkit::should_run(backend, test) {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}

/// A change to the settings applied at every start.
pub type SettingsHook = Box<dyn Fn(&mut Settings) + Send + Sync>;

/// A running server. `server` comes first: fields drop in order, so the server is stopped
/// before its data directory and database go away.
pub struct TestApp {
    server: Option<TestServer>,
    pub channel: Channel,
    pub operator: String,
    pub clock: ManualClock,
    pub data_dir: tempfile::TempDir,
    pub backend: Backend,
    database_url: Option<String>,
    pg: Option<TestDatabase>,
    /// Applied to the settings at every start (e.g. an SMTP relay).
    pub tweak: Option<SettingsHook>,
}

/// A signed-in principal: its token and resource name.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub user: String,
    pub org: String,
}

fn settings(data_dir: &Path, database_url: Option<String>, operator: &str) -> Settings {
    let mut s = Settings::default();
    s.data_dir = data_dir.to_path_buf();
    s.database_url = database_url;
    s.operator_token = Some(shared::auth::Secret::new(operator.to_owned()));
    s
}

/// Starts the server on `backend` with a fresh database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    // Logs are muted unless TEST_LOG is set.
    if std::env::var_os("TEST_LOG").is_some() {
        shared::telemetry::init(shared::telemetry::LogFormat::Pretty);
    }
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let admin_url = pg::admin_url("identity API test")
                .expect("the api_tests! macro skips PostgreSQL tests when TEST_PG_URL=off");
            Some(TestDatabase::create(&admin_url, "identity_api").await)
        }
    };
    let mut app = TestApp {
        channel: Channel::from_static("http://127.0.0.1:1").connect_lazy(),
        operator: format!("odc_op_test_{}", uuid::Uuid::new_v4().simple()),
        clock: ManualClock::default(),
        data_dir: tempfile::tempdir().unwrap(),
        backend,
        database_url: pg.as_ref().map(|db| db.url().to_owned()),
        server: None,
        pg,
        tweak: None,
    };
    app.start().await;
    app
}

impl TestApp {
    /// A second replica on the same database (the same SQLite file or PostgreSQL database),
    /// with the same operator token and clock; `tweak` adjusts its settings (e.g. the follower
    /// interval). The database belongs to `self`.
    pub async fn replica(&self, tweak: impl Fn(&mut Settings) + Send + Sync + 'static) -> TestApp {
        let shared_dir = self.data_dir.path().to_path_buf();
        let mut app = TestApp {
            channel: Channel::from_static("http://127.0.0.1:1").connect_lazy(),
            operator: self.operator.clone(),
            clock: self.clock.clone(),
            data_dir: tempfile::tempdir().unwrap(),
            backend: self.backend,
            database_url: self.database_url.clone(),
            server: None,
            pg: None,
            tweak: Some(Box::new(move |s: &mut Settings| {
                s.data_dir.clone_from(&shared_dir);
                tweak(s);
            })),
        };
        app.start().await;
        app
    }

    /// (Re)starts the server on the same data, on a fresh port, and waits until it serves.
    pub async fn start(&mut self) {
        let mut settings = settings(
            self.data_dir.path(),
            self.database_url.clone(),
            &self.operator,
        );
        if let Some(f) = &self.tweak {
            f(&mut settings);
        }
        let deps = identity_svc::Dependencies {
            clock: std::sync::Arc::new(self.clock.clone()),
        };
        let server = TestServer::start(None, |listener, shutdown| {
            identity_svc::serve(listener, settings, deps, shutdown)
        })
        .await;
        self.channel = server.channel();
        self.server = Some(server);
    }

    /// Stops the server gracefully and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("the server runs").addr()
    }

    pub fn mailbox(&self) -> PathBuf {
        self.data_dir.path().join("mailbox")
    }

    fn bearer(&self, token: Option<&str>) -> Credentials {
        Credentials::bearer(token)
    }

    pub fn orgs(&self, token: Option<&str>) -> OrganizationsClient<Authed> {
        OrganizationsClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn stages(&self, token: Option<&str>) -> StagesClient<Authed> {
        StagesClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn apps(&self, token: Option<&str>) -> AppsClient<Authed> {
        AppsClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn users(&self, token: Option<&str>) -> UsersClient<Authed> {
        UsersClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    /// An anonymous Users client whose connections come from `source` (e.g. `127.0.0.2`).
    /// The address the server listens on.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("the server is running").addr()
    }
    pub fn users_from(&self, source: &str) -> UsersClient<Authed> {
        let addr = self.server.as_ref().expect("the server is running").addr();
        let channel = shared::testkit::server::channel_from(addr, source.parse().unwrap());
        UsersClient::with_interceptor(channel, self.bearer(None))
    }
    pub fn roles(&self, token: Option<&str>) -> RolesClient<Authed> {
        RolesClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn access(&self, token: Option<&str>) -> AccessClient<Authed> {
        AccessClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn groups(&self, token: Option<&str>) -> GroupsClient<Authed> {
        GroupsClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn service_accounts(&self, token: Option<&str>) -> ServiceAccountsClient<Authed> {
        ServiceAccountsClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn identity_providers(&self, token: Option<&str>) -> IdentityProvidersClient<Authed> {
        IdentityProvidersClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }
    pub fn audit(&self, token: Option<&str>) -> AuditClient<Authed> {
        AuditClient::with_interceptor(self.channel.clone(), self.bearer(token))
    }

    /// Creates an organization (operator); returns its resource name.
    pub async fn create_org(&self, name: &str, admin_email: &str) -> String {
        self.orgs(Some(&self.operator))
            .create_organization(pb::CreateOrganizationRequest {
                organization: Some(pb::Organization {
                    display_name: name.into(),
                    ..Default::default()
                }),
                first_administrator_email: admin_email.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .name
    }

    /// The newest invitation token sent to `email`, read from the mailbox.
    pub fn invitation_token(&self, email: &str) -> String {
        invitation_token(&self.mailbox(), email)
    }

    /// Accepts the newest invitation of `email` and logs in.
    pub async fn accept_and_login(&self, org: &str, email: &str) -> Session {
        let token = self.invitation_token(email);
        let user = self
            .users(None)
            .accept_invitation(pb::AcceptInvitationRequest {
                invitation_token: token,
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        self.login(org, email, &user.name).await
    }

    /// Logs in with the test password.
    pub async fn login(&self, org: &str, email: &str, user: &str) -> Session {
        let r = self
            .users(None)
            .login(pb::LoginRequest {
                organization: org.into(),
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner();
        Session {
            token: r.session_token,
            user: user.to_owned(),
            org: org.to_owned(),
        }
    }

    /// A new organization and its signed-in first administrator.
    pub async fn admin(&self, org_name: &str) -> Session {
        let email = format!("admin@{}.example", org_name.to_lowercase());
        let org = self.create_org(org_name, &email).await;
        self.accept_and_login(&org, &email).await
    }

    /// Invites `email` with `request` filled in by `f`, accepts, logs in.
    pub async fn invite_and_login(
        &self,
        by: &Session,
        email: &str,
        f: impl FnOnce(&mut pb::InviteUserRequest),
    ) -> Session {
        let mut req = pb::InviteUserRequest {
            parent: by.org.clone(),
            email: email.into(),
            ..Default::default()
        };
        f(&mut req);
        self.users(Some(&by.token)).invite_user(req).await.unwrap();
        self.accept_and_login(&by.org, email).await
    }

    /// A signed-in user holding `role` (`administrator`, `developer` or a role name) at
    /// organization scope.
    pub async fn member(&self, by: &Session, email: &str, role: &str) -> Session {
        let role = if role.contains('/') {
            role.to_owned()
        } else {
            format!("{}/roles/{role}", by.org)
        };
        self.invite_and_login(by, email, |r| r.organization_role = role)
            .await
    }

    /// Creates an app; returns its name.
    pub async fn app(&self, by: &Session, name: &str) -> String {
        self.app_with_token(by, name).await.0
    }

    /// Creates an app; returns its name and the write's consistency token.
    pub async fn app_with_token(&self, by: &Session, name: &str) -> (String, String) {
        let r = self
            .apps(Some(&by.token))
            .create_app(pb::CreateAppRequest {
                parent: by.org.clone(),
                app: Some(pb::App {
                    display_name: name.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let token = consistency_token_of(&r);
        (r.into_inner().name, token)
    }

    /// Creates a service account named `name` and a one-hour token of it.
    pub async fn service_account_with_token(
        &self,
        by: &Session,
        name: &str,
    ) -> (pb::ServiceAccount, pb::CreateServiceAccountTokenResponse) {
        let mut sas = self.service_accounts(Some(&by.token));
        let sa = sas
            .create_service_account(pb::CreateServiceAccountRequest {
                parent: by.org.clone(),
                service_account: Some(pb::ServiceAccount {
                    display_name: name.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        let token = sas
            .create_service_account_token(pb::CreateServiceAccountTokenRequest {
                parent: sa.name.clone(),
                ttl_seconds: 3600,
            })
            .await
            .unwrap()
            .into_inner();
        (sa, token)
    }

    /// The organization's current sequence as this server's state has it.
    pub async fn sequence(&self, by: &Session) -> i64 {
        self.audit(Some(&by.token))
            .get_snapshot(pb::GetSnapshotRequest {
                parent: by.org.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .sequence
    }

    /// Watches the organization's change feed from its current sequence on.
    pub async fn watch_from_now(&self, by: &Session) -> tonic::Streaming<pb::ChangeEvent> {
        let after_sequence = self.sequence(by).await;
        self.audit(Some(&by.token))
            .watch_changes(pb::WatchChangesRequest {
                parent: by.org.clone(),
                after_sequence,
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Creates an end-user role of `app`; returns its name.
    pub async fn end_user_role(&self, by: &Session, app: &str, name: &str) -> String {
        self.apps(Some(&by.token))
            .create_end_user_role(pb::CreateEndUserRoleRequest {
                parent: app.into(),
                end_user_role: Some(pb::EndUserRole {
                    display_name: name.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .name
    }

    /// Checks a permission of `principal` (empty: the caller).
    pub async fn check(
        &self,
        by: &Session,
        principal: &str,
        permission: &str,
        stage: &str,
        app: &str,
    ) -> bool {
        self.access(Some(&by.token))
            .check_permission(pb::CheckPermissionRequest {
                parent: by.org.clone(),
                principal: principal.into(),
                permission: permission.into(),
                stage: if stage.is_empty() {
                    String::new()
                } else {
                    format!("{}/stages/{stage}", by.org)
                },
                app: app.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .allowed
    }
}

/// Asserts a gRPC error code and `ErrorInfo` reason (when given).
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(
    r: Result<T, Status>,
    code: Code,
    reason: Option<&str>,
) -> Status {
    let status = match r {
        Ok(v) => panic!("expected {code:?}, got Ok({v:?})"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "{status:?}");
    if let Some(reason) = reason {
        use tonic_types::StatusExt as _;
        let info = status
            .get_details_error_info()
            .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
        assert_eq!(info.reason, reason, "{status:?}");
    }
    status
}

/// The `google.rpc.RetryInfo` delay of `status`.
#[track_caller]
pub fn retry_delay(status: &Status) -> std::time::Duration {
    use tonic_types::StatusExt as _;
    status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap_or_else(|| panic!("no RetryInfo in {status:?}"))
}

/// Asserts INVALID_ARGUMENT naming `field` in a `google.rpc.BadRequest`.
#[track_caller]
pub fn assert_bad_field<T: std::fmt::Debug>(r: Result<T, Status>, field: &str) {
    use tonic_types::StatusExt as _;
    let status = assert_code(r, Code::InvalidArgument, None);
    let br = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in {status:?}"));
    assert!(
        br.field_violations.iter().any(|v| v.field == field),
        "no violation of {field} in {:?}",
        br.field_violations
    );
}

/// The resource name of a stage.
pub fn stage(org: &str, key: &str) -> String {
    format!("{org}/stages/{key}")
}

/// The resource name of a role.
pub fn role(org: &str, id: &str) -> String {
    format!("{org}/roles/{id}")
}

/// `msg` carrying `token` as its `x-consistency-token` request metadata.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-consistency-token", token.parse().unwrap());
    r
}

/// The `x-consistency-token` a response carries.
pub fn consistency_token_of<T>(r: &tonic::Response<T>) -> String {
    r.metadata()
        .get("x-consistency-token")
        .expect("the response carries a consistency token")
        .to_str()
        .unwrap()
        .to_owned()
}
