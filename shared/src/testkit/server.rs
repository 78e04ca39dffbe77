//! One service started in-process for a test: bound on `127.0.0.1:0` (or the address it had,
//! to restart it), served on a task, waited for until its health check says `SERVING`, and
//! stopped gracefully (or aborted when dropped).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// How long a server may take to bind its port again or to start serving.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The future a service's `serve` gets: it completes when the test stops the server.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a test reaches a server: plain text, or TLS with this client configuration.
#[derive(Debug, Clone, Default)]
pub enum Reach {
    /// `http://`.
    #[default]
    Plain,
    /// `https://` with this configuration (trusted CAs, the client's certificate).
    Tls(ClientTlsConfig),
}

/// A running server.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    reach: Reach,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds `addr` (`None`: a fresh port on 127.0.0.1), runs `serve(listener, shutdown)` on a
    /// task and returns once the server's health check answers `SERVING`.
    ///
    /// # Panics
    /// When the port cannot be bound or the server does not serve within 20 seconds; when
    /// `serve` returns an error (on its task, so the test fails).
    pub async fn start<F, Fut, E>(addr: Option<SocketAddr>, serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self::start_reached(addr, Reach::Plain, serve).await
    }

    /// [`start`](Self::start) for a server reached as `reach` says (its health is checked
    /// that way; [`channel`](Self::channel) connects that way).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub async fn start_reached<F, Fut, E>(addr: Option<SocketAddr>, reach: Reach, serve: F) -> Self
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let listener = bind(addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))).await;
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("bound listener has no address: {e}"));
        let (tx, rx) = oneshot::channel::<()>();
        let served = serve(
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = served.await {
                panic!("server at {addr} failed: {e:#}");
            }
        });
        wait_serving_reached(addr, &reach).await;
        Self {
            addr,
            reach,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A lazily connecting channel to it (TLS if it was started so).
    pub fn channel(&self) -> Channel {
        channel_reached(self.addr, &self.reach)
    }

    /// Asks for a graceful shutdown and waits until the server has exited.
    ///
    /// # Panics
    /// When the server's task panicked (e.g. `serve` failed).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A lazily connecting channel to `addr`.
///
/// # Panics
/// Never for a socket address.
pub fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|e| panic!("bad address {addr}: {e}"))
        .connect_lazy()
}

/// A lazily connecting channel to `addr`, reached as `reach` says (`https://` for TLS; the
/// server's certificate must name `127.0.0.1`).
///
/// # Panics
/// When the TLS configuration is refused.
pub fn channel_reached(addr: SocketAddr, reach: &Reach) -> Channel {
    match reach {
        Reach::Plain => channel(addr),
        Reach::Tls(config) => Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(config.clone()))
            .unwrap_or_else(|e| panic!("bad TLS endpoint {addr}: {e}"))
            .connect_lazy(),
    }
}

/// A lazily connecting channel to `addr` whose connections leave from `source` (e.g.
/// `127.0.0.2`: the loopback interface answers every address of 127.0.0.0/8), so a test or the
/// benchmark can call one server as several client addresses.
///
/// # Panics
/// Never for a socket address.
pub fn channel_from(addr: SocketAddr, source: std::net::IpAddr) -> Channel {
    let connector = tower::service_fn(move |_: tonic::transport::Uri| async move {
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
    });
    Channel::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|e| panic!("bad address {addr}: {e}"))
        .connect_with_connector_lazy(connector)
}

/// Binds `addr`, retrying briefly while a just-stopped server lets the port go.
async fn bind(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("cannot bind {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits (with a deadline, not a sleep) until the server at `addr` reports `SERVING` for the
/// whole server (`grpc.health.v1.Health/Check` of `""`).
///
/// # Panics
/// When it does not within 20 seconds.
pub async fn wait_serving(addr: SocketAddr) {
    wait_serving_reached(addr, &Reach::Plain).await;
}

/// [`wait_serving`] for a server reached as `reach` says.
///
/// # Panics
/// When it does not serve within 20 seconds.
pub async fn wait_serving_reached(addr: SocketAddr, reach: &Reach) {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    let mut health = HealthClient::new(channel_reached(addr, reach));
    loop {
        let serving = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
        if serving {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server at {addr} did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
