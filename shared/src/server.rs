//! Server bootstrap shared by both services, so they look the same to operators and clients.
//!
//! [`serve`] takes a bound listener and the service's own [`Routes`] and adds what every
//! service needs:
//!
//! * `grpc.health.v1.Health` — the statuses of the service's [`Health`]: each named service
//!   and the whole server (`""`) follow the probes of what they depend on, `liveness` answers
//!   for the process (see [`crate::health`]); when the shutdown future completes they switch to
//!   `NOT_SERVING` *before* the server stops accepting and drains in-flight calls, so load
//!   balancers and watchers stop routing traffic here first.
//! * `grpc.reflection.v1` **and** `v1alpha` — grpcurl 1.8.6, Postman and evans only speak
//!   v1alpha. Besides our own descriptors they serve the health and `google.rpc` descriptors,
//!   which grpcurl needs to print `BadRequest`/`ErrorInfo` error details.
//! * a deadline per call: `DEADLINE_EXCEEDED` with an `ErrorInfo` (reason `DEADLINE_EXCEEDED`)
//!   once the request timeout, or the client's shorter `grpc-timeout`, passes without an answer
//!   (see [`deadline`]).
//! * one concurrency limit for the whole server (tonic's own limit is per connection, so a
//!   client opening many connections would bypass it).
//! * per-method metrics: `grpc_requests_total{method, code}` and
//!   `grpc_request_duration_seconds{method}` (see [`serve`] for what `code` can and cannot see).
//! * a `grpc_request` tracing span per call carrying the method path, exported as an
//!   OpenTelemetry span named after the method when traces are on ([`serve_traced`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::Server;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{Layer, Service};

use crate::health::Health;
use crate::metrics::{REQUEST_DURATION_SECONDS, REQUESTS_TOTAL};
use crate::tls::{ServerTls, TlsError, TlsSettings, Transport};
use crate::traces::Traces;
use deadline::DeadlineLayer;
use trace::TraceLayer;

/// Tunables of the gRPC server, meant to be embedded in a service's configuration.
///
/// Every field has a default, so an empty configuration section is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcSettings {
    /// Server-side deadline for each call, in seconds (default 30). A client's shorter
    /// `grpc-timeout` wins. A call not answered by then is answered `DEADLINE_EXCEEDED`, with
    /// `ErrorInfo` reason `DEADLINE_EXCEEDED` ([`deadline`]).
    pub request_timeout_secs: u64,
    /// Calls handled at the same time across all connections (default 1024); further calls
    /// wait for a free slot. `0` disables the limit.
    pub concurrency_limit: usize,
    /// After shutdown is requested, how long (seconds) in-flight calls and open streams may
    /// take to finish before the server closes what remains (default 10).
    pub drain_timeout_secs: u64,
}

impl GrpcSettings {
    /// [`request_timeout_secs`](Self::request_timeout_secs) as a [`Duration`].
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// [`drain_timeout_secs`](Self::drain_timeout_secs) as a [`Duration`].
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30,
            concurrency_limit: 1024,
            drain_timeout_secs: 10,
        }
    }
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A descriptor set could not be loaded into the reflection service (a build defect).
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS settings or files cannot be used.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
    /// The transport failed while serving.
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` plus health and reflection on `listener` until `shutdown` completes, then
/// reports `NOT_SERVING`, stops accepting and waits for in-flight calls to finish.
///
/// `health` names the services in `routes` (their fully qualified names, for example
/// `UserServiceServer::<T>::NAME` via `tonic::server::NamedService`), each with its own
/// health status, and the probes that drive those statuses.
///
/// With a certificate in `tls` the server speaks TLS only (mTLS with a client CA; see
/// [`crate::tls`]), reloading the files on SIGHUP and when they change; otherwise plain text.
/// The start-up line `gRPC server listening` says which (`transport`).
///
/// About the `code` label of `grpc_requests_total`: it is read from the response *headers*,
/// which is exact for unary calls (tonic sends a handler's error as a trailers-only response,
/// and success as `0` in the trailers). An error that a streaming call reports after it has
/// started streaming is only in the trailers and is counted as `0`. A call past its deadline is
/// counted as `4` (`DEADLINE_EXCEEDED`); one the client abandoned before a response as `1`
/// (`CANCELLED`). Calls answered
/// `UNIMPLEMENTED` are labelled `method="unknown"`, so that probing random paths cannot blow
/// up the number of series.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health: Health,
    settings: &GrpcSettings,
    tls: &TlsSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_traced(
        listener,
        routes,
        health,
        settings,
        tls,
        &Traces::off(),
        shutdown,
    )
    .await
}

/// [`serve`], with each call's span (`grpc_request`, see [`crate::traces`]) recorded by
/// `traces`: named after the method, child of the caller's `traceparent`.
pub async fn serve_traced(
    listener: TcpListener,
    routes: Routes,
    health: Health,
    settings: &GrpcSettings,
    tls: &TlsSettings,
    traces: &Traces,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let tls = ServerTls::load(tls)?;
    let service_names = health.service_names().to_vec();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = health.start(reporter).await;

    let routes = routes
        .add_service(health_service)
        .add_service(reflection(&service_names).build_v1()?)
        .add_service(reflection(&service_names).build_v1alpha()?);

    let (requested, drain_started) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        health.not_serving().await;
        tracing::info!("shutdown requested: health is NOT_SERVING, draining in-flight calls");
        let _ = requested.send(());
    };

    let transport = tls
        .as_ref()
        .map_or(Transport::Plaintext, ServerTls::transport);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, %transport, services = ?service_names, "gRPC server listening");
    }

    let limit = match settings.concurrency_limit {
        0 => tokio::sync::Semaphore::MAX_PERMITS,
        n => n.min(tokio::sync::Semaphore::MAX_PERMITS),
    };
    let deadline = DeadlineLayer::new(
        settings.request_timeout(),
        deadline::server_domain(&service_names),
    );
    let router = Server::builder()
        .tcp_nodelay(true)
        // Outermost first: the call's span, then metrics see every call, including time
        // spent waiting for a slot, which counts toward the deadline too.
        .layer(TraceLayer::new(traces.clone()))
        .layer(MetricsLayer)
        .layer(deadline)
        .layer(GlobalConcurrencyLimitLayer::new(limit))
        // Innermost: what the transport refuses of a request becomes INVALID_ARGUMENT.
        .layer(crate::codec::transport::RequestErrorsLayer)
        .add_routes(routes);
    let drain_timeout = settings.drain_timeout();
    match tls {
        None => {
            let server = router.serve_with_incoming_shutdown(nodelay_incoming(listener), signal);
            drain(server, drain_started, drain_timeout).await?;
        }
        Some(tls) => {
            let _watch = tls.watch();
            let server = router.serve_with_incoming_shutdown(tls.incoming(listener), signal);
            drain(server, drain_started, drain_timeout).await?;
        }
    }
    tracing::info!("gRPC server stopped");
    Ok(())
}

/// Runs `server` to its end, or until `drain_timeout` after `drain_started`: a stream the
/// client keeps open (a health Watch, a change feed whose reader stopped reading) would hold
/// the graceful drain forever, so it gets `drain_timeout`, then the remaining connections are
/// closed.
async fn drain(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    drain_started: tokio::sync::oneshot::Receiver<()>,
    drain_timeout: Duration,
) -> Result<(), tonic::transport::Error> {
    let drain_deadline = async move {
        if drain_started.await.is_ok() {
            tokio::time::sleep(drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served?,
        () = drain_deadline => {
            tracing::warn!(
                seconds = drain_timeout.as_secs(),
                "calls still open after the drain timeout; closing their connections"
            );
        }
    }
    Ok(())
}

/// The accepted connections of `listener`, with `TCP_NODELAY` set on each:
/// `serve_with_incoming*` ignores the builder's TCP settings (`tcp_nodelay` included).
fn nodelay_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        conn
    })
}

/// Reflection over our descriptors plus the health and `google.rpc` ones (used by error
/// details). Duplicate files across the sets are fine: the first registration wins.
/// Reflection over every descriptor (so `google.rpc` details decode), listing only the services
/// this server runs (and health): `grpcurl list` on one service does not show the other's.
fn reflection(service_names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    service_names
        .iter()
        .fold(builder, |b, name| b.with_service_name(*name))
}

/// Tower layer recording per-method call counts and latencies (see [`serve`]).
#[derive(Debug, Clone, Copy)]
struct MetricsLayer;

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner }
    }
}

#[derive(Debug, Clone)]
struct MetricsService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let mut call = CallRecord::start(req.uri().path());
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            call.finish(match &result {
                Ok(response) => grpc_status(response.headers()),
                // Our inner stack (tonic `Routes`) is infallible; anything else would be turned
                // into a status by tonic that we cannot see from here.
                Err(_) => Code::Unknown,
            });
            result
        })
    }
}

/// The `grpc-status` of a response as far as the headers tell: present for trailers-only
/// (error) responses, otherwise `OK` (the real status follows in the trailers).
fn grpc_status(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

/// One call in flight; records itself as `CANCELLED` if dropped before [`CallRecord::finish`].
struct CallRecord {
    method: Option<String>,
    started: Instant,
}

impl CallRecord {
    fn start(method: &str) -> Self {
        Self {
            method: Some(method.to_owned()),
            started: Instant::now(),
        }
    }

    fn finish(&mut self, code: Code) {
        let Some(method) = self.method.take() else {
            return;
        };
        let method = if code == Code::Unimplemented {
            "unknown".to_owned()
        } else {
            method
        };
        let code = code_label(code);
        ::metrics::histogram!(REQUEST_DURATION_SECONDS, "method" => method.clone())
            .record(self.started.elapsed().as_secs_f64());
        ::metrics::counter!(REQUESTS_TOTAL, "method" => method, "code" => code).increment(1);
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // Still set: the response future was dropped (the client left before an answer).
        self.finish(Code::Cancelled);
    }
}

/// The numeric gRPC status code as a static label value.
fn code_label(code: Code) -> &'static str {
    const LABELS: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    usize::try_from(code as i32)
        .ok()
        .and_then(|i| LABELS.get(i).copied())
        .unwrap_or("2")
}

pub mod deadline;
mod trace;

#[cfg(test)]
mod tests;
