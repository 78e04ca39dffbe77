//! The server's request timeout on the wire: a call not answered within
//! `grpc.request_timeout_secs`, or within the client's shorter `grpc-timeout`, is
//! DEADLINE_EXCEEDED with `ErrorInfo { reason: "DEADLINE_EXCEEDED", domain: "identity.odc" }`.
//!
//! The call that cannot be answered in time is a GetUser whose request message never comes: the
//! client opens the call and keeps its request stream open without sending anything, so no
//! handler can answer before the deadline, however fast the machine. The client's `grpc-timeout`
//! is sent over a bare HTTP/2 connection: tonic's client would end the call itself at that
//! moment, so its answer would race the server's.

use std::time::Duration;

use shared::codec::ProtoCodec;
use shared::proto::identity::v1 as pb;
use tokio::time::Instant;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_types::StatusExt as _;

use crate::helpers::*;

crate::api_tests!(
    a_call_past_the_request_timeout_is_deadline_exceeded_with_error_info,
    a_shorter_client_timeout_is_deadline_exceeded_with_error_info,
);

/// A `Users/GetUser` call whose request never arrives; its status once the server answers.
async fn get_user_never_sent(app: &TestApp) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let request = tonic::Request::new(tokio_stream::pending::<pb::GetUserRequest>());
    let answer = grpc
        .client_streaming(
            request,
            PathAndQuery::from_static("/identity.v1.Users/GetUser"),
            ProtoCodec::<pb::GetUserRequest, pb::User>::default(),
        )
        .await;
    match answer {
        Ok(user) => panic!("a GetUser without its request answered {user:?}"),
        Err(status) => status,
    }
}

/// A request body that never sends anything and never ends.
struct NeverSent;

impl hyper::body::Body for NeverSent {
    type Data = tonic::codegen::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// [`get_user_never_sent`] over a bare HTTP/2 connection with `grpc-timeout: {grpc_timeout}`;
/// the status the server answers (trailers-only: in the response headers).
async fn get_user_never_sent_bare(app: &TestApp, grpc_timeout: &str) -> tonic::Status {
    let tcp = tokio::net::TcpStream::connect(app.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = tonic::codegen::http::Request::post(format!(
        "http://{}/identity.v1.Users/GetUser",
        app.addr()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", grpc_timeout)
    .body(NeverSent)
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    tonic::Status::from_header_map(response.headers())
        .unwrap_or_else(|| panic!("no status in the answer's headers: {response:?}"))
}

#[track_caller]
fn assert_deadline_exceeded(status: &tonic::Status, limit_ms: u128) {
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, "DEADLINE_EXCEEDED", "{status:?}");
    assert_eq!(info.domain, "identity.odc", "{status:?}");
    assert!(
        status.message().contains(&format!("{limit_ms} ms")),
        "{status:?}"
    );
}

async fn a_call_past_the_request_timeout_is_deadline_exceeded_with_error_info(b: Backend) {
    let app = spawn_app(b).await;
    let quick = app.replica(|s| s.grpc.request_timeout_secs = 1).await;

    let started = Instant::now();
    let status = get_user_never_sent(&quick).await;
    assert_deadline_exceeded(&status, 1000);
    assert!(started.elapsed() >= Duration::from_secs(1), "{status:?}");

    // A call that is answered in time is not affected.
    let org = quick.create_org("Deadlines", "ada@deadlines.example").await;
    assert!(org.starts_with("organizations/"), "{org}");
}

async fn a_shorter_client_timeout_is_deadline_exceeded_with_error_info(b: Backend) {
    // The server's own timeout (30 s by default) is far away: the client's 300 ms decides.
    let app = spawn_app(b).await;
    let status = get_user_never_sent_bare(&app, "300m").await;
    assert_deadline_exceeded(&status, 300);
}
