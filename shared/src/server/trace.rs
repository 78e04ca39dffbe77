//! The span of every gRPC call a server handles: named after the method
//! (`identity.v1.Audit/GetSnapshot`), with the `rpc.*` attributes of the OpenTelemetry
//! conventions and the status code, child of the caller's `traceparent` when it sent one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Code;
use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::traces::Traces;

/// Tower layer opening the call's span (see the module docs); outermost in the server.
#[derive(Debug, Clone)]
pub(crate) struct TraceLayer {
    traces: Traces,
}

impl TraceLayer {
    pub(crate) fn new(traces: Traces) -> Self {
        Self { traces }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            traces: self.traces.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TraceService<S> {
    inner: S,
    traces: Traces,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for TraceService<S>
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
        let span = if self.traces.is_on() {
            let span = call_span(req.uri().path());
            self.traces.adopt_remote(&span, req.headers());
            span
        } else {
            // Traces off: the span of the log lines only, as cheap as before.
            tracing::info_span!("grpc_request", method = %req.uri().path())
        };
        let response = span.in_scope(|| self.inner.call(req));
        let recorded = span.clone();
        Box::pin(
            async move {
                let result = response.await;
                if let Ok(response) = &result {
                    record_status(&recorded, super::grpc_status(response.headers()));
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The span of a call to `path` (`/package.Service/Method`) when traces are on.
fn call_span(path: &str) -> tracing::Span {
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    tracing::info_span!(
        "grpc_request",
        method = %path,
        otel.name = %name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records the call's status: as far as the response headers tell (an error a stream reports
/// after its first message is only in the trailers, as for the request metrics).
fn record_status(span: &tracing::Span, code: Code) {
    span.record("rpc.grpc.status_code", i64::from(code as i32));
    // The server-side errors of the conventions; a refused request is the caller's matter.
    if matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    ) {
        span.record("otel.status_code", "ERROR");
    }
}
