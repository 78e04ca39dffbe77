//! Logging setup: `tracing` events to stdout, human-readable or as JSON lines (and, with
//! traces on, the OpenTelemetry layer of [`crate::traces`]).
//!
//! Pretty output is for development; JSON is for production log pipelines. Verbosity comes
//! from `RUST_LOG` (standard `EnvFilter` directives such as `info,identity_svc=debug`) and
//! defaults to `info`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Output format of the log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Multi-field human-readable lines (the default).
    #[default]
    Pretty,
    /// One JSON object per event, for log shippers.
    Json,
}

/// The text was neither `pretty` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}; expected \"pretty\" or \"json\"")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    /// Parses `pretty` or `json`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("pretty") {
            Ok(Self::Pretty)
        } else if s.eq_ignore_ascii_case("json") {
            Ok(Self::Json)
        } else {
            Err(UnknownLogFormat(s.to_owned()))
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pretty => "pretty",
            Self::Json => "json",
        })
    }
}

/// Installs the global `tracing` subscriber.
///
/// The filter comes from `RUST_LOG`, falling back to `info` when it is unset or invalid.
/// Only the first call in a process has an effect; later calls (e.g. from several tests) are
/// silently ignored.
pub fn init(format: LogFormat) {
    install(format, false);
}

/// [`init`], plus the OpenTelemetry layer that turns the services' spans into the traces of
/// [`crate::traces`] (what a service adopted is exported; see there). Its own filter: the
/// workspace's crates at `info`, whatever `RUST_LOG` says of the log lines.
pub fn init_with_traces(format: LogFormat) {
    install(format, true);
}

fn install(format: LogFormat, traces: bool) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = traces.then(|| {
        let ours = tracing_subscriber::filter::Targets::new()
            .with_target("identity_svc", tracing::Level::INFO)
            .with_target("portal_sync_svc", tracing::Level::INFO)
            .with_target("shared", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(crate::traces::ServiceRouter::new())
            .with_tracked_inactivity(false)
            .with_filter(ours)
    });
    let registry = tracing_subscriber::registry().with(otel);
    // An error only means a global subscriber is already set, which is fine.
    let _ = match format {
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_filter(filter))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_filter(filter))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("pretty".parse::<LogFormat>().unwrap(), LogFormat::Pretty);
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!(LogFormat::Json.to_string(), "json");
        let f: LogFormat = serde_json::from_str(r#""json""#).unwrap();
        assert_eq!(f, LogFormat::Json);
    }

    #[test]
    fn init_twice_is_harmless() {
        init(LogFormat::Json);
        init(LogFormat::Pretty);
    }
}
