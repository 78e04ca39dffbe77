//! Configuration of the identity service, layered from least to most specific:
//!
//! 1. built-in defaults ([`Settings::default`]): listen on `127.0.0.1:50051`, SQLite in
//!    `./data/identity`, invitations written to `./data/identity/mailbox`;
//! 2. an optional TOML file named with `--config <path>` (a missing file is an error: a file
//!    that was asked for and silently ignored would run the service with the wrong settings);
//! 3. environment variables prefixed `IDENTITY_`, with `__` for nesting, e.g.
//!    `IDENTITY_DATABASE_URL`, `IDENTITY_GRPC__CONCURRENCY_LIMIT`, `IDENTITY_SMTP__HOST`,
//!    `IDENTITY_LOGIN__HASH_WORKERS`;
//! 4. command-line flags (`--listen`, `--data-dir`, `--database-url`, `--database-url-file`,
//!    `--log-format`, `--metrics-listen`, `--otlp-endpoint` (and `--otlp-ca-file`, `--otlp-cert-file`,
//!    `--otlp-key-file`), `--tls-cert-file`,
//!    `--tls-key-file`, `--tls-client-ca-file`).
//!
//! then each secret given as a file (`database_url_file`, `operator_token_file`,
//! `smtp.password_file`) is read ([`Settings::read_secret_files`]).
//!
//! Secrets (the operator token, a password inside the database URL, the SMTP password) never
//! appear in the `Debug` output of [`Settings`], so the whole configuration can be logged at
//! start-up.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use figment::Figment;
use serde::Deserialize;
use shared::auth::Secret;
use shared::bootstrap::ServiceSettings;
use shared::cli::CommonArgs;
use shared::health::HealthSettings;
use shared::secret_file::{self, SecretFileError};
use shared::server::GrpcSettings;
use shared::telemetry::LogFormat;
use shared::tls::TlsSettings;
use shared::traces::TelemetrySettings;

pub mod login;
pub mod mail;
pub mod oidc;
pub use login::LoginSettings;
pub use mail::MailSettings;
pub use oidc::OidcSettings;

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

/// An SMTP relay for invitation messages.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSettings {
    /// Relay host name or address; with TLS, the name its certificate must carry.
    pub host: String,
    /// Relay port (default 25).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Sender address, e.g. `ODC <no-reply@example.com>`.
    pub from: String,
    /// Transport security (default `none`, for a local relay).
    #[serde(default)]
    pub tls: SmtpTls,
    /// PEM file of the CA certificate(s) the relay's certificate must chain to; unset: the
    /// public web PKI roots (webpki-roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// AUTH user name (PLAIN or LOGIN); needs `tls` and a password.
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the AUTH password (trimmed), instead of `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// How the connection to the SMTP relay is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on the same host or a trusted network.
    #[default]
    None,
    /// Plain connection upgraded with STARTTLS, which the relay must offer (usually port 587).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
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
    /// A file holding the database URL (trimmed), instead of `database_url`.
    pub database_url_file: Option<PathBuf>,
    /// The operator token. Unset: read from `<data_dir>/operator-token`, generated there
    /// (mode 0600) on first start.
    pub operator_token: Option<Secret>,
    /// A file holding the operator token (trimmed), instead of `operator_token`.
    pub operator_token_file: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Address of the Prometheus metrics endpoint; unset means no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Request timeout and concurrency limit of the gRPC server.
    pub grpc: GrpcSettings,
    /// TLS of the gRPC server (certificate, key, client CA for mTLS); unset: plain text.
    pub tls: TlsSettings,
    /// How often, and with what timeout, health probes the service's dependencies.
    pub health: HealthSettings,
    /// OpenTelemetry traces (`[telemetry]`: the OTLP endpoint, off by default; the service
    /// name and resource attributes).
    pub telemetry: TelemetrySettings,
    /// Deliver invitations through this SMTP relay; unset means the mailbox directory.
    pub smtp: Option<SmtpSettings>,
    /// How the invitation mail outbox is drained: polling, claims, retries (`[mail]`).
    pub mail: MailSettings,
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
    /// What bounds the unauthenticated work of Login and AcceptInvitation: the hashing pool,
    /// the per-address rate limit, the waits after wrong passwords (`[login]`).
    pub login: LoginSettings,
    /// How ID tokens of external identity providers are verified (`[oidc]`).
    pub oidc: OidcSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: None,
            database_url_file: None,
            operator_token: None,
            operator_token_file: None,
            log_format: LogFormat::default(),
            metrics_listen: None,
            grpc: GrpcSettings::default(),
            tls: TlsSettings::default(),
            health: HealthSettings::default(),
            telemetry: TelemetrySettings::default(),
            smtp: None,
            mail: MailSettings::default(),
            mailbox_dir: None,
            follow_interval_ms: 100,
            consistency_wait_ms: 5000,
            token_cache_ttl_ms: 5000,
            login: LoginSettings::default(),
            oidc: OidcSettings::default(),
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
            .field("database_url_file", &self.database_url_file)
            // `Secret` prints `***`.
            .field("operator_token", &self.operator_token)
            .field("operator_token_file", &self.operator_token_file)
            .field("log_format", &self.log_format)
            .field("metrics_listen", &self.metrics_listen)
            .field("grpc", &self.grpc)
            .field("tls", &self.tls)
            .field("health", &self.health)
            .field("telemetry", &self.telemetry)
            .field("smtp", &self.smtp)
            .field("mail", &self.mail)
            .field("mailbox_dir", &self.mailbox_dir)
            .field("follow_interval_ms", &self.follow_interval_ms)
            .field("consistency_wait_ms", &self.consistency_wait_ms)
            .field("token_cache_ttl_ms", &self.token_cache_ttl_ms)
            .field("login", &self.login)
            .field("oidc", &self.oidc)
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

    /// Loads defaults → `args.config` → `IDENTITY_*` environment → `args` flags, then reads
    /// the `*_file` settings ([`Settings::read_secret_files`]).
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let mut settings: Self = Self::figment(args).extract()?;
        settings.read_secret_files()?;
        Ok(settings)
    }

    /// Sets each secret setting given as a file (`database_url_file`, `operator_token_file`,
    /// `smtp.password_file`) from that file's trimmed content; a secret given both ways is an
    /// error naming it. [`Settings::from_args`] calls it once; the `*_file` paths stay (they are
    /// logged, the secrets are not).
    pub fn read_secret_files(&mut self) -> Result<(), SecretFileError> {
        self.database_url = secret_file::resolve(
            "database_url",
            self.database_url.take(),
            self.database_url_file.as_deref(),
        )?;
        self.operator_token = secret_file::resolve(
            "operator_token",
            self.operator_token.take(),
            self.operator_token_file.as_deref(),
        )?;
        if let Some(smtp) = &mut self.smtp {
            smtp.password = secret_file::resolve(
                "smtp.password",
                smtp.password.take(),
                smtp.password_file.as_deref(),
            )?;
        }
        Ok(())
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
    fn traces_enabled(&self) -> bool {
        self.telemetry.enabled()
    }
}

#[cfg(test)]
mod tests;
