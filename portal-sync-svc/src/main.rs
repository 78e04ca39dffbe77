//! `portal-sync-svc`: reads the configuration and runs the service through the shared bootstrap
//! ([`shared::bootstrap::run`]: logging, metrics, the listener, Ctrl-C or SIGTERM). Everything
//! else lives in the library ([`portal_sync_svc::serve`]).

use portal_sync_svc::config::Settings;
use portal_sync_svc::serve;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shared::bootstrap::run("portal-sync-svc", settings, serve).await
}
