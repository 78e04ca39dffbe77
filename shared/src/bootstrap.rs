//! What every service binary does around its own `serve`: set up logging (with the traces
//! layer when traces are on) and metrics from the settings, bind the listener, serve until
//! Ctrl-C or SIGTERM, and log how it stopped. A service's `main.rs` is then three lines: load
//! its settings, call [`run`] with its `serve`.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::telemetry::LogFormat;

/// What [`run`] needs of a service's settings (both services' `Settings` have these fields).
/// `Debug` must redact secrets: the whole configuration is logged at start-up.
pub trait ServiceSettings: fmt::Debug {
    /// The gRPC listen address.
    fn listen(&self) -> SocketAddr;
    /// The log line format.
    fn log_format(&self) -> LogFormat;
    /// The Prometheus endpoint, if any.
    fn metrics_listen(&self) -> Option<SocketAddr>;
    /// Whether spans are exported (`[telemetry] otlp_endpoint`): the OpenTelemetry layer is
    /// installed only then.
    fn traces_enabled(&self) -> bool {
        false
    }
}

/// Completes when the process is asked to stop: what a service's `serve` gets to shut down.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the service `name` (e.g. `identity-svc`): logging per `settings`, the metrics endpoint
/// if configured, the listener bound on `settings.listen()`, then `serve(listener, settings,
/// shutdown)` until Ctrl-C or SIGTERM ([`shutdown_signal`]). An error is logged with its whole
/// chain and returned (the process exits non-zero).
pub async fn run<S, F, Fut>(name: &str, settings: S, serve: F) -> anyhow::Result<()>
where
    S: ServiceSettings,
    F: FnOnce(TcpListener, S, ShutdownSignal) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if settings.traces_enabled() {
        crate::telemetry::init_with_traces(settings.log_format());
    } else {
        crate::telemetry::init(settings.log_format());
    }
    tracing::info!(?settings, "starting {name}");

    if let Some(addr) = settings.metrics_listen() {
        crate::metrics::install_prometheus(addr)?;
    }

    let listen = settings.listen();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "gRPC listener bound; starting up");

    // Boxed: a service's whole serve future is large (clippy's `large_futures`).
    let result = Box::pin(serve(listener, settings, Box::pin(shutdown_signal()))).await;
    if let Err(error) = &result {
        tracing::error!(error = format!("{error:#}"), "{name} stopped with an error");
    }
    result
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. If a signal cannot be listened for, that is logged
/// and only the other one stops the process.
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(SocketAddr);

    impl ServiceSettings for Fixed {
        fn listen(&self) -> SocketAddr {
            self.0
        }
        fn log_format(&self) -> LogFormat {
            LogFormat::Pretty
        }
        fn metrics_listen(&self) -> Option<SocketAddr> {
            None
        }
    }

    #[tokio::test]
    async fn serves_on_the_bound_listener_and_returns_its_result() {
        let settings = Fixed("127.0.0.1:0".parse().unwrap());
        let seen = run("test-svc", settings, |listener, s, _stop| async move {
            assert_eq!(s.0.ip(), listener.local_addr()?.ip());
            Ok(())
        })
        .await;
        assert!(seen.is_ok());
        let failed = run(
            "test-svc",
            Fixed("127.0.0.1:0".parse().unwrap()),
            |_, _, _| async { Err(anyhow::anyhow!("no store")) },
        )
        .await;
        assert_eq!(failed.unwrap_err().to_string(), "no store");
    }

    #[tokio::test]
    async fn an_address_that_cannot_be_bound_is_an_error_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = run("test-svc", Fixed(addr), |_, _, _| async { Ok(()) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), format!("cannot listen on {addr}"));
    }
}
