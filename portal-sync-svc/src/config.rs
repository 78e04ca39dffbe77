//! Configuration of portal-sync, layered from least to most specific:
//!
//! 1. built-in defaults ([`Settings::default`]): listen on `127.0.0.1:50052`, SQLite in
//!    `./data/portal`, identity at `http://127.0.0.1:50051`;
//! 2. an optional TOML file named with `--config <path>` (a missing file is an error);
//! 3. environment variables prefixed `PORTAL_`, with `__` for nesting, e.g.
//!    `PORTAL_DATABASE_URL`, `PORTAL_SERVICE_TOKENS=[tok1,tok2]`, `PORTAL_SYNC__IDENTITY_URL`,
//!    `PORTAL_GRPC__CONCURRENCY_LIMIT`;
//! 4. command-line flags (`--listen`, `--data-dir`, `--database-url`, `--database-url-file`,
//!    `--identity-url`, `--log-format`, `--metrics-listen`, `--otlp-endpoint` (and `--otlp-ca-file`,
//!    `--otlp-cert-file`, `--otlp-key-file`),
//!    `--tls-cert-file`, `--tls-key-file`, `--tls-client-ca-file`, `--identity-ca-file`,
//!    `--identity-cert-file`, `--identity-key-file`);
//!
//! then each secret given as a file (`database_url_file`, `operator_token_file`,
//! `service_tokens_file`) is read ([`Settings::read_secret_files`]).
//!
//! Secrets (the operator and service tokens, a password inside the database URL) never appear
//! in the `Debug` output of [`Settings`], so the whole configuration can be logged at start-up.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use figment::Figment;
use serde::{Deserialize, Serialize};
use shared::auth::Secret;
use shared::bootstrap::ServiceSettings;
use shared::cli::{CommonArgs, CommonFlags};
use shared::health::HealthSettings;
use shared::secret_file::{self, SecretFileError};
use shared::server::GrpcSettings;
use shared::telemetry::LogFormat;
use shared::tls::TlsSettings;
use shared::traces::TelemetrySettings;

use crate::sync::SyncSettings;

// Shared with the other service; re-exported under their historical paths.
pub use shared::config::{ConfigError, Database, redact_url};

/// Prefix of the environment variables read by [`Settings::load`].
pub const ENV_PREFIX: &str = "PORTAL_";
/// Default gRPC listen address.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50052);
/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "./data/portal";
/// Name of the SQLite database file inside the data directory.
pub const SQLITE_FILE: &str = "portal.db";

/// The command line of `portal-sync-svc`: the flags every service has ([`CommonArgs`], with
/// this service's defaults in their help) and `--identity-url`. Every flag overrides the file
/// and the environment.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "portal-sync-svc",
    version,
    about = "Customer Portal team records derived from the identity service",
    mut_arg("listen", |a| a.help("gRPC listen address [default: 127.0.0.1:50052]")),
    mut_arg("data_dir", |a| a.help(
        "Data directory: SQLite database, operator token file [default: ./data/portal]"
    )),
    mut_arg("metrics_listen", |a| a.help(
        "Serve Prometheus metrics on this address, e.g. 127.0.0.1:9465 [default: off]"
    )),
    // Listed after `--database-url` and `--database-url-file`.
    mut_arg("identity_url", |a| a.display_order(4)),
)]
pub struct Args {
    /// The flags every service has.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The identity service [default: http://127.0.0.1:50051].
    #[arg(long, value_name = "URL")]
    pub identity_url: Option<String>,
    /// CA certificates (PEM) identity's certificate must be signed by (https:// only).
    #[arg(long, value_name = "PATH")]
    pub identity_ca_file: Option<PathBuf>,
    /// Certificate chain (PEM) presented to identity (mTLS); needs --identity-key-file.
    #[arg(long, value_name = "PATH")]
    pub identity_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --identity-cert-file.
    #[arg(long, value_name = "PATH")]
    pub identity_key_file: Option<PathBuf>,
}

/// The `sync` part of the flags.
#[derive(Serialize)]
#[expect(clippy::struct_field_names, reason = "the keys of the settings")]
struct SyncFlags<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_ca_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_cert_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_key_file: Option<&'a Path>,
}

impl SyncFlags<'_> {
    fn is_empty(&self) -> bool {
        self.identity_url.is_none()
            && self.identity_ca_file.is_none()
            && self.identity_cert_file.is_none()
            && self.identity_key_file.is_none()
    }
}

/// The flags that were given, as a figment layer (absent flags leave lower layers alone).
#[derive(Serialize)]
struct FlagLayer<'a> {
    #[serde(flatten)]
    common: CommonFlags<'a>,
    #[serde(skip_serializing_if = "SyncFlags::is_empty")]
    sync: SyncFlags<'a>,
}

/// Everything portal-sync can be configured with. Every field has a default, so an empty file
/// (or none) is a valid configuration.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// gRPC listen address (default `127.0.0.1:50052`).
    pub listen: SocketAddr,
    /// Data directory (default `./data/portal`): the SQLite database and the generated operator
    /// token file. Created if missing.
    pub data_dir: PathBuf,
    /// A `postgres://` (or `postgresql://`) URL selects PostgreSQL; unset (or empty) means the
    /// SQLite file `<data_dir>/portal.db`.
    pub database_url: Option<String>,
    /// A file holding the database URL (trimmed), instead of `database_url`.
    pub database_url_file: Option<PathBuf>,
    /// The operator token. Unset: read from `<data_dir>/operator-token`, generated there
    /// (mode 0600) on first start.
    pub operator_token: Option<Secret>,
    /// A file holding the operator token (trimmed), instead of `operator_token`.
    pub operator_token_file: Option<PathBuf>,
    /// The tokens of the internal services that call the API (acting for people named in
    /// `x-acting-for`). Empty: no service can call.
    pub service_tokens: Vec<Secret>,
    /// A file holding the service tokens, one per line, instead of `service_tokens`.
    pub service_tokens_file: Option<PathBuf>,
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
    /// The sync with identity.
    pub sync: SyncSettings,
    /// The key file sealing the ODC identity tokens stored in the database (one
    /// `<key id> <base64 of 32 bytes>` per line, the first one seals; see `shared::sealing`
    /// and the README's security section for rotation). Unset: `<data_dir>/token-keys`,
    /// generated on first start (mode 0600). Replicas sharing a database need the same file.
    pub token_keys_file: Option<PathBuf>,
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
            service_tokens: Vec::new(),
            service_tokens_file: None,
            log_format: LogFormat::default(),
            metrics_listen: None,
            grpc: GrpcSettings::default(),
            tls: TlsSettings::default(),
            health: HealthSettings::default(),
            telemetry: TelemetrySettings::default(),
            sync: SyncSettings::default(),
            token_keys_file: None,
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
            .field("service_tokens", &self.service_tokens)
            .field("service_tokens_file", &self.service_tokens_file)
            .field("log_format", &self.log_format)
            .field("metrics_listen", &self.metrics_listen)
            .field("grpc", &self.grpc)
            .field("tls", &self.tls)
            .field("health", &self.health)
            .field("telemetry", &self.telemetry)
            .field("sync", &self.sync)
            .field("token_keys_file", &self.token_keys_file)
            .finish()
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

impl Settings {
    /// Parses the process's command line and loads the layered configuration.
    ///
    /// Exits the process on `--help`, `--version` or a malformed command line (clap's usual
    /// behaviour).
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_args(&Args::parse())
    }

    /// Loads defaults → `args.config` → `PORTAL_*` environment → `args` flags, then reads
    /// the `*_file` settings ([`Settings::read_secret_files`]).
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let mut settings: Self = Self::figment(args).extract()?;
        settings.read_secret_files()?;
        Ok(settings)
    }

    /// Sets each secret setting given as a file (`database_url_file`, `operator_token_file`,
    /// `service_tokens_file`: one token per line) from that file's trimmed content; a secret
    /// given both ways is an error naming it. [`Settings::from_args`] calls it once; the
    /// `*_file` paths stay (they are logged, the secrets are not).
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
        self.service_tokens = secret_file::resolve_list(
            "service_tokens",
            std::mem::take(&mut self.service_tokens),
            self.service_tokens_file.as_deref(),
        )?;
        Ok(())
    }

    /// The layered configuration sources, for callers that want to add their own layer.
    pub fn figment(args: &Args) -> Figment {
        let flags = FlagLayer {
            common: args.common.flags(),
            sync: SyncFlags {
                identity_url: args.identity_url.as_deref(),
                identity_ca_file: args.identity_ca_file.as_deref(),
                identity_cert_file: args.identity_cert_file.as_deref(),
                identity_key_file: args.identity_key_file.as_deref(),
            },
        };
        shared::config::figment(args.common.config.as_deref(), ENV_PREFIX, flags)
    }

    /// The database to open: PostgreSQL for a `postgres://` or `postgresql://` URL, otherwise
    /// the SQLite file `<data_dir>/portal.db`.
    pub fn database(&self) -> Database {
        Database::select(self.database_url.as_deref(), &self.data_dir, SQLITE_FILE)
    }
}

#[cfg(test)]
mod tests {
    use shared::testkit::env::{in_child, run_in_child};

    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("portal-sync-svc").chain(list.iter().copied()))
            .unwrap()
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_without_file_env_or_flags() {
        let s = Settings::default();
        assert_eq!(s.listen, "127.0.0.1:50052".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("./data/portal"));
        assert_eq!(
            s.database(),
            Database::Sqlite(PathBuf::from("./data/portal/portal.db"))
        );
        assert!(s.operator_token.is_none());
        assert!(s.service_tokens.is_empty());
        assert_eq!(s.sync.identity_url, "http://127.0.0.1:50051");
        let file = toml_file("");
        let path = file.path().to_str().unwrap();
        let loaded = Settings::from_args(&args(&["--config", path])).unwrap();
        assert_eq!(format!("{loaded:?}"), format!("{s:?}"));
    }

    #[test]
    fn help_lists_every_flag_with_this_services_defaults() {
        use clap::CommandFactory as _;
        let help = Args::command().render_help().to_string();
        let flags: Vec<&str> = help
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            flags,
            [
                "config",
                "listen",
                "data-dir",
                "database-url",
                "database-url-file",
                "identity-url",
                "log-format",
                "metrics-listen",
                "otlp-endpoint",
                "otlp-ca-file",
                "otlp-cert-file",
                "otlp-key-file",
                "tls-cert-file",
                "tls-key-file",
                "tls-client-ca-file",
                "identity-ca-file",
                "identity-cert-file",
                "identity-key-file",
            ],
            "{help}"
        );
        for default in [
            "[default: 127.0.0.1:50052]",
            "[default: ./data/portal]",
            "[default: http://127.0.0.1:50051]",
            "e.g. 127.0.0.1:9465 [default: off]",
        ] {
            assert!(help.contains(default), "{default} missing from:\n{help}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = toml_file(
            r#"
            listen = "127.0.0.1:7000"
            data_dir = "/srv/file"
            service_tokens = ["psync_svc_a", "psync_svc_b"]
            [sync]
            identity_url = "http://identity:1"
            backoff_max_ms = 100
            "#,
        );
        let path = file.path().to_str().unwrap();
        let s = Settings::from_args(&args(&["--config", path])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(s.service_tokens.len(), 2);
        assert_eq!(s.service_tokens[1].expose(), "psync_svc_b");
        assert_eq!(s.sync.identity_url, "http://identity:1");
        assert_eq!(s.sync.backoff_max_ms, 100);
        let s = Settings::from_args(&args(&[
            "--config",
            path,
            "--listen",
            "127.0.0.1:7001",
            "--identity-url",
            "http://identity:2",
            "--database-url",
            "postgres://p@127.0.0.1:5432/portal",
        ]))
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(s.sync.identity_url, "http://identity:2");
        assert_eq!(
            s.sync.backoff_max_ms, 100,
            "file values without a flag stay"
        );
        assert!(matches!(s.database(), Database::Postgres(_)));
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_the_environment() {
        if !in_child() {
            run_in_child(
                "config::tests::environment_overrides_the_file_and_flags_override_the_environment",
                &[
                    ("PORTAL_DATA_DIR", "/srv/env"),
                    ("PORTAL_SERVICE_TOKENS", "[psync_svc_env]"),
                    ("PORTAL_SYNC__IDENTITY_URL", "http://identity:3"),
                    ("PORTAL_HEALTH__PROBE_TIMEOUT_MS", "300"),
                    ("PORTAL_OPERATOR_TOKEN", "psync_op_env"),
                    ("PORTAL_SYNC__REPLICA_ID", "portal-1"),
                    ("PORTAL_SYNC__LEASE_TTL_MS", "4000"),
                ],
            );
            return;
        }
        let file = toml_file(
            "data_dir = \"/srv/file\"\n[health]\nprobe_interval_ms = 400\nprobe_timeout_ms = 900\n",
        );
        let path = file.path().to_str().unwrap();
        let s = Settings::from_args(&args(&["--config", path])).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/env"));
        assert_eq!(
            (s.health.probe_interval_ms, s.health.probe_timeout_ms),
            (400, 300)
        );
        assert_eq!(s.service_tokens.len(), 1);
        assert_eq!(s.service_tokens[0].expose(), "psync_svc_env");
        assert_eq!(s.sync.identity_url, "http://identity:3");
        assert_eq!(
            (s.sync.replica_id.as_str(), s.sync.lease_ttl_ms),
            ("portal-1", 4000)
        );
        assert_eq!(
            s.operator_token.as_ref().map(Secret::expose),
            Some("psync_op_env")
        );
        let s = Settings::from_args(&args(&["--identity-url", "http://identity:4"])).unwrap();
        assert_eq!(s.sync.identity_url, "http://identity:4");
    }

    #[test]
    fn tls_settings_from_the_environment_and_flags() {
        if !in_child() {
            run_in_child(
                "config::tests::tls_settings_from_the_environment_and_flags",
                &[
                    ("PORTAL_TLS__CERT_FILE", "/etc/portal/cert.pem"),
                    ("PORTAL_TLS__KEY_FILE", "/etc/portal/key.pem"),
                    ("PORTAL_TLS__RELOAD_INTERVAL_MS", "500"),
                    ("PORTAL_SYNC__IDENTITY_URL", "https://identity:50051"),
                    (
                        "PORTAL_SYNC__IDENTITY_CA_FILE",
                        "/etc/portal/identity-ca.pem",
                    ),
                ],
            );
            return;
        }
        let s = Settings::from_args(&args(&[])).unwrap();
        assert_eq!(s.tls.cert_file, Some(PathBuf::from("/etc/portal/cert.pem")));
        assert_eq!(s.tls.key_file, Some(PathBuf::from("/etc/portal/key.pem")));
        assert_eq!(s.tls.reload_interval_ms, 500);
        assert_eq!(s.tls.transport().unwrap(), shared::tls::Transport::Tls);
        assert!(s.sync.identity_uses_tls());
        assert!(s.sync.check_tls().is_ok());
        let s = Settings::from_args(&args(&[
            "--tls-client-ca-file",
            "/etc/portal/clients.pem",
            "--identity-cert-file",
            "/etc/portal/client.pem",
            "--identity-key-file",
            "/etc/portal/client.key",
        ]))
        .unwrap();
        assert_eq!(
            s.tls.transport().unwrap(),
            shared::tls::Transport::MutualTls
        );
        assert_eq!(
            s.sync.identity_ca_file,
            Some(PathBuf::from("/etc/portal/identity-ca.pem")),
            "the environment stays where no flag is given"
        );
        assert_eq!(
            s.sync.identity_key_file,
            Some(PathBuf::from("/etc/portal/client.key"))
        );
        assert!(s.sync.check_tls().is_ok());
    }

    #[test]
    fn rejects_a_missing_config_file_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(Settings::from_args(&args(&["--config", missing.to_str().unwrap()])).is_err());
        let file = toml_file("listen = \"not an address\"");
        assert!(Settings::from_args(&args(&["--config", file.path().to_str().unwrap()])).is_err());
    }

    #[test]
    fn secrets_come_from_files_and_both_ways_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let url = write("url", "postgres://app:from-file@db/portal\n");
        let operator = write("operator", " psync_op_file \n");
        let services = write("services", "psync_svc_a\n\npsync_svc_b\n");
        let config = toml_file(&format!(
            "operator_token_file = \"{operator}\"\nservice_tokens_file = \"{services}\"\n"
        ));
        let path = config.path().to_str().unwrap();
        let s =
            Settings::from_args(&args(&["--config", path, "--database-url-file", &url])).unwrap();
        assert_eq!(
            s.database_url.as_deref(),
            Some("postgres://app:from-file@db/portal")
        );
        assert_eq!(
            s.operator_token.as_ref().map(Secret::expose),
            Some("psync_op_file")
        );
        let tokens: Vec<&str> = s.service_tokens.iter().map(Secret::expose).collect();
        assert_eq!(tokens, ["psync_svc_a", "psync_svc_b"]);
        assert!(!format!("{s:?}").contains("psync_svc_a"));

        let config = toml_file(&format!(
            "service_tokens = [\"psync_svc_inline\"]\nservice_tokens_file = \"{services}\"\n"
        ));
        let err = Settings::from_args(&args(&["--config", config.path().to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("service_tokens and service_tokens_file are both set"),
            "{err}"
        );
        assert!(!err.contains("psync_svc"), "{err}");
    }

    #[test]
    fn secret_files_from_the_environment() {
        if !in_child() {
            let dir = tempfile::tempdir().unwrap();
            let services = dir.path().join("services");
            std::fs::write(&services, "psync_svc_env_file\n").unwrap();
            let url = dir.path().join("url");
            std::fs::write(&url, "postgres://p:pw@db/portal\n").unwrap();
            run_in_child(
                "config::tests::secret_files_from_the_environment",
                &[
                    ("PORTAL_SERVICE_TOKENS_FILE", services.to_str().unwrap()),
                    ("PORTAL_DATABASE_URL_FILE", url.to_str().unwrap()),
                    ("PORTAL_DATABASE_URL", "postgres://p@elsewhere/portal"),
                ],
            );
            return;
        }
        // The URL is set both ways: an error naming it.
        let err = Settings::from_args(&args(&[])).unwrap_err().to_string();
        assert!(err.contains("database_url and database_url_file"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
        let mut s: Settings = Settings::figment(&args(&[])).extract().unwrap();
        s.database_url = None;
        s.read_secret_files().unwrap();
        assert_eq!(s.service_tokens[0].expose(), "psync_svc_env_file");
        assert_eq!(s.database_url.as_deref(), Some("postgres://p:pw@db/portal"));
    }

    #[test]
    fn debug_hides_tokens_and_database_password() {
        let s = Settings {
            operator_token: Some(Secret::new("psync_op_supersecret")),
            service_tokens: vec![Secret::new("psync_svc_topsecret")],
            database_url: Some("postgres://app:hunter2@db:5432/portal".into()),
            ..Settings::default()
        };
        let text = format!("{s:?} {:?} {}", s.database(), s.database());
        assert!(!text.contains("supersecret"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://app:***@db:5432/portal"), "{text}");
    }
}
