//! `identity-svc`: reads the configuration, then runs the service through the shared bootstrap
//! (logging, metrics, the bound listener, Ctrl-C or SIGTERM: [`shared::bootstrap::run`]).
//! Everything else lives in the library ([`identity_svc::serve`]).

use identity_svc::config::Settings;
use identity_svc::{Dependencies, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shared::bootstrap::run("identity-svc", settings, |listener, settings, shutdown| {
        serve(listener, settings, Dependencies::default(), shutdown)
    })
    .await
}
