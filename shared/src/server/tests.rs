//! The server bootstrap through a real server: health, reflection, metrics, drain.

use super::*;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus as Pb};
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

#[test]
fn settings_defaults_apply_to_missing_fields() {
    let s: GrpcSettings = serde_json::from_str(r#"{"concurrency_limit": 8}"#).unwrap();
    assert_eq!(s.request_timeout(), Duration::from_secs(30));
    assert_eq!(s.concurrency_limit, 8);
    assert_eq!(GrpcSettings::default().concurrency_limit, 1024);
}

#[test]
fn status_codes_from_headers() {
    let mut headers = http::HeaderMap::new();
    assert_eq!(grpc_status(&headers), Code::Ok);
    headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    assert_eq!(grpc_status(&headers), Code::InvalidArgument);
    assert_eq!(code_label(Code::InvalidArgument), "3");
    assert_eq!(code_label(Code::Unauthenticated), "16");
}

#[test]
fn call_records_label_codes_cancellations_and_unknown_methods() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    ::metrics::with_local_recorder(&recorder, || {
        CallRecord::start("/a.v1.A/Get").finish(Code::NotFound);
        drop(CallRecord::start("/a.v1.A/Slow"));
        CallRecord::start("/random/path").finish(Code::Unimplemented);
    });
    let text = handle.render();
    for line in [
        r#"grpc_requests_total{method="/a.v1.A/Get",code="5"} 1"#,
        r#"grpc_requests_total{method="/a.v1.A/Slow",code="1"} 1"#,
        r#"grpc_requests_total{method="unknown",code="12"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains("/random/path"), "{text}");
}

/// Serves nothing but health and reflection with `settings`; returns the address, the
/// shutdown trigger and the server task.
async fn start(
    settings: GrpcSettings,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(
            listener,
            Routes::default(),
            Health::new(
                &["test.v1.Dummy"],
                &crate::health::HealthSettings::default(),
            ),
            &settings,
            &crate::tls::TlsSettings::default(),
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    (addr, stop, server)
}

#[tokio::test]
async fn a_stream_left_open_does_not_hold_shutdown_past_the_drain_timeout() {
    let settings = GrpcSettings {
        drain_timeout_secs: 1,
        ..GrpcSettings::default()
    };
    let (addr, stop, server) = start(settings).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // A health Watch never ends on its own: the client keeps it open and reads it.
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, Pb::Serving as i32);
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = watch.message().await {} });

    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), server).await;
    assert!(
        stopped.is_ok(),
        "the server still waits for the open stream long after the drain timeout"
    );
    stopped.unwrap().unwrap().unwrap();
    reader.abort();
}

#[tokio::test]
async fn serves_health_and_reflection_and_reports_not_serving_on_shutdown() {
    let (addr, stop, server) = start(GrpcSettings::default()).await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let mut statuses = std::collections::HashMap::<&str, i32>::new();
    for service in ["", "test.v1.Dummy"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        statuses.insert(service, response.into_inner().status);
    }
    assert!(
        statuses.values().all(|s| *s == Pb::Serving as i32),
        "{statuses:?}"
    );

    // grpcurl 1.8.6 path: v1alpha reflection lists health and both reflection services.
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    drop(responses);

    // google.rpc descriptors are served so grpcurl can print error details.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "google.rpc.BadRequest".into(),
        )),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(MessageResponse::FileDescriptorResponse(_))
        ),
        "{response:?}"
    );
    drop(responses);

    // Unknown methods are answered UNIMPLEMENTED (and counted under method="unknown").
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let err = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/nope.v1.Nope/Nothing"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    let mut watch = health
        .watch(HealthCheckRequest {
            service: "test.v1.Dummy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        Pb::Serving as i32
    );
    stop.send(()).unwrap();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        Pb::NotServing as i32
    );
    drop(watch);
    drop(health);
    drop(reflection);
    drop(grpc);
    drop(channel);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
