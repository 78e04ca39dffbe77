//! Traces across both services: an OTLP collector in the test process receives the spans of
//! identity and portal-sync, and a `Resync` call sent with a W3C `traceparent` is one trace
//! from the caller through portal-sync's snapshot into identity; both services export to a
//! collector that serves mTLS. identity's mail outbox worker, which serves no call, records each
//! attempt as a `mail_delivery` span of a trace of its own, and its follower each organization
//! it catches up with another replica as a `follower_catch_up` span.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::certs::{PemDir, TestCa};
use shared::traces::TelemetrySettings;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::harness::*;
use crate::sync::{caught_up, setup};

crate::e2e_tests!(
    a_resync_call_is_one_trace_across_portal_sync_and_identity,
    both_services_export_to_a_collector_over_mtls,
    a_delivery_the_outbox_worker_retries_is_a_mail_delivery_span_of_its_own_trace,
    the_follower_records_what_it_applies_from_another_replica,
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

/// An attribute holding a number (the bridge exports some integers as their text).
fn number(v: Option<any_value::Value>) -> Option<i64> {
    match v? {
        any_value::Value::IntValue(n) => Some(n),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
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

async fn a_delivery_the_outbox_worker_retries_is_a_mail_delivery_span_of_its_own_trace(b: Backend) {
    use identity_svc::config::{MailSettings, SmtpSettings, SmtpTls};
    shared::telemetry::init_with_traces(shared::telemetry::LogFormat::Pretty);
    let (collector, addr) = Collector::start().await;
    // A relay port nothing listens on: every attempt is refused at once.
    let relay_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = World::start_identity_traced(b, format!("http://{addr}"), move |s| {
        s.smtp = Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: relay_port,
            from: "noreply@odc.example".into(),
            tls: SmtpTls::None,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
        });
        s.mail = MailSettings {
            poll_interval_ms: 20,
            retry_base_ms: 50,
            retry_max_ms: 200,
            lease_ms: 60_000,
        };
    })
    .await;
    // CreateOrganization queues the first administrator's invitation and attempts it before it
    // answers; that attempt fails, so the worker retries it.
    w.id_orgs(&w.identity_operator)
        .create_organization(id::CreateOrganizationRequest {
            organization: Some(id::Organization {
                display_name: "Traced outbox".into(),
                ..Default::default()
            }),
            first_administrator_email: "ada@traced-outbox.example".into(),
        })
        .await
        .unwrap();

    let (delivery, send) = eventually(
        "a retry's mail_delivery span, its mail_send under it",
        || {
            let spans = collector.spans.lock().unwrap().clone();
            let found = spans
                .iter()
                .find(|s| {
                    s.service == "identity-svc"
                        && s.name == "mail_delivery"
                        && number(s.attribute("attempt")).is_some_and(|n| n >= 2)
                })
                .and_then(|delivery| {
                    let send = spans
                        .iter()
                        .find(|s| s.name == "mail_send" && s.parent_span_id == delivery.span_id)?;
                    Some((delivery.clone(), send.clone()))
                });
            async move { found }
        },
    )
    .await;
    // The worker's attempt starts a trace: no parent, none of a call's.
    assert_eq!(delivery.parent_span_id, "", "{delivery:?}");
    assert_eq!(send.trace_id, delivery.trace_id, "{send:?}");
    let Some(any_value::Value::StringValue(message)) = delivery.attribute("message") else {
        panic!("no message id on {delivery:?}");
    };
    assert!(uuid::Uuid::parse_str(&message).is_ok(), "{delivery:?}");
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

/// The `follower_catch_up` spans of `org` received so far.
fn catch_ups(collector: &Collector, org: &str) -> Vec<Received> {
    let org = text(org);
    let spans = collector.spans.lock().unwrap();
    spans
        .iter()
        .filter(|s| s.name == "follower_catch_up" && s.attribute("organization") == org)
        .cloned()
        .collect()
}

/// identity's follower records each organization it applies events of, committed through
/// another replica, as a root `follower_catch_up` span: an organization new to it
/// (`loaded`), and one it had, from its sequence to the other replica's write.
async fn the_follower_records_what_it_applies_from_another_replica(b: Backend) {
    shared::telemetry::init_with_traces(shared::telemetry::LogFormat::Pretty);
    let (collector, addr) = Collector::start().await;
    let w = World::start_identity_traced(b, format!("http://{addr}"), |s| {
        s.follow_interval_ms = 20;
    })
    .await;
    // The other replica exports nothing and has no follower: every span is the first one's.
    let replica = w
        .start_identity_replica(|s| {
            s.follow_interval_ms = 0;
            s.telemetry = TelemetrySettings::default();
        })
        .await;
    let channel = w.replica_channel(&replica);

    // Created through the other replica (and not touched here): the follower loads it.
    let created_elsewhere = w
        .create_org_through(channel.clone(), "Followed", "ada@elsewhere.example")
        .await;
    let id_of = |name: &str| name.trim_start_matches("organizations/").to_owned();
    let loaded = eventually("the span of the organization loaded", || {
        let found = catch_ups(&collector, &id_of(&created_elsewhere)).pop();
        async move { found }
    })
    .await;
    assert_eq!(loaded.parent_span_id, "", "{loaded:?}");
    assert_eq!(
        loaded.attribute("loaded"),
        Some(any_value::Value::BoolValue(true)),
        "{loaded:?}"
    );
    assert_eq!(number(loaded.attribute("from")), Some(0), "{loaded:?}");

    // Created here, then written to through the other replica: the follower applies that
    // write, from the sequence it had to the one the write answered with.
    let org = w.create_org("Followed", "ada@here.example").await;
    let (_, admin) = w.accept_and_login(&org, "ada@here.example", "Ada").await;
    let events = w
        .id_audit(&admin)
        .list_change_events(id::ListChangeEventsRequest {
            parent: org.clone(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    // The sequence this replica is at: the organization's last event (all written here).
    let before = events.last().map_or(0, |e| e.sequence);
    let credentials = shared::testkit::clients::Credentials::new(Some(&admin), None);
    let written = id::apps_client::AppsClient::with_interceptor(channel, credentials)
        .create_app(id::CreateAppRequest {
            parent: org.clone(),
            app: Some(id::App {
                display_name: "Written elsewhere".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let to: i64 = written
        .metadata()
        .get("x-consistency-token")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let caught_up = eventually("the span of the write applied", || {
        let found = catch_ups(&collector, &id_of(&org))
            .into_iter()
            .find(|s| number(s.attribute("to")) == Some(to));
        async move { found }
    })
    .await;
    assert_eq!(
        caught_up.attribute("loaded"),
        Some(any_value::Value::BoolValue(false)),
        "{caught_up:?}"
    );
    assert_eq!(
        number(caught_up.attribute("from")),
        Some(before),
        "{caught_up:?}"
    );
}
