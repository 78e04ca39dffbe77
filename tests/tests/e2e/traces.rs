//! Traces across both services: an OTLP collector in the test process receives the spans of
//! identity and portal-sync, and a `Resync` call sent with a W3C `traceparent` is one trace
//! from the caller through portal-sync's snapshot into identity; both services export to a
//! collector that serves mTLS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use shared::proto::portal::v1 as portal;
use shared::testkit::certs::{PemDir, TestCa};
use shared::traces::TelemetrySettings;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::harness::*;
use crate::sync::{caught_up, setup};

crate::e2e_tests!(
    a_resync_call_is_one_trace_across_portal_sync_and_identity,
    both_services_export_to_a_collector_over_mtls,
);

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    /// The `service.name` of the span's resource.
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<any_value::Value> {
        value(&self.attributes, key)
    }
}

fn value(attributes: &[KeyValue], key: &str) -> Option<any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|AnyValue { value }| value)
}

fn text(v: &str) -> Option<any_value::Value> {
    Some(any_value::Value::StringValue(v.to_owned()))
}

/// An OTLP/gRPC trace collector keeping every span it receives.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            let service = match value(&resource.attributes, "service.name") {
                Some(any_value::Value::StringValue(s)) => s,
                _ => String::new(),
            };
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                kept.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span.attributes,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

impl Collector {
    /// Serves on a free port of 127.0.0.1 until the test ends.
    async fn start() -> (Self, SocketAddr) {
        Self::serve(tonic::transport::Server::builder()).await
    }

    /// Serves TLS with `tls` on a free port of 127.0.0.1 until the test ends.
    async fn start_tls(tls: ServerTlsConfig) -> (Self, SocketAddr) {
        Self::serve(tonic::transport::Server::builder().tls_config(tls).unwrap()).await
    }

    async fn serve(mut builder: tonic::transport::Server) -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Collector::default();
        let server = builder
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        (collector, addr)
    }

    /// The spans of `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

async fn a_resync_call_is_one_trace_across_portal_sync_and_identity(b: Backend) {
    shared::telemetry::init_with_traces(shared::telemetry::LogFormat::Pretty);
    let (collector, addr) = Collector::start().await;
    let w = World::start_traced(b, format!("http://{addr}")).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;

    // The caller's own span, as a W3C trace context.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let mut request = tonic::Request::new(portal::ResyncRequest {
        infrastructure: s.infra.clone(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    w.sync(&w.portal_operator).resync(request).await.unwrap();

    // The Resync call (portal-sync) → the snapshot it asked for (portal-sync) → identity's
    // GetSnapshot, each the child of the one before.
    let (resync, snapshot, get_snapshot) = eventually("the trace in the collector", || async {
        let spans = collector.trace(&trace_id);
        let find = |service: &str, name: &str, parent: &str| {
            spans
                .iter()
                .find(|s| s.service == service && s.name == name && s.parent_span_id == parent)
                .cloned()
        };
        let resync = find("portal-sync-svc", "portal.v1.Sync/Resync", &caller_span)?;
        let snapshot = find("portal-sync-svc", "sync_snapshot", &resync.span_id)?;
        let get = find(
            "identity-svc",
            "identity.v1.Audit/GetSnapshot",
            &snapshot.span_id,
        )?;
        Some((resync, snapshot, get))
    })
    .await;

    for (span, service, method) in [
        (&resync, "portal.v1.Sync", "Resync"),
        (&get_snapshot, "identity.v1.Audit", "GetSnapshot"),
    ] {
        assert_eq!(span.attribute("rpc.system"), text("grpc"), "{span:?}");
        assert_eq!(span.attribute("rpc.service"), text(service), "{span:?}");
        assert_eq!(span.attribute("rpc.method"), text(method), "{span:?}");
        assert_eq!(
            span.attribute("rpc.grpc.status_code"),
            Some(any_value::Value::IntValue(0)),
            "{span:?}"
        );
    }
    assert!(
        snapshot.attribute("infrastructure").is_some(),
        "{snapshot:?}"
    );

    // identity's commits: a span of the mutation under its call, the batch under that.
    eventually("a commit under its call", || async {
        let spans = collector.spans.lock().unwrap().clone();
        let by_id = |id: &str| spans.iter().find(|s| s.span_id == id);
        spans.iter().find(|batch| {
            batch.service == "identity-svc"
                && batch.name == "commit_batch"
                && by_id(&batch.parent_span_id).is_some_and(|commit| {
                    commit.name == "commit"
                        && by_id(&commit.parent_span_id)
                            .is_some_and(|call| call.name == "identity.v1.Roles/CreateRole")
                })
        })?;
        Some(())
    })
    .await;
}

/// Both services reach a collector that serves TLS with a certificate of its own CA and
/// requires client certificates: with `otlp_ca_file`, `otlp_cert_file` and `otlp_key_file`
/// set, the spans of both arrive.
async fn both_services_export_to_a_collector_over_mtls(b: Backend) {
    shared::telemetry::init_with_traces(shared::telemetry::LogFormat::Pretty);
    let dir = PemDir::new();
    let (collector_ca, clients) = (TestCa::new("collector CA"), TestCa::new("telemetry CA"));
    let server = collector_ca.server();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&server.cert_pem, &server.key_pem))
        .client_ca_root(Certificate::from_pem(clients.pem()));
    let (collector, addr) = Collector::start_tls(tls).await;
    let (cert, key) = dir.write_leaf("services", &clients.client("services"));
    let w = World::start_with_telemetry(
        b,
        TelemetrySettings {
            otlp_endpoint: Some(format!("https://{addr}")),
            otlp_ca_file: Some(dir.write("collector-ca.pem", &collector_ca.pem())),
            otlp_cert_file: Some(cert),
            otlp_key_file: Some(key),
            export_delay_ms: 50,
            ..TelemetrySettings::default()
        },
    )
    .await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    eventually("spans of both services at the collector", || async {
        let spans = collector.spans.lock().unwrap().clone();
        let from = |service: &str| spans.iter().any(|s| s.service == service);
        (from("identity-svc") && from("portal-sync-svc")).then_some(())
    })
    .await;
}
