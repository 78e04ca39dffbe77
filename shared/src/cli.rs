//! The command-line flags every service has, and their layer in the configuration.
//!
//! A service flattens [`CommonArgs`] into its own `clap` parser (adding its own flags beside
//! them) and flattens [`CommonFlags`] into the serialized flag layer it gives to
//! [`crate::config::figment`], so a flag that was not given leaves the file and environment
//! values alone. A service's default values go into its help with `mut_arg`:
//!
//! ```
//! use clap::Parser as _;
//! #[derive(clap::Parser)]
//! #[command(name = "demo-svc", mut_arg("listen", |a| a.help("gRPC listen address [default: 127.0.0.1:50051]")))]
//! struct Args {
//!     #[command(flatten)]
//!     common: shared::cli::CommonArgs,
//! }
//! let args = Args::try_parse_from(["demo-svc", "--listen", "127.0.0.1:7000"]).unwrap();
//! assert_eq!(args.common.listen, Some("127.0.0.1:7000".parse().unwrap()));
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::telemetry::LogFormat;

/// The flags both services have. Each overrides the file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file (optional; must exist when given).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory: SQLite database, operator token file.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `postgres://user:password@host:port/database` to use PostgreSQL instead of SQLite.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// A file holding the database URL (trimmed), instead of `--database-url`.
    #[arg(long, value_name = "PATH", conflicts_with = "database_url")]
    pub database_url_file: Option<PathBuf>,
    /// Log format: `pretty` or `json` [default: pretty].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Export traces over OTLP/gRPC to this endpoint, e.g. http://127.0.0.1:4317 [default: off].
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Trust these CA certificates (PEM) for an https:// --otlp-endpoint (required by one).
    #[arg(long, value_name = "PATH")]
    pub otlp_ca_file: Option<PathBuf>,
    /// Present this client certificate (PEM) to the OTLP endpoint; needs --otlp-key-file.
    #[arg(long, value_name = "PATH")]
    pub otlp_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --otlp-cert-file.
    #[arg(long, value_name = "PATH")]
    pub otlp_key_file: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key-file [default: plain text].
    #[arg(long, value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(long, value_name = "PATH")]
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by these CA certificates (PEM): mTLS.
    #[arg(long, value_name = "PATH")]
    pub tls_client_ca_file: Option<PathBuf>,
}

impl CommonArgs {
    /// The flags that were given, as (part of) a figment layer.
    pub fn flags(&self) -> CommonFlags<'_> {
        CommonFlags {
            listen: self.listen,
            data_dir: self.data_dir.as_deref(),
            database_url: self.database_url.as_deref(),
            database_url_file: self.database_url_file.as_deref(),
            log_format: self.log_format,
            metrics_listen: self.metrics_listen,
            telemetry: TelemetryFlags {
                otlp_endpoint: self.otlp_endpoint.as_deref(),
                otlp_ca_file: self.otlp_ca_file.as_deref(),
                otlp_cert_file: self.otlp_cert_file.as_deref(),
                otlp_key_file: self.otlp_key_file.as_deref(),
            },
            tls: TlsFlags {
                cert_file: self.tls_cert_file.as_deref(),
                key_file: self.tls_key_file.as_deref(),
                client_ca_file: self.tls_client_ca_file.as_deref(),
            },
        }
    }
}

/// The given common flags under their settings keys; absent flags are not serialized, so they
/// leave lower layers alone. `#[serde(flatten)]` it into a service's own flag layer.
#[derive(Debug, Clone, Serialize)]
pub struct CommonFlags<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "TelemetryFlags::is_empty")]
    telemetry: TelemetryFlags<'a>,
    #[serde(skip_serializing_if = "TlsFlags::is_empty")]
    tls: TlsFlags<'a>,
}

/// The given `--otlp-*` flags under their keys of [`crate::traces::TelemetrySettings`].
#[derive(Debug, Clone, Serialize)]
#[expect(clippy::struct_field_names, reason = "the keys of the settings")]
struct TelemetryFlags<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_ca_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_cert_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_key_file: Option<&'a Path>,
}

impl TelemetryFlags<'_> {
    fn is_empty(&self) -> bool {
        self.otlp_endpoint.is_none()
            && self.otlp_ca_file.is_none()
            && self.otlp_cert_file.is_none()
            && self.otlp_key_file.is_none()
    }
}

/// The given `--tls-*` flags under the keys of [`crate::tls::TlsSettings`] (the `tls` table).
#[derive(Debug, Clone, Serialize)]
#[expect(clippy::struct_field_names, reason = "the keys of the settings")]
struct TlsFlags<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca_file: Option<&'a Path>,
}

impl TlsFlags<'_> {
    fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none() && self.client_ca_file.is_none()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use serde::Deserialize;

    use super::*;

    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        common: CommonArgs,
        /// A flag of the service's own.
        #[arg(long)]
        identity_url: Option<String>,
    }

    #[derive(Serialize)]
    struct Layer<'a> {
        #[serde(flatten)]
        common: CommonFlags<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        identity_url: Option<&'a str>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default)]
    struct Settings {
        listen: SocketAddr,
        data_dir: PathBuf,
        log_format: LogFormat,
        identity_url: String,
        tls: crate::tls::TlsSettings,
        telemetry: crate::traces::TelemetrySettings,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:1".parse().unwrap(),
                data_dir: PathBuf::from("./data"),
                log_format: LogFormat::Pretty,
                identity_url: "http://default".into(),
                tls: crate::tls::TlsSettings::default(),
                telemetry: crate::traces::TelemetrySettings::default(),
            }
        }
    }

    #[test]
    fn given_flags_override_and_absent_flags_leave_defaults() {
        let args =
            Args::try_parse_from(["svc", "--data-dir", "/srv", "--log-format", "json"]).unwrap();
        let layer = Layer {
            common: args.common.flags(),
            identity_url: args.identity_url.as_deref(),
        };
        let s: Settings = crate::config::figment(None, "SHARED_CLI_TEST_UNUSED_", layer)
            .extract()
            .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv"));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.listen, Settings::default().listen);
        assert_eq!(s.identity_url, "http://default");
        assert_eq!(s.tls, crate::tls::TlsSettings::default());
        assert_eq!(s.telemetry, crate::traces::TelemetrySettings::default());
    }

    #[test]
    fn the_otlp_flags_fill_the_telemetry_table() {
        let args = Args::try_parse_from([
            "svc",
            "--otlp-endpoint",
            "http://collector:4317",
            "--otlp-ca-file",
            "/etc/svc/otlp-ca.pem",
            "--otlp-cert-file",
            "/etc/svc/otlp.pem",
            "--otlp-key-file",
            "/etc/svc/otlp.key",
        ])
        .unwrap();
        let layer = Layer {
            common: args.common.flags(),
            identity_url: None,
        };
        let s: Settings = crate::config::figment(None, "SHARED_CLI_TEST_UNUSED_", layer)
            .extract()
            .unwrap();
        assert_eq!(
            s.telemetry.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(s.telemetry.export_delay_ms, 5000, "the default stays");
        assert_eq!(
            (
                s.telemetry.otlp_ca_file.as_deref(),
                s.telemetry.otlp_cert_file.as_deref(),
                s.telemetry.otlp_key_file.as_deref(),
            ),
            (
                Some(Path::new("/etc/svc/otlp-ca.pem")),
                Some(Path::new("/etc/svc/otlp.pem")),
                Some(Path::new("/etc/svc/otlp.key")),
            )
        );
        assert!(s.telemetry.enabled());
    }

    #[test]
    fn tls_flags_fill_the_tls_table() {
        let args = Args::try_parse_from([
            "svc",
            "--tls-cert-file",
            "/etc/svc/cert.pem",
            "--tls-key-file",
            "/etc/svc/key.pem",
            "--tls-client-ca-file",
            "/etc/svc/ca.pem",
        ])
        .unwrap();
        let layer = Layer {
            common: args.common.flags(),
            identity_url: None,
        };
        let s: Settings = crate::config::figment(None, "SHARED_CLI_TEST_UNUSED_", layer)
            .extract()
            .unwrap();
        assert_eq!(s.tls.cert_file, Some(PathBuf::from("/etc/svc/cert.pem")));
        assert_eq!(s.tls.key_file, Some(PathBuf::from("/etc/svc/key.pem")));
        assert_eq!(s.tls.client_ca_file, Some(PathBuf::from("/etc/svc/ca.pem")));
        assert_eq!(s.tls.reload_interval_ms, 2000, "the default stays");
        assert_eq!(s.tls.transport().unwrap(), crate::tls::Transport::MutualTls);
    }
}
