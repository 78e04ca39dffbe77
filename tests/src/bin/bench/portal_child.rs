//! portal-sync as a child process (`__serve-portal`): the child's side
//! ([`serve_portal_child`]) and the parent's handle ([`PortalChild`]: spawn, portal clients).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::proto::portal::v1 as portal;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::backend::Backend;

pub(crate) const PORTAL_CHILD_MODE: &str = "__serve-portal";
/// The portal child's operator token, in its environment rather than on its command line.
pub(crate) const PORTAL_OPERATOR_ENV: &str = "BENCH_PORTAL_OPERATOR_TOKEN";
/// The service token the portal child accepts.
pub(crate) const PORTAL_SERVICE_ENV: &str = "BENCH_PORTAL_SERVICE_TOKEN";
/// The sync replica id of a portal child, if set (a random one otherwise): the chaos suite
/// gives each replica its label, which it keeps across its restarts, as a StatefulSet's pod
/// keeps its name.
pub(crate) const PORTAL_REPLICA_ENV: &str = "BENCH_PORTAL_REPLICA_ID";

/// The portal child: serves portal-sync as `portal-sync-svc` does (`portal_sync_svc::serve`,
/// multi-thread tokio runtime, default settings: sync, timeouts, concurrency limit), on
/// 127.0.0.1:0, and writes the bound address to `addr_file`. Args: data dir, database URL
/// (`-`: SQLite in the data dir), address file, identity URL; the tokens come from
/// [`PORTAL_OPERATOR_ENV`] and [`PORTAL_SERVICE_ENV`], the replica id from
/// [`PORTAL_REPLICA_ENV`]. Stops when its stdin closes.
pub(crate) fn serve_portal_child(args: &[String]) {
    let [data_dir, database, addr_file, identity_url] = args else {
        eprintln!(
            "usage: bench {PORTAL_CHILD_MODE} DATA_DIR DATABASE_URL|- ADDR_FILE IDENTITY_URL"
        );
        std::process::exit(2);
    };
    let token = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            eprintln!("portal child: {name} is not set");
            std::process::exit(2);
        })
    };
    let settings = portal_sync_svc::config::Settings {
        data_dir: PathBuf::from(data_dir),
        database_url: (database != "-").then(|| database.clone()),
        operator_token: Some(shared::auth::Secret::new(token(PORTAL_OPERATOR_ENV))),
        service_tokens: vec![shared::auth::Secret::new(token(PORTAL_SERVICE_ENV))],
        sync: portal_sync_svc::sync::SyncSettings {
            identity_url: identity_url.clone(),
            replica_id: std::env::var(PORTAL_REPLICA_ENV).unwrap_or_default(),
            ..portal_sync_svc::sync::SyncSettings::default()
        },
        ..portal_sync_svc::config::Settings::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        shared::telemetry::init(shared::telemetry::LogFormat::Json);
        let listener = tokio::net::TcpListener::bind(crate::listen_addr())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tmp = format!("{addr_file}.tmp");
        std::fs::write(&tmp, addr.to_string()).expect("write address");
        std::fs::rename(&tmp, addr_file).expect("publish address");
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            })
            .await;
        };
        if let Err(e) = portal_sync_svc::serve(listener, settings, stdin_closed).await {
            eprintln!("portal child: {e:#}");
            std::process::exit(1);
        }
    });
}

pub(crate) type Companies =
    portal::companies_client::CompaniesClient<InterceptedService<Channel, Acting>>;
pub(crate) type SyncApi = portal::sync_client::SyncClient<InterceptedService<Channel, Acting>>;
pub(crate) type TeamMembers =
    portal::team_members_client::TeamMembersClient<InterceptedService<Channel, Acting>>;

/// `authorization: Bearer <token>` and, for calls made for a person, `x-acting-for`.
#[derive(Debug, Clone)]
pub(crate) struct Acting {
    bearer: MetadataValue<Ascii>,
    acting_for: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Acting {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut()
            .insert("authorization", self.bearer.clone());
        if let Some(p) = &self.acting_for {
            req.metadata_mut().insert("x-acting-for", p.clone());
        }
        Ok(req)
    }
}

/// A running portal-sync child process.
#[derive(Debug)]
pub(crate) struct PortalChild {
    child: Child,
    pub(crate) addr: String,
}

impl Drop for PortalChild {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PortalChild {
    /// Starts portal-sync on `backend` (its own database) following identity at
    /// `identity_addr`, and waits until it answers.
    pub(crate) async fn spawn(
        backend: &Backend,
        identity_addr: &str,
        operator: &str,
        service: &str,
    ) -> anyhow::Result<Self> {
        let addr_file = backend.dir.path().join("portal-addr");
        let _ = std::fs::remove_file(&addr_file);
        let database = backend
            .pg
            .as_ref()
            .map_or("-".to_owned(), |p| p.url().to_owned());
        let child = Command::new(std::env::current_exe()?)
            .arg(PORTAL_CHILD_MODE)
            .arg(backend.dir.path())
            .arg(&database)
            .arg(&addr_file)
            .arg(format!("http://{identity_addr}"))
            .env(PORTAL_OPERATOR_ENV, operator)
            .env(PORTAL_SERVICE_ENV, service)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut portal = Self {
            child,
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_mins(2);
        while portal.addr.is_empty() {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                portal.addr = a;
            } else {
                portal.alive()?;
                anyhow::ensure!(Instant::now() < deadline, "portal-sync did not bind");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Serving once an unknown company is NOT_FOUND.
        let mut companies = portal.companies(operator, None).await?;
        loop {
            let e = companies
                .get_company(portal::GetCompanyRequest {
                    name: format!("companies/{}", Uuid::new_v4()),
                })
                .await;
            match e {
                Err(s) if s.code() == tonic::Code::NotFound => break,
                other => {
                    portal.alive()?;
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "portal-sync did not answer: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Ok(portal)
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("portal-sync exited: {status}");
        }
        Ok(())
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    }

    pub(crate) fn acting(token: &str, acting_for: Option<&str>) -> anyhow::Result<Acting> {
        Ok(Acting {
            bearer: format!("Bearer {token}").parse()?,
            acting_for: acting_for.map(str::parse).transpose()?,
        })
    }

    pub(crate) async fn companies(
        &self,
        token: &str,
        acting_for: Option<&str>,
    ) -> anyhow::Result<Companies> {
        Ok(portal::companies_client::CompaniesClient::with_interceptor(
            self.channel().await?,
            Self::acting(token, acting_for)?,
        ))
    }

    pub(crate) async fn sync(&self, token: &str) -> anyhow::Result<SyncApi> {
        Ok(portal::sync_client::SyncClient::with_interceptor(
            self.channel().await?,
            Self::acting(token, None)?,
        ))
    }

    pub(crate) async fn members(
        &self,
        token: &str,
        acting_for: &str,
    ) -> anyhow::Result<TeamMembers> {
        Ok(
            portal::team_members_client::TeamMembersClient::with_interceptor(
                self.channel().await?,
                Self::acting(token, Some(acting_for))?,
            ),
        )
    }
}
