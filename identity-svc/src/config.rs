//! Configuration of the identity service, layered from least to most specific:
//!
//! 1. built-in defaults ([`Settings::default`]): listen on `127.0.0.1:50051`, SQLite in
//!    `./data/identity`, invitations written to `./data/identity/mailbox`;
//! 2. an optional TOML file named with `--config <path>` (a missing file is an error: a file
//!    that was asked for and silently ignored would run the service with the wrong settings);
//! 3. environment variables prefixed `IDENTITY_`, with `__` for nesting, e.g.
//!    `IDENTITY_DATABASE_URL`, `IDENTITY_GRPC__CONCURRENCY_LIMIT`, `IDENTITY_SMTP__HOST`;
//! 4. command-line flags (`--listen`, `--data-dir`, `--database-url`, `--log-format`,
//!    `--metrics-listen`).
//!
//! Secrets (the operator token, a password inside the database URL) never appear in the
//! `Debug` output of [`Settings`], so the whole configuration can be logged at start-up.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use figment::Figment;
use serde::{Deserialize, Serialize};
use shared::auth::Secret;
use shared::bootstrap::ServiceSettings;
use shared::cli::CommonArgs;
use shared::server::GrpcSettings;
use shared::telemetry::LogFormat;

// Shared with the other service; re-exported under their historical paths.
pub use shared::config::{ConfigError, Database, redact_url};

/// Prefix of the environment variables read by [`Settings::load`].
pub const ENV_PREFIX: &str = "IDENTITY_";
/// Default gRPC listen address.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50051);
/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./data/identity";
/// Name of the SQLite database file inside the data directory.
pub const SQLITE_FILE: &str = "identity.db";

/// The command line of `identity-svc`: the flags every service has ([`CommonArgs`]), with this
/// service's defaults in their help. Every flag overrides the file and the environment.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "identity-svc",
    version,
    about = "ODC identity and access gRPC service",
    mut_arg("listen", |a| a.help("gRPC listen address [default: 127.0.0.1:50051]")),
    mut_arg("data_dir", |a| a.help(
        "Data directory: SQLite database, operator token file, mailbox [default: ./data/identity]"
    ))
)]
pub struct Args {
    /// The flags both services have.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// An SMTP relay for invitation messages (plain SMTP, meant for a local relay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpSettings {
    /// Relay host name or address.
    pub host: String,
    /// Relay port (default 25).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Sender address, e.g. `ODC <no-reply@example.com>`.
    pub from: String,
}

fn default_smtp_port() -> u16 {
    25
}

/// Everything the identity service can be configured with. Every field has a default, so an
/// empty file (or none) is a valid configuration.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// gRPC listen address (default `127.0.0.1:50051`).
    pub listen: SocketAddr,
    /// Data directory (default `./data/identity`): the SQLite database, the generated operator
    /// token file and the default mailbox. Created if missing.
    pub data_dir: PathBuf,
    /// A `postgres://` (or `postgresql://`) URL selects PostgreSQL; unset (or empty) means the
    /// SQLite file `<data_dir>/identity.db`.
    pub database_url: Option<String>,
    /// The operator token. Unset: read from `<data_dir>/operator-token`, generated there
    /// (mode 0600) on first start.
    pub operator_token: Option<Secret>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Address of the Prometheus metrics endpoint; unset means no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Request timeout and concurrency limit of the gRPC server.
    pub grpc: GrpcSettings,
    /// Deliver invitations through this SMTP relay; unset means the mailbox directory.
    pub smtp: Option<SmtpSettings>,
    /// Directory receiving invitation messages as `.eml` files when no SMTP relay is set
    /// (default `<data_dir>/mailbox`); see [`Settings::mailbox`].
    pub mailbox_dir: Option<PathBuf>,
    /// How often (milliseconds) this replica reads every organization's last sequence from the
    /// database and applies the events other replicas committed (default 100; 0 turns the
    /// follower off, for a single replica). Requests carrying an `x-consistency-token` do not
    /// depend on it: they catch up before they are answered.
    pub follow_interval_ms: u64,
    /// How long (milliseconds) a request carrying an `x-consistency-token` may wait for this
    /// replica to apply it before failing with UNAVAILABLE (default 5000).
    pub consistency_wait_ms: u64,
    /// How long (milliseconds) a cached bearer-token record is trusted before it is read from
    /// the database again (default 5000). Revocations through this replica evict at once, and
    /// the follower evicts what other replicas revoke; this bounds staleness when the follower
    /// is off.
    pub token_cache_ttl_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            operator_token: None,
            log_format: LogFormat::default(),
            metrics_listen: None,
            grpc: GrpcSettings::default(),
            smtp: None,
            mailbox_dir: None,
            follow_interval_ms: 100,
            consistency_wait_ms: 5000,
            token_cache_ttl_ms: 5000,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            // `Secret` prints `***`.
            .field("operator_token", &self.operator_token)
            .field("log_format", &self.log_format)
            .field("metrics_listen", &self.metrics_listen)
            .field("grpc", &self.grpc)
            .field("smtp", &self.smtp)
            .field("mailbox_dir", &self.mailbox_dir)
            .field("follow_interval_ms", &self.follow_interval_ms)
            .field("consistency_wait_ms", &self.consistency_wait_ms)
            .field("token_cache_ttl_ms", &self.token_cache_ttl_ms)
            .finish()
    }
}

impl Settings {
    /// Parses the process's command line and loads the layered configuration.
    ///
    /// Exits the process on `--help`, `--version` or a malformed command line (clap's usual
    /// behaviour).
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_args(&Args::parse())
    }

    /// Loads defaults → `args.config` → `IDENTITY_*` environment → `args` flags.
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        Ok(Self::figment(args).extract()?)
    }

    /// The layered configuration sources, for callers that want to add their own layer.
    pub fn figment(args: &Args) -> Figment {
        shared::config::figment(
            args.common.config.as_deref(),
            ENV_PREFIX,
            args.common.flags(),
        )
    }

    /// The database to open: PostgreSQL for a `postgres://` or `postgresql://` URL, otherwise
    /// the SQLite file `<data_dir>/identity.db`.
    pub fn database(&self) -> Database {
        Database::select(self.database_url.as_deref(), &self.data_dir, SQLITE_FILE)
    }

    /// The mailbox directory: `mailbox_dir`, or `<data_dir>/mailbox`.
    pub fn mailbox(&self) -> PathBuf {
        self.mailbox_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mailbox"))
    }
}

impl ServiceSettings for Settings {
    fn listen(&self) -> SocketAddr {
        self.listen
    }
    fn log_format(&self) -> LogFormat {
        self.log_format
    }
    fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics_listen
    }
}

#[cfg(test)]
mod tests {
    use shared::testkit::env::{in_child, run_in_child};

    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("identity-svc").chain(list.iter().copied())).unwrap()
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_without_file_env_or_flags() {
        let s = Settings::default();
        assert_eq!(s.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("./data/identity"));
        assert_eq!(
            s.database(),
            Database::Sqlite(PathBuf::from("./data/identity/identity.db"))
        );
        assert_eq!(s.mailbox(), PathBuf::from("./data/identity/mailbox"));
        assert!(s.operator_token.is_none());
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.grpc, GrpcSettings::default());
        assert_eq!(s.smtp, None);
        // An empty file is a complete configuration.
        let file = toml_file("");
        let path = file.path().to_str().unwrap();
        let loaded = Settings::from_args(&args(&["--config", path])).unwrap();
        assert_eq!(format!("{loaded:?}"), format!("{s:?}"));
    }

    #[test]
    fn flags_override_the_file() {
        let file = toml_file(
            r#"
            listen = "127.0.0.1:7000"
            data_dir = "/srv/file"
            log_format = "json"
            operator_token = "odc_op_from_file"
            metrics_listen = "127.0.0.1:9000"
            [grpc]
            concurrency_limit = 8
            [smtp]
            host = "relay.local"
            from = "ODC <no-reply@example.com>"
            "#,
        );
        let path = file.path().to_str().unwrap();
        let s = Settings::from_args(&args(&["--config", path])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("/srv/file"));
        assert_eq!(s.mailbox(), PathBuf::from("/srv/file/mailbox"));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.grpc.concurrency_limit, 8);
        assert_eq!(s.grpc.request_timeout_secs, 30);
        assert_eq!(
            s.operator_token.as_ref().map(Secret::expose),
            Some("odc_op_from_file")
        );
        let smtp = s.smtp.unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("relay.local", 25));

        let s = Settings::from_args(&args(&[
            "--config",
            path,
            "--listen",
            "127.0.0.1:7001",
            "--data-dir",
            "/srv/flag",
            "--log-format",
            "pretty",
            "--metrics-listen",
            "127.0.0.1:9999",
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/identity",
        ]))
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("/srv/flag"));
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9999".parse().unwrap()));
        assert!(matches!(s.database(), Database::Postgres(_)));
        assert_eq!(
            s.grpc.concurrency_limit, 8,
            "file values without a flag stay"
        );
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_the_environment() {
        if !in_child() {
            run_in_child(
                "config::tests::environment_overrides_the_file_and_flags_override_the_environment",
                &[
                    ("IDENTITY_DATA_DIR", "/srv/env"),
                    ("IDENTITY_LISTEN", "127.0.0.1:7002"),
                    ("IDENTITY_GRPC__REQUEST_TIMEOUT_SECS", "5"),
                    ("IDENTITY_SMTP__PORT", "2525"),
                    ("IDENTITY_OPERATOR_TOKEN", "odc_op_from_env"),
                    // A variable with the prefix that is no setting is ignored, not an error.
                    ("IDENTITY_NOT_A_SETTING", "1"),
                ],
            );
            return;
        }
        let file = toml_file(
            r#"
            data_dir = "/srv/file"
            [grpc]
            concurrency_limit = 8
            request_timeout_secs = 60
            [smtp]
            host = "relay.local"
            from = "no-reply@example.com"
            "#,
        );
        let path = file.path().to_str().unwrap();
        let s =
            Settings::from_args(&args(&["--config", path, "--listen", "127.0.0.1:7001"])).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/env"));
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(s.grpc.request_timeout_secs, 5);
        assert_eq!(s.grpc.concurrency_limit, 8);
        assert_eq!(s.smtp.map(|m| m.port), Some(2525));
        assert_eq!(
            s.operator_token.as_ref().map(Secret::expose),
            Some("odc_op_from_env")
        );
        let s = Settings::from_args(&args(&["--config", path])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7002".parse().unwrap());
        // The environment alone cannot make a half SMTP section complete.
        assert!(Settings::from_args(&args(&[])).is_err());
    }

    #[test]
    fn rejects_a_missing_config_file_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(Settings::from_args(&args(&["--config", missing.to_str().unwrap()])).is_err());
        let file = toml_file("listen = \"not an address\"");
        let err =
            Settings::from_args(&args(&["--config", file.path().to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        let file = toml_file("log_format = \"yaml\"");
        assert!(Settings::from_args(&args(&["--config", file.path().to_str().unwrap()])).is_err());
        assert!(Args::try_parse_from(["identity-svc", "--log-format", "yaml"]).is_err());
        assert!(Args::try_parse_from(["identity-svc", "--listen", "nowhere"]).is_err());
    }

    #[test]
    fn debug_hides_the_operator_token_and_database_password() {
        let s = Settings {
            operator_token: Some(Secret::new("odc_op_supersecret")),
            database_url: Some("postgres://app:hunter2@db:5432/identity".into()),
            ..Settings::default()
        };
        let text = format!("{s:?} {:?} {}", s.database(), s.database());
        assert!(!text.contains("supersecret"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("postgres://app:***@db:5432/identity"),
            "{text}"
        );
    }
}
