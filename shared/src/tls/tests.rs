//! TLS through a real server (`crate::server::serve`): plain TLS, mTLS, bad files, reload.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::Code;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::*;
use crate::server::{GrpcSettings, ServeError, serve};

// The test kit's certificate maker (feature `testkit`), compiled into these tests when the
// feature is off.
#[cfg(not(feature = "testkit"))]
#[allow(unreachable_pub, dead_code)]
#[path = "../testkit/certs.rs"]
mod certs;
#[cfg(feature = "testkit")]
use crate::testkit::certs;

use certs::{Leaf, PemDir, TestCa, client_config};

/// Answers every call with NOT_FOUND whose message is what the server knows of the peer:
/// `remote_addr()` and the number of certificates it presented.
#[derive(Debug, Clone)]
struct PeerEcho;

impl tonic::server::NamedService for PeerEcho {
    const NAME: &'static str = "test.v1.PeerEcho";
}

impl tower::Service<http::Request<tonic::body::Body>> for PeerEcho {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let request = tonic::Request::from_parts(
            tonic::metadata::MetadataMap::new(),
            req.extensions().clone(),
            (),
        );
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let certs = request.peer_certs().map_or(0, |c| c.len());
        std::future::ready(Ok(
            tonic::Status::not_found(format!("{peer} {certs}")).into_http()
        ))
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn start(tls: TlsSettings) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let routes = Routes::default().add_service(PeerEcho);
        let names = [<PeerEcho as tonic::server::NamedService>::NAME];
        serve(
            listener,
            routes,
            crate::health::Health::new(&names, &crate::health::HealthSettings::default()),
            &GrpcSettings::default(),
            &tls,
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn tls_channel(addr: SocketAddr, config: ClientTlsConfig) -> Channel {
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// A health check through `config`: `Ok` when the server answered SERVING.
async fn check(addr: SocketAddr, config: ClientTlsConfig) -> Result<(), tonic::Status> {
    let response = HealthClient::new(tls_channel(addr, config))
        .check(HealthCheckRequest::default())
        .await?;
    assert_eq!(response.into_inner().status, 1, "SERVING");
    Ok(())
}

/// Polls `check` until it succeeds, for at most 20 seconds.
async fn eventually_ok(addr: SocketAddr, config: &ClientTlsConfig, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match check(addr, config.clone()).await {
            Ok(()) => return,
            Err(status) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still failing: {status}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What [`PeerEcho`] says of this client: (remote address, number of client certificates).
async fn peer(channel: Channel) -> (String, usize) {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/test.v1.PeerEcho/Echo"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");
    let (addr, certs) = status.message().split_once(' ').unwrap();
    (addr.to_owned(), certs.parse().unwrap())
}

#[test]
fn settings_say_the_transport_or_what_is_missing() {
    let path = |p: &str| Some(std::path::PathBuf::from(p));
    let mut s = TlsSettings::default();
    assert_eq!(s.transport().unwrap(), Transport::Plaintext);
    s.cert_file = path("/c");
    assert!(
        s.transport()
            .unwrap_err()
            .to_string()
            .contains("without tls.key_file")
    );
    s.key_file = path("/k");
    assert_eq!(s.transport().unwrap(), Transport::Tls);
    s.client_ca_file = path("/ca");
    assert_eq!(s.transport().unwrap(), Transport::MutualTls);
    assert_eq!(Transport::MutualTls.to_string(), "mtls");
    s.cert_file = None;
    assert!(s.transport().is_err());
    assert_eq!(s.reload_interval(), Some(Duration::from_secs(2)));
    s.reload_interval_ms = 0;
    assert_eq!(s.reload_interval(), None);
}

#[tokio::test]
async fn a_tls_client_calls_and_the_server_sees_its_address() {
    let ca = TestCa::new("test CA");
    let dir = PemDir::new();
    let server = start(dir.server_settings(&ca, None, 0)).await;
    eventually_ok(server.addr, &client_config(&ca, None), "TLS health check").await;
    let (addr, certs) = peer(tls_channel(server.addr, client_config(&ca, None))).await;
    assert!(
        addr.starts_with("127.0.0.1:"),
        "remote_addr under TLS: {addr:?}"
    );
    assert_eq!(certs, 0);

    // A client trusting another CA does not accept the server; a plain-text client gets
    // nowhere either.
    let other = TestCa::new("other CA");
    assert!(
        check(server.addr, client_config(&other, None))
            .await
            .is_err()
    );
    let plain_channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_lazy();
    let plain = HealthClient::new(plain_channel)
        .check(HealthCheckRequest::default())
        .await;
    assert!(plain.is_err(), "a plain-text call was answered");
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_of_the_ca() {
    let ca = TestCa::new("server CA");
    let clients = TestCa::new("client CA");
    let dir = PemDir::new();
    let server = start(dir.server_settings(&ca, Some(&clients), 0)).await;
    let signed = clients.client("portal-sync");
    eventually_ok(
        server.addr,
        &client_config(&ca, Some(&signed)),
        "mTLS health check",
    )
    .await;

    // TLS 1.3: the client learns of the refusal from the server's alert, on its first call.
    let refused = check(server.addr, client_config(&ca, None))
        .await
        .unwrap_err();
    let text = format!("{refused:?}");
    assert!(text.contains("fatal alert: CertificateRequired"), "{text}");
    let stranger = TestCa::new("stranger").client("intruder");
    let refused = check(server.addr, client_config(&ca, Some(&stranger)))
        .await
        .unwrap_err();
    let text = format!("{refused:?}");
    assert!(text.contains("fatal alert"), "{text}");

    let (addr, certs) = peer(tls_channel(server.addr, client_config(&ca, Some(&signed)))).await;
    assert!(addr.starts_with("127.0.0.1:"), "{addr:?}");
    assert_eq!(certs, 1, "peer_certs() holds the client's certificate");
}

#[tokio::test]
async fn bad_files_stop_the_start_and_a_bad_reload_keeps_the_certificate() {
    let ca = TestCa::new("test CA");
    let dir = PemDir::new();
    let settings = dir.server_settings(&ca, None, 0);
    let good: Leaf = ca.server();
    dir.write_leaf("server", &good);
    let tls = ServerTls::load(&settings).unwrap().unwrap();

    // A key of another certificate, then a file that is no PEM: refused, the old one stays.
    dir.write("server.key", &ca.server().key_pem);
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("TLS configuration refused"), "{err}");
    dir.write("server.pem", "not a certificate");
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("server.pem holds no certificate"), "{err}");
    assert!(!err.contains("PRIVATE"), "{err}");
    let err = ServerTls::load(&settings).unwrap_err().to_string();
    assert!(err.contains("server.pem"), "{err}");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(Routes::default().add_service(PeerEcho))
            .serve_with_incoming(tls.incoming(listener)),
    );
    let (seen, _) = peer(tls_channel(addr, client_config(&ca, None))).await;
    assert!(
        seen.starts_with("127.0.0.1:"),
        "the old certificate still serves"
    );
    served.abort();

    let missing = TlsSettings {
        key_file: Some(dir.path("nope.key")),
        ..settings
    };
    let err = ServerTls::load(&missing).unwrap_err().to_string();
    assert!(
        err.contains("cannot read") && err.contains("nope.key"),
        "{err}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_the_client_ca() {
    let old_ca = TestCa::new("old CA");
    let dir = PemDir::new();
    let old_clients = TestCa::new("old clients");
    // No polling: only SIGHUP can reload.
    let server = start(dir.server_settings(&old_ca, Some(&old_clients), 0)).await;
    let old_client = old_clients.client("c");
    eventually_ok(
        server.addr,
        &client_config(&old_ca, Some(&old_client)),
        "start",
    )
    .await;

    let new_ca = TestCa::new("new CA");
    let new_clients = TestCa::new("new clients");
    dir.write_leaf("server", &new_ca.server());
    dir.write("client-ca.pem", &new_clients.pem());
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let new_client = new_clients.client("c");
    eventually_ok(
        server.addr,
        &client_config(&new_ca, Some(&new_client)),
        "after SIGHUP",
    )
    .await;
    assert!(
        check(server.addr, client_config(&new_ca, Some(&old_client)))
            .await
            .is_err(),
        "a client of the old client CA is refused after the reload"
    );
}
