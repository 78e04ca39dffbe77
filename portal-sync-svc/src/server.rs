//! Starting portal-sync: open the store, settle the operator and service tokens, start the
//! sync workers, and serve every `portal.v1` service through the shared bootstrap (health,
//! reflection, timeouts, concurrency limit, metrics, graceful shutdown).
//!
//! [`serve`] takes an already bound listener so that tests can start the real server on
//! `127.0.0.1:0` in-process.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use shared::health::{Gate, Health, HealthSettings, with_causes};
use shared::operator_token::{self, create_private_dir};
use shared::proto::portal::v1 as pb;
use tokio::net::TcpListener;
use tonic::service::Routes;

use shared::sealing::Keyring;
use shared::secrets::{TokenEncoding, hash_token};
use shared::traces::Traces;

use crate::auth::tokens::{OPERATOR_PREFIX, Tokens};
use crate::config::{Database, Settings};
use crate::grpc::Api;
use crate::rules::Rules;
use crate::store::PortalStore;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::sync::Syncer;

// Shared with the other service; re-exported under their historical names.
pub use shared::operator_token::{
    TOKEN_FILE as OPERATOR_TOKEN_FILE, token_path as operator_token_path,
};

/// Serves the portal API on `listener` until `shutdown` completes, then reports
/// `NOT_SERVING`, drains in-flight calls, stops the sync workers and returns.
///
/// Before serving it creates the data directory if missing, opens and migrates the store
/// (SQLite `<data_dir>/portal.db`, or PostgreSQL for a `postgres://` URL), settles the operator
/// token (see [`operator_token_hash`]) and starts the sync of every ODC infrastructure.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Boxed: the whole service's state machine is large (clippy's `large_futures`), and every
    // caller (the binary, the tests, the bench) would otherwise carry it inline.
    Box::pin(serve_boxed(listener, settings, shutdown)).await
}

async fn serve_boxed(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;

    let keyring = keyring(&settings)?;
    let database = settings.database();
    let store = open_store(&database, keyring)
        .await
        .with_context(|| format!("cannot open the store {database}"))?;
    tracing::info!(%database, "store opened and migrated");
    let resealed = store
        .reseal_identity_tokens()
        .await
        .context("cannot re-seal the stored identity tokens")?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            "identity tokens sealed again under the primary key"
        );
    }

    let operator_hash = operator_token_hash(&settings)?;
    let service_hashes = service_token_hashes(&settings)?;
    if service_hashes.is_empty() {
        tracing::warn!(
            "no service_tokens configured: only the operator can call; person-level calls need \
             a service token"
        );
    }
    let tokens = Tokens::new(vec![operator_hash], service_hashes);

    settings
        .sync
        .check_tls()
        .context("invalid TLS settings for identity")?;
    let traces = Traces::start(&settings.telemetry, "portal-sync-svc")?;
    let syncer = Syncer::spawn_traced(Arc::clone(&store), settings.sync.clone(), traces.clone());
    tracing::info!(
        identity = %settings.sync.identity_url,
        transport = if settings.sync.identity_uses_tls() {
            if settings.sync.identity_cert_file.is_some() { "mtls" } else { "tls" }
        } else {
            "plaintext"
        },
        "sync started"
    );
    let health = health(&store, &syncer, &settings.health);
    let api = Api::new(Rules::new(store, Arc::clone(&syncer)), tokens);

    let result = shared::server::serve_traced(
        listener,
        routes(&api),
        health,
        &settings.grpc,
        &settings.tls,
        &traces,
        shutdown,
    )
    .await;
    syncer.stop().await;
    tracing::info!("sync stopped");
    traces.shutdown().await;
    result?;
    Ok(())
}

/// Readiness: every service and `""` answer `NOT_SERVING` while the database does not answer;
/// `portal.v1.Sync` also while the sync finds identity unreachable (the rest of the API works
/// without identity).
fn health(store: &Arc<dyn PortalStore>, syncer: &Arc<Syncer>, settings: &HealthSettings) -> Health {
    let (store, syncer) = (Arc::clone(store), Arc::clone(syncer));
    Health::new(&SERVICE_NAMES, settings)
        .probe("database", Gate::Everything, move || {
            let store = Arc::clone(&store);
            async move { store.ping().await.map_err(|e| with_causes(&e)) }
        })
        .probe(
            "identity",
            Gate::Services(vec![pb::sync_server::SERVICE_NAME]),
            move || std::future::ready(syncer.identity_reachable()),
        )
}

/// The fully qualified name of every `portal.v1` service, as reported by health.
pub const SERVICE_NAMES: [&str; 6] = [
    pb::companies_server::SERVICE_NAME,
    pb::team_members_server::SERVICE_NAME,
    pb::community_accounts_server::SERVICE_NAME,
    pb::support_server::SERVICE_NAME,
    pb::capabilities_server::SERVICE_NAME,
    pb::sync_server::SERVICE_NAME,
];

/// Every `portal.v1` service (the same list as [`SERVICE_NAMES`]) around the same [`Api`].
fn routes(api: &Api) -> Routes {
    Routes::default()
        .add_service(pb::companies_server::CompaniesServer::new(api.clone()))
        .add_service(pb::team_members_server::TeamMembersServer::new(api.clone()))
        .add_service(pb::community_accounts_server::CommunityAccountsServer::new(
            api.clone(),
        ))
        .add_service(pb::support_server::SupportServer::new(api.clone()))
        .add_service(pb::capabilities_server::CapabilitiesServer::new(
            api.clone(),
        ))
        .add_service(pb::sync_server::SyncServer::new(api.clone()))
}

async fn open_store(
    database: &Database,
    keyring: Arc<Keyring>,
) -> anyhow::Result<Arc<dyn PortalStore>> {
    Ok(match database {
        Database::Sqlite(path) => Arc::new(SqliteStore::open(path, keyring).await?),
        Database::Postgres(url) => Arc::new(PgStore::connect(url, keyring).await?),
    })
}

/// The keys sealing the identity tokens: the configured key file, or the one in the data
/// directory (generated on first start).
fn keyring(settings: &Settings) -> anyhow::Result<Arc<Keyring>> {
    let keyring = if let Some(path) = &settings.token_keys_file {
        Keyring::load(path)
    } else {
        let path = settings.data_dir.join(TOKEN_KEYS_FILE);
        if !path.exists() {
            tracing::warn!(
                path = %path.display(),
                "no token_keys_file configured: generating one in the data directory; \
                 set token_keys_file in production, the same on every replica"
            );
        }
        Keyring::load_or_create(&path)
    }
    .context("cannot load the key file sealing identity tokens")?;
    tracing::info!(
        primary = keyring.primary_id(),
        "identity tokens sealed at rest"
    );
    Ok(Arc::new(keyring))
}

/// The key file generated in the data directory when none is configured.
pub const TOKEN_KEYS_FILE: &str = "token-keys";

/// The SHA-256 hashes of the configured service tokens (an empty one is an error).
pub fn service_token_hashes(settings: &Settings) -> anyhow::Result<Vec<String>> {
    settings
        .service_tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let t = t.expose().trim();
            if t.is_empty() {
                bail!("service_tokens[{i}] is empty");
            }
            Ok(hash_token(t))
        })
        .collect()
}

/// The SHA-256 hash of the operator token, the only form the server keeps.
///
/// The token is the configured `operator_token` if set; otherwise the content of
/// `<data_dir>/operator-token`; otherwise a new random token (`OPERATOR_PREFIX` and 64 hex
/// digits) written once to that file, readable only by its owner (mode 0600). Only the file's
/// path is logged, never the token. See [`shared::operator_token::load_or_create_hash`].
pub fn operator_token_hash(settings: &Settings) -> anyhow::Result<String> {
    Ok(operator_token::load_or_create_hash(
        settings.operator_token.as_ref(),
        &settings.data_dir,
        OPERATOR_PREFIX,
        TokenEncoding::Hex,
    )?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use shared::auth::Secret;

    fn settings(dir: &Path) -> Settings {
        Settings {
            data_dir: dir.to_owned(),
            ..Settings::default()
        }
    }

    /// The file handling (configured, blank and existing tokens) is tested in
    /// `shared::operator_token`; this checks the glue: this service's prefix, encoding and hash.
    #[test]
    fn the_operator_token_hash_is_of_the_generated_or_configured_token() {
        let dir = tempfile::tempdir().unwrap();
        let generated = operator_token_hash(&settings(dir.path())).unwrap();
        let token = std::fs::read_to_string(operator_token_path(dir.path())).unwrap();
        let token = token.trim();
        // 256 random bits, hex.
        assert!(token.starts_with(OPERATOR_PREFIX), "{token}");
        assert_eq!(token.len(), OPERATOR_PREFIX.len() + 64, "{token}");
        assert_eq!(generated, hash_token(token));
        assert_eq!(
            operator_token_hash(&settings(dir.path())).unwrap(),
            generated
        );
    }

    #[test]
    fn service_tokens_are_hashed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            service_tokens: vec![Secret::new("psync_svc_a"), Secret::new(" psync_svc_b ")],
            ..settings(dir.path())
        };
        assert_eq!(
            service_token_hashes(&s).unwrap(),
            vec![hash_token("psync_svc_a"), hash_token("psync_svc_b")]
        );
        let s = Settings {
            service_tokens: vec![Secret::new(" ")],
            ..settings(dir.path())
        };
        assert!(service_token_hashes(&s).is_err());
    }

    #[test]
    fn every_portal_service_of_the_protos_is_named() {
        use prost::Message as _;
        let fds =
            prost_types::FileDescriptorSet::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut in_protos: Vec<String> = fds
            .file
            .iter()
            .filter(|f| f.package() == "portal.v1")
            .flat_map(|f| f.service.iter().map(|s| format!("portal.v1.{}", s.name())))
            .collect();
        in_protos.sort();
        let mut named: Vec<String> = SERVICE_NAMES.iter().map(|s| (*s).to_owned()).collect();
        named.sort();
        assert_eq!(in_protos, named);
    }
}
