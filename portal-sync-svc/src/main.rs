//! `portal-sync-svc`: reads the configuration, sets up logging and metrics, binds the listener
//! and serves until Ctrl-C or SIGTERM. Everything else lives in the library
//! ([`portal_sync_svc::serve`]).

use anyhow::Context as _;
use portal_sync_svc::config::Settings;
use portal_sync_svc::serve;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    shared::telemetry::init(settings.log_format);
    tracing::info!(?settings, "starting portal-sync-svc");

    if let Some(addr) = settings.metrics_listen {
        shared::metrics::install_prometheus(addr)?;
    }

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "gRPC listener bound; starting up");

    let result = serve(listener, settings, shutdown_signal()).await;
    if let Err(error) = &result {
        tracing::error!(
            error = format!("{error:#}"),
            "portal-sync-svc stopped with an error"
        );
    }
    result
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
