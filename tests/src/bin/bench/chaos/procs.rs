//! The chaos suite's processes: identity and portal-sync children that a fault kills with
//! SIGKILL and that come back on the port they had (so portal-sync and the load generator find
//! them again), and the PostgreSQL cluster of the suite's own that it stops and starts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::LISTEN_ENV;

/// How long a (re)started child may take to accept connections.
const START_DEADLINE: Duration = Duration::from_mins(2);

/// One child process of this binary, restartable on the same port.
pub(crate) struct Proc {
    pub(crate) label: &'static str,
    /// The mode and its arguments (`__serve-identity DATA_DIR DATABASE ADDR_FILE`, …).
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub(crate) port: u16,
    child: Option<Child>,
    pub(crate) starts: u32,
}

impl Proc {
    /// A child of `args` with `env`; not started yet. The address file is the mode's last
    /// required argument but the chaos suite knows the port, so it is a throwaway path.
    pub(crate) fn new(
        label: &'static str,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            label,
            args,
            env,
            port: free_port()?,
            child: None,
            starts: 0,
        })
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A channel that connects lazily and again after the child came back.
    pub(crate) fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr()))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy())
    }

    /// Starts the child and waits until its port accepts connections.
    pub(crate) async fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is running", self.label);
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(&self.args)
            .env(LISTEN_ENV, self.addr())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        self.child = Some(command.spawn()?);
        self.starts += 1;
        let deadline = Instant::now() + START_DEADLINE;
        while tokio::net::TcpStream::connect(self.addr()).await.is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!("{} exited at start: {status}", self.label);
            }
            anyhow::ensure!(Instant::now() < deadline, "{} did not listen", self.label);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// SIGKILL: no drain, no release of anything it holds.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port of 127.0.0.1 free right now (the child binds it; `SO_REUSEADDR` lets it bind it
/// again after a kill).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A throwaway address file for a child (the suite knows the port already).
pub(crate) fn addr_file(dir: &std::path::Path, label: &str) -> PathBuf {
    dir.join(format!("{label}.addr"))
}
