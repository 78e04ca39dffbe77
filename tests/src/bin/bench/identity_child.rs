//! The identity server as a child process (`__serve-identity`): the child's side
//! ([`serve_child`]) and the parent's handle ([`Server`]: spawn, clients, RSS, CPU time).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::proto::identity::v1 as pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::backend::Backend;
use crate::dataset::Dataset;

pub(crate) type Access = pb::access_client::AccessClient<InterceptedService<Channel, Bearer>>;

pub(crate) const CHILD_MODE: &str = "__serve-identity";

/// The child: serves identity as `identity-svc` does, on 127.0.0.1:0, and writes the bound
/// address to `addr_file`. Args: data dir, database URL (`-`: SQLite in the data dir), address
/// file; `IDENTITY_OPERATOR_TOKEN` from the environment, if set. Stops when its stdin closes
/// (the parent died or is done).
pub(crate) fn serve_child(args: &[String]) {
    let [data_dir, database, addr_file] = args else {
        eprintln!("usage: bench {CHILD_MODE} DATA_DIR DATABASE_URL|- ADDR_FILE");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        shared::telemetry::init(shared::telemetry::LogFormat::Json);
        let listener = tokio::net::TcpListener::bind(crate::listen_addr())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tmp = format!("{addr_file}.tmp");
        std::fs::write(&tmp, addr.to_string()).expect("write address");
        std::fs::rename(&tmp, addr_file).expect("publish address");
        let settings = identity_svc::config::Settings {
            data_dir: PathBuf::from(data_dir),
            database_url: (database != "-").then(|| database.clone()),
            // The fault tests (tests/e2e/faults.rs) create their organization as the operator.
            operator_token: std::env::var("IDENTITY_OPERATOR_TOKEN")
                .ok()
                .map(shared::auth::Secret::new),
            ..identity_svc::config::Settings::default()
        };
        let stdin_closed = async {
            // Blocking read on a thread of its own: EOF when the parent closes the pipe.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            })
            .await;
        };
        if let Err(e) = identity_svc::serve(
            listener,
            settings,
            identity_svc::Dependencies::default(),
            stdin_closed,
        )
        .await
        {
            eprintln!("identity child: {e:#}");
            std::process::exit(1);
        }
    });
}

/// A running identity server child process.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
    /// Seconds from spawn to the first answered request (loading the organization included).
    pub(crate) startup_secs: f64,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) async fn spawn(backend: &Backend, data: &Dataset) -> anyhow::Result<Self> {
        Self::spawn_with(backend, data, &[]).await
    }

    /// Spawns the server through `wrapper` (e.g. valgrind and its options) when not empty.
    pub(crate) async fn spawn_with(
        backend: &Backend,
        data: &Dataset,
        wrapper: &[String],
    ) -> anyhow::Result<Self> {
        let addr_file = backend.dir.path().join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let database = backend
            .pg
            .as_ref()
            .map_or("-".to_owned(), |p| p.url().to_owned());
        let t = Instant::now();
        let exe = std::env::current_exe()?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = command
            .arg(CHILD_MODE)
            .arg(backend.dir.path())
            .arg(&database)
            .arg(&addr_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut server = Self {
            child,
            addr: String::new(),
            startup_secs: 0.0,
        };
        let deadline = Instant::now()
            + if wrapper.is_empty() {
                Duration::from_mins(5)
            } else {
                Duration::from_mins(30)
            };
        while server.addr.is_empty() {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                server.addr = a;
            } else {
                anyhow::ensure!(Instant::now() < deadline, "the server did not bind");
                if let Some(status) = server.child.try_wait()? {
                    anyhow::bail!("the server exited: {status}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let client = server.access(data, 1).await?.remove(0);
        loop {
            let mut c = client.clone();
            match c
                .noop(pb::NoopRequest {
                    parent: data.parent(),
                })
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    if let Some(status) = server.child.try_wait()? {
                        anyhow::bail!("the server exited: {status}");
                    }
                    anyhow::ensure!(Instant::now() < deadline, "the server did not answer: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        server.startup_secs = t.elapsed().as_secs_f64();
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `conns` clients, each on its own HTTP/2 connection, carrying the dataset's token.
    pub(crate) async fn access(&self, data: &Dataset, conns: usize) -> anyhow::Result<Vec<Access>> {
        let bearer = Bearer(format!("Bearer {}", data.token).parse()?);
        let mut out = Vec::with_capacity(conns);
        for _ in 0..conns {
            let channel = Endpoint::from_shared(format!("http://{}", self.addr))?
                .tcp_nodelay(true)
                .connect()
                .await?;
            out.push(pb::access_client::AccessClient::with_interceptor(
                channel,
                bearer.clone(),
            ));
        }
        Ok(out)
    }

    /// (VmRSS, VmHWM) in MB.
    pub(crate) fn rss_mb(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kb = |key: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }

    /// CPU seconds (user + system) the server has used.
    pub(crate) fn cpu_secs(&self) -> f64 {
        cpu_secs(&format!("/proc/{}/stat", self.pid()))
    }
}

/// CPU seconds (user + system) of the process whose `stat` file is `path`.
pub(crate) fn cpu_secs(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state; USER_HZ is 100
    // on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Adds `authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub(crate) struct Bearer(pub(crate) MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}
