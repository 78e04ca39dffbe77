//! Starting the identity service: open the store, load the core, settle the operator token,
//! and serve every `identity.v1` service through the shared bootstrap (health, reflection,
//! timeouts, concurrency limit, metrics, graceful shutdown).
//!
//! [`serve`] takes an already bound listener so that tests can start the real server on
//! `127.0.0.1:0` in-process, with a [`Dependencies::clock`] they control.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shared::health::{Gate, Health, HealthSettings};
use shared::operator_token::{self, create_private_dir};
use shared::proto::identity::v1 as pb;
use shared::secrets::TokenEncoding;
use shared::traces::Traces;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::auth::OPERATOR_PREFIX;
use crate::config::Settings;
use crate::core::hashing::HashPool;
use crate::core::lockout::LockoutPolicy;
use crate::core::oidc::Verifier;
use crate::core::{Core, Mailer, OpenedStore, SharedClock, SystemClock};
use crate::grpc::Api;
use crate::grpc::throttle::AddressLimits;

// Shared with the other service; re-exported under their historical names.
pub use shared::operator_token::{
    TOKEN_FILE as OPERATOR_TOKEN_FILE, token_path as operator_token_path,
};

/// What the server uses from its surroundings, replaceable by tests.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// The time source (tests inject a `ManualClock` to expire invitations and lockouts).
    pub clock: SharedClock,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
        }
    }
}

/// Serves the identity API on `listener` until `shutdown` completes, then reports
/// `NOT_SERVING`, drains in-flight calls and returns.
///
/// Before serving it creates the data directory if missing, opens and migrates the store
/// (SQLite in the data directory, or PostgreSQL for a `postgres://` URL), loads every
/// organization into memory, and settles the operator token (see [`operator_token_hash`]).
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    deps: Dependencies,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Boxed: the whole service's state machine is large (clippy's `large_futures`), and every
    // caller (the binary, the tests, the bench) would otherwise carry it inline.
    Box::pin(serve_boxed(listener, settings, deps, shutdown)).await
}

async fn serve_boxed(
    listener: TcpListener,
    settings: Settings,
    deps: Dependencies,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;

    let database = settings.database();
    let store = OpenedStore::open(&database)
        .await
        .with_context(|| format!("cannot open the store {database}"))?;
    tracing::info!(%database, "store opened and migrated");

    let mailer = mailer(&settings)?;

    let core = Core::load(
        store,
        deps.clock,
        mailer,
        Duration::from_millis(settings.token_cache_ttl_ms),
    )
    .await
    .context("cannot load the organizations from the store")?
    .with_login_limits(
        HashPool::from_settings(&settings.login),
        LockoutPolicy::from(&settings.login),
    )
    .with_oidc(
        Verifier::new(&settings.oidc).context("cannot build the OpenID Connect HTTP client")?,
    )
    .with_mail(settings.mail.clone());
    tracing::info!(organizations = core.org_ids().len(), "organizations loaded");

    let operator_hash = operator_token_hash(&settings)?;
    let api = Api {
        core: Arc::new(core),
        operator_hashes: Arc::new(vec![operator_hash]),
        consistency_wait: Duration::from_millis(settings.consistency_wait_ms),
        address_limits: Arc::new(AddressLimits::from_settings(&settings.login)),
    };
    tokio::spawn(sweep_address_limits(
        Arc::clone(&api.address_limits),
        api.core.closing(),
    ));
    let traces = Traces::start(&settings.telemetry, "identity-svc")?;
    // The mail outbox's worker: what the commits queued, from this replica and the others.
    tokio::spawn(api.core.outbox().run(api.core.closing(), traces.clone()));
    // Every replica: a boundary a replica commits first, the others find already committed.
    tokio::spawn(crate::core::grant_boundaries::run(Arc::clone(&api.core)));
    if settings.follow_interval_ms > 0 {
        tokio::spawn(follow(
            Arc::clone(&api.core),
            Duration::from_millis(settings.follow_interval_ms),
            traces.clone(),
        ));
    }

    let core = Arc::clone(&api.core);
    let shutdown = async move {
        shutdown.await;
        // End the change-feed streams first, or the graceful drain would wait for them.
        core.begin_shutdown();
    };
    let served = shared::server::serve_traced(
        listener,
        routes(&api),
        health(&api.core, &settings.health),
        &settings.grpc,
        &settings.tls,
        &traces,
        shutdown,
    )
    .await;
    traces.shutdown().await;
    served?;
    Ok(())
}

/// Where invitations go: the SMTP relay if one is set, otherwise the (private) mailbox directory.
fn mailer(settings: &Settings) -> anyhow::Result<Mailer> {
    Ok(if let Some(smtp) = &settings.smtp {
        tracing::info!(
            host = %smtp.host,
            port = smtp.port,
            tls = ?smtp.tls,
            auth = smtp.username.is_some(),
            "invitations go through SMTP"
        );
        Mailer::smtp(smtp).context("invalid SMTP settings")?
    } else {
        let dir = settings.mailbox();
        // The messages carry invitation secrets: keep the directory private.
        create_private_dir(&dir)
            .with_context(|| format!("cannot create the mailbox directory {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), "invitations are written to the mailbox directory");
        Mailer::Mailbox(dir)
    })
}

/// Readiness: every service and `""` answer `NOT_SERVING` while the database does not answer
/// (the in-memory reads would still work, but no write, login or new organization would).
fn health(core: &Arc<Core>, settings: &HealthSettings) -> Health {
    let core = Arc::clone(core);
    Health::new(&SERVICE_NAMES, settings).probe("database", Gate::Everything, move || {
        let core = Arc::clone(&core);
        async move { core.database_reachable().await }
    })
}

/// The follower: every `every`, applies what other replicas committed to the same database
/// (see [`Core::follow_once`]), each catch-up a span of `traces`, until the server shuts down.
async fn follow(core: Arc<Core>, every: Duration, traces: Traces) {
    let mut closing = core.closing();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        match core.follow_once_traced(&traces).await {
            Ok(0) => {}
            Ok(moved) => tracing::debug!(organizations = moved, "applied other replicas' events"),
            Err(e) => tracing::warn!(error = %e, "cannot follow the change events"),
        }
    }
}

/// How often the per-address rate limit forgets the addresses whose budget is full again.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Keeps the per-address rate limit's memory bounded (see [`AddressLimits::sweep`]) until the
/// server shuts down.
async fn sweep_address_limits(
    limits: Arc<AddressLimits>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => limits.sweep(),
            _ = closing.wait_for(|c| *c) => return,
        }
    }
}

/// The fully qualified name of every `identity.v1` service, as reported by health.
pub const SERVICE_NAMES: [&str; 10] = [
    pb::organizations_server::SERVICE_NAME,
    pb::stages_server::SERVICE_NAME,
    pb::apps_server::SERVICE_NAME,
    pb::users_server::SERVICE_NAME,
    pb::roles_server::SERVICE_NAME,
    pb::access_server::SERVICE_NAME,
    pb::groups_server::SERVICE_NAME,
    pb::service_accounts_server::SERVICE_NAME,
    pb::identity_providers_server::SERVICE_NAME,
    pb::audit_server::SERVICE_NAME,
];

/// Every `identity.v1` service (the same list as [`SERVICE_NAMES`]) around the same [`Api`].
fn routes(api: &Api) -> Routes {
    Routes::default()
        .add_service(pb::organizations_server::OrganizationsServer::new(
            api.clone(),
        ))
        .add_service(pb::stages_server::StagesServer::new(api.clone()))
        .add_service(pb::apps_server::AppsServer::new(api.clone()))
        .add_service(pb::users_server::UsersServer::new(api.clone()))
        .add_service(pb::roles_server::RolesServer::new(api.clone()))
        .add_service(pb::access_server::AccessServer::new(api.clone()))
        .add_service(pb::groups_server::GroupsServer::new(api.clone()))
        .add_service(pb::service_accounts_server::ServiceAccountsServer::new(
            api.clone(),
        ))
        .add_service(pb::identity_providers_server::IdentityProvidersServer::new(
            api.clone(),
        ))
        .add_service(pb::audit_server::AuditServer::new(api.clone()))
}

/// The SHA-256 hash of the operator token, the only form the server keeps.
///
/// The token is the configured `operator_token` if set; otherwise the content of
/// `<data_dir>/operator-token`; otherwise a new random token ([`OPERATOR_PREFIX`], base64url)
/// written once to that file, readable only by its owner (mode 0600). Only the file's path is
/// logged, never the token. See [`shared::operator_token::load_or_create_hash`].
pub fn operator_token_hash(settings: &Settings) -> anyhow::Result<String> {
    Ok(operator_token::load_or_create_hash(
        settings.operator_token.as_ref(),
        &settings.data_dir,
        OPERATOR_PREFIX,
        TokenEncoding::Base64Url,
    )?)
}

#[cfg(test)]
mod tests;
