//! A PostgreSQL cluster of a test's own: `initdb` in a temporary directory, a free port on
//! 127.0.0.1, optionally TLS with a certificate the test made, started with `pg_ctl` and
//! stopped again when the guard is dropped (also when the test fails). For tests that need a
//! server configured in a way the shared one is not (TLS, faults); everything else uses
//! [`super::pg`].
//!
//! The binaries come from `PG_BIN_DIR`, by default `/usr/lib/postgresql/15/bin`. `initdb`
//! refuses to run as root: as root, the cluster is made and run as the `postgres` user.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::certs::ServerCert;

/// The variable naming the directory of `initdb`, `pg_ctl` and `postgres`.
pub const BIN_VAR: &str = "PG_BIN_DIR";
/// The directory used when [`BIN_VAR`] is unset.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The operating-system user that runs the cluster when the tests run as root.
const SERVICE_USER: &str = "postgres";

/// How the cluster is set up.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Serve TLS with this certificate and key; then only TLS connections over TCP are
    /// accepted (`hostssl` lines only in `pg_hba.conf`).
    pub tls: Option<ServerCert>,
}

/// A running cluster; stopped (`pg_ctl stop -m immediate`) and deleted when dropped.
pub struct PgCluster {
    port: u16,
    data: PathBuf,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    running: bool,
    // Last: removed after the cluster stopped.
    dir: tempfile::TempDir,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("port", &self.port)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl PgCluster {
    /// Makes and starts a cluster (user `postgres`, trust authentication, database
    /// `postgres`) on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// What failed (the command and its output) when the cluster cannot be made or started.
    pub fn start(options: &ClusterOptions) -> Result<Self, String> {
        let bin =
            std::env::var_os(BIN_VAR).map_or_else(|| PathBuf::from(DEFAULT_BIN_DIR), PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("pg-cluster-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let run_as = service_user_if_root()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let mut cluster = Self {
            port: free_port()?,
            data: dir.path().join("data"),
            bin,
            run_as,
            running: false,
            dir,
        };
        cluster.initdb()?;
        cluster.configure(options)?;
        cluster.restart()?;
        Ok(cluster)
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port with the same
    /// data (what a test of a database outage needs). Does nothing when it runs.
    ///
    /// # Errors
    /// What failed (the command, its output and the server log).
    pub fn restart(&mut self) -> Result<(), String> {
        if self.running {
            return Ok(());
        }
        let log = self.dir.path().join("server.log");
        let (data, log) = (path_str(&self.data)?, path_str(&log)?);
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "30", "start"],
        )
        .map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })?;
        self.running = true;
        Ok(())
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@<host>:<port>/<database>`, with `params` (e.g.
    /// `sslmode=verify-full&sslrootcert=/path/ca.pem`) as the query when not empty.
    pub fn url(&self, host: &str, database: &str, params: &str) -> String {
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{params}")
        };
        format!("postgres://postgres@{host}:{}/{database}{query}", self.port)
    }

    /// Stops the cluster (fast: `-m immediate`, it is thrown away). Idempotent.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        if let Ok(data) = path_str(&self.data)
            && let Err(e) = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
        {
            eprintln!("cannot stop the test PostgreSQL cluster: {e}");
        }
    }

    fn initdb(&self) -> Result<(), String> {
        let data = path_str(&self.data)?;
        self.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )
        .map(|_| ())
    }

    /// Appends the port, the listen address, the socket directory, TLS and quick durability
    /// settings to `postgresql.conf`; with TLS, rewrites `pg_hba.conf` to accept only TLS
    /// connections over TCP. `fsync = off` loses data only when the machine stops, which no
    /// test does; `synchronous_commit` stays on, because the outage tests stop the server with
    /// `-m immediate` (a crash) and an acknowledged commit must survive that.
    fn configure(&self, options: &ClusterOptions) -> Result<(), String> {
        let socket_dir = path_str(self.dir.path())?;
        let mut conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket_dir}'\n\
             fsync = off\nfull_page_writes = off\n",
            self.port
        );
        if let Some(tls) = &options.tls {
            let cert = self.copy_in(&tls.cert, "server.crt")?;
            let key = self.copy_in(&tls.key, "server.key")?;
            conf = format!("{conf}ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n");
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
            write_file(&self.data.join("pg_hba.conf"), hba)?;
        }
        let path = self.data.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.push_str(&conf);
        write_file(&path, &text)
    }

    /// Copies `from` into the data directory as `name`, owned by the server's user, mode 0600
    /// (PostgreSQL refuses a key others can read); returns the new path.
    fn copy_in(&self, from: &Path, name: &str) -> Result<String, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let to = self.data.join(name);
        std::fs::copy(from, &to).map_err(|e| format!("copy {}: {e}", from.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", to.display()))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&to, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", to.display()))?;
        }
        path_str(&to)
    }

    /// Runs `<bin>/<program> args` (as the service user when root) and returns its stdout.
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(program);
        let mut command = if self.run_as.is_some() {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVICE_USER, "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{program} {args:?} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The service user's uid and gid when this process runs as root, else `None`.
fn service_user_if_root() -> Result<Option<(u32, u32)>, String> {
    let id = |flag: &str, user: Option<&str>| -> Result<u32, String> {
        let output = Command::new("id")
            .arg(flag)
            .args(user)
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("id {flag} {user:?}: {e}"))
    };
    if id("-u", None)? != 0 {
        return Ok(None);
    }
    Ok(Some((
        id("-u", Some(SERVICE_USER))?,
        id("-g", Some(SERVICE_USER))?,
    )))
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("not UTF-8: {}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
