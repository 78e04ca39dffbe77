//! OpenTelemetry traces of both services, exported over OTLP/gRPC; off unless
//! `[telemetry] otlp_endpoint` is set.
//!
//! The services' spans are ordinary `tracing` spans; the layer of `tracing-opentelemetry`
//! (installed by [`crate::telemetry::init_with_traces`]) turns them into OpenTelemetry spans.
//! Which exporter a span goes to is decided by its trace context, not by the process: every
//! root span of a service is *adopted* by that service's [`Traces`] (its gRPC handler spans by
//! the server layer of [`crate::server`], background work such as a sync batch with [`Traces::root`]),
//! which puts the service's tracer into the span's OpenTelemetry context; children inherit it.
//! So two services in one process (the end-to-end tests) each export their own spans under
//! their own `service.name`, and a span that no [`Traces`] adopted is not recorded at all.
//!
//! Context crosses processes as W3C `traceparent`/`tracestate`: taken from a call's metadata by
//! the server layer, and put on an outgoing call by [`inject`] (portal-sync's identity client).
//!
//! With no endpoint, [`Traces::off`] adopts nothing, no exporter runs, and the binaries do not
//! install the OpenTelemetry layer at all.
//!
//! An `https://` endpoint is reached over TLS like every other connection of the services: the
//! collector's certificate must chain to `otlp_ca_file` (the system's roots are not used), and
//! `otlp_cert_file`/`otlp_key_file` present a client certificate (mTLS) when set.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanBuilder, TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use serde::{Deserialize, Serialize};
use tonic::codegen::http;
use tonic::transport::ClientTlsConfig;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::tls::{ClientFileErrors, ClientFiles, TlsError};

/// The `[telemetry]` table of both services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// The OTLP/gRPC endpoint spans are exported to, e.g. `http://127.0.0.1:4317` (an
    /// OpenTelemetry Collector, Jaeger, Tempo). Unset (the default): no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute (default: the binary's name, `identity-svc` or
    /// `portal-sync-svc`).
    pub service_name: Option<String>,
    /// More resource attributes, e.g. `deployment.environment = "production"`.
    pub resource_attributes: BTreeMap<String, String>,
    /// Longest time (milliseconds) a finished span waits before it is exported in a batch
    /// (default 5000).
    pub export_delay_ms: u64,
    /// CA certificates (PEM) the collector's certificate must chain to; required by an
    /// `https://` endpoint, refused with an `http://` one.
    pub otlp_ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) presented to the collector (mTLS); with
    /// `otlp_key_file`.
    pub otlp_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `otlp_cert_file`.
    pub otlp_key_file: Option<PathBuf>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: None,
            resource_attributes: BTreeMap::new(),
            export_delay_ms: 5000,
            otlp_ca_file: None,
            otlp_cert_file: None,
            otlp_key_file: None,
        }
    }
}

impl TelemetrySettings {
    /// Whether traces are exported (an endpoint is set).
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty())
    }

    /// The client TLS configuration of the endpoint: `None` for `http://`. The files must fit
    /// the scheme (a CA file for `https://`, no TLS file for `http://`, a certificate with its
    /// key), and are read now.
    fn tls(&self, endpoint: &str) -> Result<Option<ClientTlsConfig>, TlsError> {
        let files = ClientFiles {
            ca: self.otlp_ca_file.as_deref(),
            cert: self.otlp_cert_file.as_deref(),
            key: self.otlp_key_file.as_deref(),
        };
        files.config(
            endpoint,
            &ClientFileErrors {
                ca_missing: "an https:// telemetry.otlp_endpoint needs telemetry.otlp_ca_file",
                not_https: "telemetry.otlp_ca_file, otlp_cert_file and otlp_key_file need an \
                            https:// telemetry.otlp_endpoint",
                unpaired: "telemetry.otlp_cert_file and telemetry.otlp_key_file go together",
            },
        )
    }
}

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// The exporter could not be built.
    #[error("cannot set up the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The TLS settings do not fit the endpoint, or a file cannot be read.
    #[error("cannot set up TLS to the OTLP endpoint: {0}")]
    Tls(#[from] TlsError),
}

/// One service's traces: its tracer provider (exporter, batch processor, resource), or off.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Traces {
    service: Option<Service>,
}

/// The tracer of one service, carried in the OpenTelemetry context of its spans.
#[derive(Clone)]
struct Service {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl fmt::Debug for Traces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traces")
            .field("on", &self.service.is_some())
            .finish()
    }
}

impl Traces {
    /// No traces: nothing is adopted, nothing exported.
    pub fn off() -> Self {
        Self::default()
    }

    /// The traces of `settings` (off without an endpoint), `service.name` defaulting to
    /// `default_name`. Must run on a tokio runtime (the exporter's channel lives there); the
    /// endpoint is connected lazily, so a collector that is down delays nothing.
    pub fn start(settings: &TelemetrySettings, default_name: &str) -> Result<Self, TracesError> {
        let Some(endpoint) = settings.otlp_endpoint.as_deref().map(str::trim) else {
            return Ok(Self::off());
        };
        if endpoint.is_empty() {
            return Ok(Self::off());
        }
        let tls = settings.tls(endpoint)?;
        let exporter = {
            use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(10));
            if let Some(tls) = tls.clone() {
                builder = builder.with_tls_config(tls);
            }
            builder.build().map_err(|source| TracesError::Exporter {
                endpoint: endpoint.to_owned(),
                source,
            })?
        };
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(settings.export_delay_ms.max(1)))
            .build();
        let name = settings.service_name.as_deref().unwrap_or(default_name);
        let resource = Resource::builder()
            .with_attributes(
                settings
                    .resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(name.to_owned())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            )
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(name.to_owned());
        let transport = if tls.is_some() { "tls" } else { "plaintext" };
        tracing::info!(
            endpoint,
            service = name,
            transport,
            "exporting traces over OTLP"
        );
        Ok(Self {
            service: Some(Service { tracer, provider }),
        })
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.service.is_some()
    }

    /// Makes `span` (just created, not yet entered) a root span of this service's traces.
    pub fn root(&self, span: &tracing::Span) {
        self.adopt(span, &Context::new());
    }

    /// Makes `span` a span of this service under `parent` (a remote caller's context).
    fn adopt(&self, span: &tracing::Span, parent: &Context) {
        if let Some(service) = &self.service {
            // Fails only when the span is disabled or the layer is not installed: no trace.
            let _ = span.set_parent(parent.with_value(service.clone()));
        }
    }

    /// Makes `span` a span of this service under the `traceparent`/`tracestate` of `headers`
    /// (a root when they carry none).
    pub(crate) fn adopt_remote(&self, span: &tracing::Span, headers: &http::HeaderMap) {
        if self.service.is_some() {
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
            self.adopt(span, &parent);
        }
    }

    /// Exports what is still buffered and stops the exporter (at the end of `serve`).
    pub async fn shutdown(self) {
        let Some(service) = self.service else {
            return;
        };
        // The batch processor's thread exports through the runtime; block elsewhere.
        let done = tokio::task::spawn_blocking(move || service.provider.shutdown()).await;
        match done {
            Ok(Ok(())) => tracing::info!("traces flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "could not flush the traces"),
            Err(error) => tracing::warn!(%error, "could not flush the traces"),
        }
    }
}

/// The trace context of the current span, kept to make later work (in another task) its child:
/// e.g. the sync run that a `Resync` call asked for.
#[derive(Clone, Default)]
pub struct SpanParent(Context);

impl fmt::Debug for SpanParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpanParent")
            .field(&self.0.span().span_context().trace_id())
            .finish()
    }
}

impl SpanParent {
    /// The current span's context (nothing when traces are off).
    pub fn current() -> Self {
        Self(tracing::Span::current().context())
    }

    /// Whether it belongs to a recorded trace.
    pub fn is_traced(&self) -> bool {
        self.0.get::<Service>().is_some()
    }

    /// Makes `span` (just created, not yet entered) a child of this context, recorded by the
    /// service that recorded the parent.
    pub fn adopt(&self, span: &tracing::Span) {
        if self.is_traced() {
            let _ = span.set_parent(self.0.clone());
        }
    }
}

/// Puts the current span's trace context on an outgoing call as `traceparent` (and
/// `tracestate`); nothing when the current span is not traced.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
    }
}

/// The tracer of the `tracing-opentelemetry` layer: builds each span with the tracer of the
/// service that adopted its trace ([`Service`] in its context), or, for a span no service
/// adopted, with a tracer that records nothing.
#[derive(Debug)]
pub(crate) struct ServiceRouter {
    unrecorded: SdkTracer,
}

impl ServiceRouter {
    pub(crate) fn new() -> Self {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build();
        Self {
            unrecorded: provider.tracer("unrecorded"),
        }
    }
}

impl opentelemetry::trace::Tracer for ServiceRouter {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        match parent_cx.get::<Service>() {
            Some(service) => service.tracer.build_with_context(builder, parent_cx),
            None => self.unrecorded.build_with_context(builder, parent_cx),
        }
    }
}

/// Reads `traceparent`/`tracestate` from HTTP/2 headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes `traceparent`/`tracestate` into a call's metadata.
struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_tls(endpoint: &str, ca: bool, cert: bool, key: bool) -> TelemetrySettings {
        let file = |on: bool, name: &str| on.then(|| PathBuf::from(name));
        TelemetrySettings {
            otlp_endpoint: Some(endpoint.into()),
            otlp_ca_file: file(ca, "/nonexistent/ca.pem"),
            otlp_cert_file: file(cert, "/nonexistent/cert.pem"),
            otlp_key_file: file(key, "/nonexistent/key.pem"),
            ..TelemetrySettings::default()
        }
    }

    #[test]
    fn tls_files_must_fit_the_endpoint() {
        let incomplete = |s: TelemetrySettings| {
            let endpoint = s.otlp_endpoint.clone().unwrap();
            match s.tls(&endpoint) {
                Err(TlsError::Incomplete(why)) => why,
                other => panic!("{endpoint}: {other:?}"),
            }
        };
        assert!(
            incomplete(with_tls("https://c:4317", false, false, false)).contains("otlp_ca_file")
        );
        assert!(incomplete(with_tls("http://c:4317", true, false, false)).contains("https://"));
        assert!(incomplete(with_tls("HTTPS://c:4317", true, true, false)).contains("go together"));
        assert!(
            with_tls("http://c:4317", false, false, false)
                .tls("http://c:4317")
                .unwrap()
                .is_none()
        );
        // The right files are read at start: a missing one stops the start with its path.
        let missing = Traces::start(&with_tls("https://c:4317", true, false, false), "x-svc");
        let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    }

    #[test]
    fn no_endpoint_means_off() {
        assert!(!TelemetrySettings::default().enabled());
        let blank = TelemetrySettings {
            otlp_endpoint: Some("  ".into()),
            ..TelemetrySettings::default()
        };
        assert!(!blank.enabled());
        assert!(
            !Traces::start(&blank, "x-svc").unwrap().is_on(),
            "a blank endpoint is off"
        );
    }

    #[test]
    fn the_telemetry_table_reads_from_toml() {
        use figment::providers::{Format as _, Toml};
        #[derive(Deserialize)]
        struct Settings {
            telemetry: TelemetrySettings,
        }
        let s: Settings = figment::Figment::new()
            .merge(Toml::string(
                r#"
                [telemetry]
                otlp_endpoint = "http://collector:4317"
                service_name = "identity-eu"
                resource_attributes = { "deployment.environment" = "production" }
                "#,
            ))
            .extract()
            .unwrap();
        assert!(s.telemetry.enabled());
        assert_eq!(s.telemetry.service_name.as_deref(), Some("identity-eu"));
        assert_eq!(
            s.telemetry.resource_attributes["deployment.environment"],
            "production"
        );
        assert_eq!(s.telemetry.export_delay_ms, 5000);
    }

    #[test]
    fn an_untraced_call_carries_no_traceparent() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.get("traceparent").is_none());
        assert!(!SpanParent::current().is_traced());
    }

    #[test]
    fn a_traceparent_header_is_extracted() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        );
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let span = cx.span();
        let remote = span.span_context();
        assert_eq!(
            remote.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(remote.is_remote() && remote.is_sampled());
    }
}
