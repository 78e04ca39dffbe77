//! Prometheus exporter for the `metrics` facade.
//!
//! Code anywhere in the services records with `metrics::counter!` / `histogram!`; this module
//! installs the process-wide recorder once at startup and serves `GET /metrics` on a separate
//! port, so scrapes never compete with gRPC traffic or need gRPC tooling.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

/// Counter of finished gRPC calls, labelled `method` and `code` (see [`crate::server::serve`]).
pub(crate) const REQUESTS_TOTAL: &str = "grpc_requests_total";
/// Histogram of gRPC call latency in seconds, labelled `method`.
pub(crate) const REQUEST_DURATION_SECONDS: &str = "grpc_request_duration_seconds";

/// Latency buckets (seconds) for every histogram named `*_seconds` ([`REQUEST_DURATION_SECONDS`],
/// identity's commit latency): real histograms rather than the exporter's default summaries, so
/// that they can be aggregated across instances.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for every histogram named `*_batch_size` (identity's group-commit batches, at most
/// 256 drafts).
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Why [`install_prometheus`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Called outside a Tokio runtime; the exporter runs as a task on the caller's runtime.
    #[error("the Prometheus exporter must be installed from within a Tokio runtime")]
    NoRuntime,
    /// The exporter could not be built, e.g. the address is already in use.
    #[error("cannot start the Prometheus exporter: {0}")]
    Build(#[from] BuildError),
    /// A global `metrics` recorder is already installed (e.g. a second call in tests).
    #[error("a global metrics recorder is already installed")]
    AlreadyInstalled,
}

/// Installs the Prometheus recorder as the global `metrics` recorder and serves it over HTTP
/// on `addr` (any path answers with the text exposition format).
///
/// Must be called from within a Tokio runtime. Returns an error instead of panicking when a
/// recorder is already installed; in that case no listener is left running.
pub fn install_prometheus(addr: SocketAddr) -> Result<(), MetricsError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| MetricsError::NoRuntime)?;
    let builder = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".to_owned()), SIZE_BUCKETS)?;
    // `build` binds the socket; the recorder is installed before the exporter task is spawned,
    // so a failed installation drops (and closes) the listener again.
    let (recorder, exporter) = {
        let _guard = runtime.enter();
        builder.build()?
    };
    ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError::AlreadyInstalled)?;
    runtime.spawn(async move {
        if let Err(error) = exporter.await {
            tracing::error!(?error, "Prometheus exporter stopped");
        }
    });

    ::metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Finished gRPC calls by method and status code."
    );
    ::metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        ::metrics::Unit::Seconds,
        "Time until the response headers of a gRPC call, by method."
    );
    tracing::info!(%addr, "Prometheus metrics exporter listening");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// The only test that touches the process-wide recorder.
    #[tokio::test]
    async fn exports_metrics_and_refuses_a_second_recorder() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        install_prometheus(addr).unwrap();
        ::metrics::counter!(REQUESTS_TOTAL, "method" => "/t.v1.T/M", "code" => "0").increment(1);

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        assert!(
            body.contains(r#"grpc_requests_total{method="/t.v1.T/M",code="0"} 1"#),
            "{body}"
        );

        let again = install_prometheus(SocketAddr::from(([127, 0, 0, 1], 0)));
        assert!(
            matches!(again, Err(MetricsError::AlreadyInstalled)),
            "{again:?}"
        );
    }

    #[test]
    fn needs_a_runtime() {
        let result = install_prometheus(SocketAddr::from(([127, 0, 0, 1], 0)));
        assert!(matches!(result, Err(MetricsError::NoRuntime)), "{result:?}");
    }
}
