//! Logging setup: `tracing` events to stdout, human-readable or as JSON lines.
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // An error only means a global subscriber is already set, which is fine.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
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
