//! The two servers under test, each with a fixture of real resources (whose names seed the
//! generator), the callers the cases pick from, and a fingerprint of what its database holds.

use std::sync::Mutex;

use shared::proto::identity::v1 as id;
use shared::testkit::clients::Credentials as Creds;
use shared::testkit::pg::{self, TestDatabase};
use shared::testkit::server::TestServer;
use sqlx::Row as _;
use tonic::transport::Channel;

use crate::harness::{Authed, Backend, PASSWORD};
use crate::portal_api::Bare;

/// Who a case calls as: (bearer token, person acted for), each optional.
pub type Caller = (Option<String>, Option<String>);

/// What a refused request must not change: counts and sums over the tables a write touches
/// (identity: every change appends an event, so the organizations' sequences; portal: every
/// change of a company appends an event, plus the rows of each table).
const IDENTITY_FINGERPRINT: &str = "SELECT \
     (SELECT COUNT(*) FROM org_sequences), \
     (SELECT CAST(COALESCE(SUM(seq), 0) AS BIGINT) FROM org_sequences), \
     (SELECT COUNT(*) FROM events), \
     (SELECT COUNT(*) FROM entities), \
     (SELECT COUNT(*) FROM request_ids), \
     (SELECT COUNT(*) FROM tokens), \
     (SELECT COUNT(*) FROM tokens WHERE revoke_time IS NOT NULL), \
     (SELECT COUNT(*) FROM invitation_tokens), \
     (SELECT COUNT(*) FROM credentials WHERE password_hash IS NOT NULL)";
const PORTAL_FINGERPRINT: &str = "SELECT \
     (SELECT COUNT(*) FROM companies), \
     (SELECT COUNT(*) FROM events), \
     (SELECT CAST(COALESCE(SUM(seq), 0) AS BIGINT) FROM company_seq), \
     (SELECT COUNT(*) FROM infrastructures), \
     (SELECT COUNT(*) FROM members), \
     (SELECT CAST(COALESCE(SUM(rev), 0) AS BIGINT) FROM members), \
     (SELECT COUNT(*) FROM community_accounts), \
     (SELECT COUNT(*) FROM support_cases), \
     (SELECT COUNT(*) FROM approved_contacts)";

/// A read-only connection to a service's database.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn open(sqlite: &std::path::Path, pg: Option<&TestDatabase>) -> Db {
        match pg {
            Some(db) => Db::Postgres(sqlx::PgPool::connect(db.url()).await.unwrap()),
            None => Db::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=ro", sqlite.display()))
                    .await
                    .unwrap(),
            ),
        }
    }

    async fn numbers(&self, sql: &'static str) -> Vec<i64> {
        match self {
            Db::Sqlite(p) => {
                let row = sqlx::query(sql).fetch_one(p).await.unwrap();
                (0..row.len()).map(|i| row.get::<i64, _>(i)).collect()
            }
            Db::Postgres(p) => {
                let row = sqlx::query(sql).fetch_one(p).await.unwrap();
                (0..row.len()).map(|i| row.get::<i64, _>(i)).collect()
            }
        }
    }
}

/// A server under test.
pub struct Target {
    pub package: &'static str,
    pub channel: Channel,
    /// Callers, picked by the cases; the first ones are the most likely.
    pub callers: Mutex<Vec<Caller>>,
    /// Real resource names and values of the fixture.
    pub real: Vec<String>,
    /// Some of them by role (`org`, `company`, `admin_email`, ...), for the explicit tests.
    pub named: std::collections::BTreeMap<&'static str, String>,
    /// How many cases got each answer (reported with the timing).
    pub codes: Mutex<std::collections::BTreeMap<String, u32>>,
    baseline: Mutex<Option<Vec<i64>>>,
    db: Db,
    fingerprint_sql: &'static str,
    /// Identity only: how to sign the fixture's administrator in again (after a Logout case
    /// ended its session).
    relogin: Option<id::LoginRequest>,
    _keep: Box<dyn Send + Sync>,
}

impl Target {
    pub async fn fingerprint(&self) -> Vec<i64> {
        self.db.numbers(self.fingerprint_sql).await
    }

    /// The fingerprint after the previous case (read once at the start).
    pub async fn baseline(&self) -> Vec<i64> {
        let known = self.baseline.lock().unwrap().clone();
        match known {
            Some(b) => b,
            None => self.fingerprint().await,
        }
    }

    pub fn set_baseline(&self, now: Vec<i64>) {
        *self.baseline.lock().unwrap() = Some(now);
    }

    pub fn caller(&self, pick: proptest::sample::Index) -> Caller {
        let callers = self.callers.lock().unwrap();
        // The first caller twice as likely as each other.
        let i = pick.index(callers.len() + 1).saturating_sub(1);
        callers[i].clone()
    }

    /// Signs the administrator in again when its session was ended by a Logout case.
    pub async fn refresh_session(&self) {
        let Some(login) = &self.relogin else { return };
        let token = users(self.channel.clone(), None)
            .login(login.clone())
            .await
            .unwrap()
            .into_inner()
            .session_token;
        self.callers.lock().unwrap()[0].0 = Some(token);
        // The new session is stored: read the fingerprint afresh.
        *self.baseline.lock().unwrap() = None;
    }
}

fn users(channel: Channel, token: Option<&str>) -> id::users_client::UsersClient<Authed> {
    id::users_client::UsersClient::with_interceptor(channel, Creds::bearer(token))
}

/// portal-sync alone (its ODC infrastructure points at no identity), with the fixture of the
/// portal API tests.
pub async fn portal(backend: Backend) -> Target {
    let bare = Bare::start(backend).await;
    let t = bare.fixture("props.example").await;
    let callers = vec![
        (
            Some(crate::harness::SERVICE_TOKEN.to_owned()),
            Some(t.admin_email.clone()),
        ),
        (Some(bare.operator.clone()), None),
        (None, None),
        (
            Some(crate::harness::SERVICE_TOKEN.to_owned()),
            Some(t.member_email.clone()),
        ),
        (Some(crate::harness::SERVICE_TOKEN.to_owned()), None),
    ];
    let mut real = vec![
        t.company.clone(),
        t.cloud.clone(),
        t.odc.clone(),
        t.admin.clone(),
        t.admin_email.clone(),
        t.member.clone(),
        t.member_email.clone(),
        t.case.clone(),
        t.contact.clone(),
        format!("organizations/{}", uuid::Uuid::new_v4()),
        "odc_sa_not_used".into(),
    ];
    real.extend(field_names("portal.v1"));
    let db = Db::open(
        &bare.dir.path().join(portal_sync_svc::config::SQLITE_FILE),
        bare.pg.as_ref(),
    )
    .await;
    let named = [
        ("company", t.company.clone()),
        ("cloud", t.cloud.clone()),
        ("admin_email", t.admin_email.clone()),
        ("operator", bare.operator.clone()),
    ]
    .into();
    Target {
        package: "portal.v1",
        channel: bare.channel.clone(),
        callers: Mutex::new(callers),
        real,
        named,
        codes: Mutex::default(),
        baseline: Mutex::default(),
        db,
        fingerprint_sql: PORTAL_FINGERPRINT,
        relogin: None,
        _keep: Box::new(bare),
    }
}

/// Keeps identity's server, data directory and database alive (in that drop order).
struct Identity {
    _server: TestServer,
    _dir: tempfile::TempDir,
    _pg: Option<TestDatabase>,
}

/// identity alone, with an organization holding one of each resource. The cases call as an
/// administrator whose email and name the generator never draws (so no case locks it out or
/// removes it), as the operator, or anonymously.
pub async fn identity(backend: Backend) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let admin = pg::admin_url("e2e_properties").expect("skipped when TEST_PG_URL=off");
            Some(TestDatabase::create(&admin, "e2e_properties").await)
        }
    };
    let operator = format!("odc_op_{}", uuid::Uuid::new_v4().simple());
    let mut s = identity_svc::config::Settings::default();
    s.data_dir = dir.path().to_path_buf();
    s.database_url = pg.as_ref().map(|db| db.url().to_owned());
    s.operator_token = Some(shared::auth::Secret::new(operator.clone()));
    // Every case comes from one address: with the per-address limit, the generated Login
    // and AcceptInvitation cases used up the budget the fixture needs to sign its
    // administrator in again after a Logout case (CI saw RESOURCE_EXHAUSTED there). The limit
    // has its own tests (identity's `abuse` suite); these cases are about input.
    s.login.address_rate_per_minute = 0;
    let server = TestServer::start(None, |listener, shutdown| {
        identity_svc::serve(listener, s, identity_svc::Dependencies::default(), shutdown)
    })
    .await;
    let channel = server.channel();
    let (real, named, keeper_login, keeper_token) =
        identity_fixture(&channel, &operator, &dir.path().join("mailbox")).await;
    let db = Db::open(
        &dir.path().join(identity_svc::config::SQLITE_FILE),
        pg.as_ref(),
    )
    .await;
    Target {
        package: "identity.v1",
        channel,
        callers: Mutex::new(vec![
            (Some(keeper_token), None),
            (Some(operator), None),
            (None, None),
        ]),
        real,
        named,
        codes: Mutex::default(),
        baseline: Mutex::default(),
        db,
        fingerprint_sql: IDENTITY_FINGERPRINT,
        relogin: Some(keeper_login),
        _keep: Box::new(Identity {
            _server: server,
            _dir: dir,
            _pg: pg,
        }),
    }
}

/// The organization of [`identity`]: its real names, the administrator's login and session.
async fn identity_fixture(
    channel: &Channel,
    operator: &str,
    mailbox: &std::path::Path,
) -> (
    Vec<String>,
    std::collections::BTreeMap<&'static str, String>,
    id::LoginRequest,
    String,
) {
    let op = || Creds::bearer(Some(operator));
    let org =
        id::organizations_client::OrganizationsClient::with_interceptor(channel.clone(), op())
            .create_organization(id::CreateOrganizationRequest {
                organization: Some(id::Organization {
                    display_name: "Props".into(),
                    ..Default::default()
                }),
                first_administrator_email: "first@props.example".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .name;
    let first = users(channel.clone(), None)
        .accept_invitation(id::AcceptInvitationRequest {
            invitation_token: shared::testkit::clients::invitation_token(
                mailbox,
                "first@props.example",
            ),
            password: PASSWORD.into(),
            display_name: "First".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
        .name;
    let login = |email: &str| id::LoginRequest {
        organization: org.clone(),
        email: email.into(),
        password: PASSWORD.into(),
    };
    let t1 = users(channel.clone(), None)
        .login(login("first@props.example"))
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let admin = || Creds::bearer(Some(&t1));
    // The keeper: an administrator the generator never names.
    let keeper = create_user(channel, &t1, &org, "keeper@hidden.example", PASSWORD).await;
    let access = || id::access_client::AccessClient::with_interceptor(channel.clone(), admin());
    let scope = Some(id::Scope {
        kind: Some(id::scope::Kind::Organization(true)),
    });
    access()
        .assign_role(id::AssignRoleRequest {
            parent: org.clone(),
            principal: keeper,
            role: format!("{org}/roles/administrator"),
            scope: scope.clone(),
            grant_period: None,
        })
        .await
        .unwrap();
    let keeper_login = login("keeper@hidden.example");
    let keeper_token = users(channel.clone(), None)
        .login(keeper_login.clone())
        .await
        .unwrap()
        .into_inner()
        .session_token;

    let member = create_user(channel, &t1, &org, "member@props.example", PASSWORD).await;
    let invited = users(channel.clone(), Some(&t1))
        .invite_user(id::InviteUserRequest {
            parent: org.clone(),
            email: "invited@props.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let apps = id::apps_client::AppsClient::with_interceptor(channel.clone(), admin());
    let app = apps
        .clone()
        .create_app(id::CreateAppRequest {
            parent: org.clone(),
            app: Some(id::App {
                display_name: "App".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let end_user_role = apps
        .clone()
        .create_end_user_role(id::CreateEndUserRoleRequest {
            parent: app.clone(),
            end_user_role: Some(id::EndUserRole {
                display_name: "Reader".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let stage = format!("{org}/stages/development");
    // An external provider (never reached: its issuer does not resolve, and a generated ID
    // token is refused before any fetch) and a group whose claim mapping names it, so the
    // IdentityProviders RPCs and the claim mappings meet a real provider.
    let provider = identity_provider(channel, &t1, &org).await;
    let group = id::groups_client::GroupsClient::with_interceptor(channel.clone(), admin())
        .create_group(id::CreateGroupRequest {
            parent: org.clone(),
            group: Some(id::Group {
                display_name: "Group".into(),
                description: "first line\nsecond".into(),
                stage: stage.clone(),
                claim_mappings: vec![id::ClaimMapping {
                    identity_provider: provider.clone(),
                    claim: "groups".into(),
                    value: "props".into(),
                    value_delimiter: String::new(),
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let role = id::roles_client::RolesClient::with_interceptor(channel.clone(), admin())
        .create_role(id::CreateRoleRequest {
            parent: org.clone(),
            role: Some(id::Role {
                display_name: "Custom".into(),
                grants: vec![id::PermissionGrant {
                    permission: "users.manage".into(),
                    stages: vec![],
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let sas = id::service_accounts_client::ServiceAccountsClient::with_interceptor(
        channel.clone(),
        admin(),
    );
    let sa = sas
        .clone()
        .create_service_account(id::CreateServiceAccountRequest {
            parent: org.clone(),
            service_account: Some(id::ServiceAccount {
                display_name: "Robot".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let sa_token = sas
        .clone()
        .create_service_account_token(id::CreateServiceAccountTokenRequest {
            parent: sa.clone(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap()
        .name;
    let named = [
        ("org", org.clone()),
        ("member", member.clone()),
        ("stage", stage.clone()),
    ]
    .into();
    let mut real = vec![
        org.clone(),
        first,
        member,
        invited,
        app,
        end_user_role,
        stage,
        format!("{org}/stages/production"),
        "development".into(),
        "qa".into(),
        group,
        role,
        format!("{org}/roles/administrator"),
        format!("{org}/roles/developer"),
        sa,
        sa_token,
        provider,
        PROVIDER_ISSUER.into(),
        "props-client".into(),
        "groups".into(),
        "first@props.example".into(),
        "member@props.example".into(),
        "invited@props.example".into(),
        PASSWORD.into(),
        "users.manage".into(),
        "org.view_audit_trail".into(),
        format!("organizations/{}", uuid::Uuid::new_v4()),
    ];
    real.extend(field_names("identity.v1"));
    (real, named, keeper_login, keeper_token)
}

/// The issuer of the fixture's identity provider.
const PROVIDER_ISSUER: &str = "https://idp.props.example";

/// Creates the fixture's identity provider (organization scope); returns its name.
async fn identity_provider(channel: &Channel, token: &str, org: &str) -> String {
    id::identity_providers_client::IdentityProvidersClient::with_interceptor(
        channel.clone(),
        Creds::bearer(Some(token)),
    )
    .create_identity_provider(id::CreateIdentityProviderRequest {
        parent: org.into(),
        identity_provider: Some(id::IdentityProvider {
            display_name: "Props IdP".into(),
            issuer: PROVIDER_ISSUER.into(),
            client_id: "props-client".into(),
            email_trust: id::EmailTrust::VerifiedClaim.into(),
            profile_linking: id::ProfileLinking::Email.into(),
            assignment: Some(id::identity_provider::Assignment::OrganizationScope(true)),
            ..Default::default()
        }),
    })
    .await
    .unwrap()
    .into_inner()
    .name
}

async fn create_user(channel: &Channel, token: &str, org: &str, email: &str, pw: &str) -> String {
    users(channel.clone(), Some(token))
        .create_user(id::CreateUserRequest {
            parent: org.into(),
            user: Some(id::User {
                email: email.into(),
                display_name: email.split('@').next().unwrap_or_default().into(),
                ..Default::default()
            }),
            active: Some(true),
            initial_password: pw.into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// The field names of the package's messages (update masks name them).
fn field_names(package: &str) -> Vec<String> {
    let pool = prost_reflect::DescriptorPool::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut names: Vec<String> = pool
        .all_messages()
        .filter(|m| m.package_name() == package)
        .flat_map(|m| m.fields().map(|f| f.name().to_owned()).collect::<Vec<_>>())
        .collect();
    names.sort();
    names.dedup();
    names
}
