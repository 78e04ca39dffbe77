//! Configuration pieces both services share: the layering of the sources, the choice of the
//! database, and keeping passwords in database URLs out of logs.
//!
//! Each service defines its own `Settings`; [`figment()`] layers them the same way everywhere,
//! from least to most specific: the `Settings` defaults (through `#[serde(default)]`), an
//! optional TOML file, the environment variables with the service's prefix (`__` for nesting),
//! and the command-line flags that were given.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::Serialize;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(Box<figment::Error>);

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        Self(Box::new(e))
    }
}

impl From<crate::secret_file::SecretFileError> for ConfigError {
    /// The message names the setting and the file, never the secret.
    fn from(e: crate::secret_file::SecretFileError) -> Self {
        Self(Box::new(figment::Error::from(e.to_string())))
    }
}

/// The configuration sources of a service, least specific first: the TOML file `config_file`
/// if given (a missing file is an error when extracting: a file that was asked for and silently
/// ignored would run the service with the wrong settings), the environment variables prefixed
/// `env_prefix` with `__` for nesting (e.g. `IDENTITY_GRPC__CONCURRENCY_LIMIT`), then `flags`.
///
/// `flags` should skip the flags that were not given, so that they leave lower layers alone.
pub fn figment(config_file: Option<&Path>, env_prefix: &str, flags: impl Serialize) -> Figment {
    let mut figment = Figment::new();
    if let Some(path) = config_file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::prefixed(env_prefix).split("__"))
        .merge(Serialized::defaults(flags))
}

/// Where the data lives. `Debug` and `Display` redact the password of a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite database file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Database {
    /// PostgreSQL for a `postgres://` or `postgresql://` `url` (scheme in any case, surrounding
    /// white space ignored), otherwise the SQLite file `<data_dir>/<sqlite_file>` (also when
    /// `url` is unset, empty or of another scheme).
    pub fn select(url: Option<&str>, data_dir: &Path, sqlite_file: &str) -> Self {
        match url.map(str::trim) {
            Some(url) if is_postgres_url(url) => Self::Postgres(url.to_owned()),
            _ => Self::Sqlite(data_dir.join(sqlite_file)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

impl fmt::Display for Database {
    /// `sqlite:<path>` or the PostgreSQL URL with its password redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

fn is_postgres_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

/// `url` with its password replaced by `***`: in the user info (`user:pass@` → `user:***@`)
/// and in a `password=` query parameter. Anything without a password is returned unchanged.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(url);
    if let Some(scheme_end) = url.find("://") {
        let rest_start = scheme_end + 3;
        let rest = &url[rest_start..];
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            let user = &authority[..colon];
            out = Cow::Owned(format!(
                "{}{user}:***{}",
                &url[..rest_start],
                &url[rest_start + at..]
            ));
        }
    }
    if let Some((base, query)) = out.split_once('?') {
        let (query, fragment) = query
            .split_once('#')
            .map_or((query, None), |(q, f)| (q, Some(f)));
        if query.split('&').any(|p| {
            p.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("password"))
        }) {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            let mut redacted = format!("{base}?{}", query.join("&"));
            if let Some(fragment) = fragment {
                redacted.push('#');
                redacted.push_str(fragment);
            }
            out = Cow::Owned(redacted);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_selects_postgresql() {
        let dir = Path::new("/srv/data");
        let select = |url: Option<&str>| Database::select(url, dir, "svc.db");
        assert_eq!(
            select(Some("postgres://u:p@db:5432/identity")),
            Database::Postgres("postgres://u:p@db:5432/identity".into())
        );
        assert_eq!(
            select(Some("  PostgreSQL://db/x \n")),
            Database::Postgres("PostgreSQL://db/x".into())
        );
        let sqlite = Database::Sqlite(PathBuf::from("/srv/data/svc.db"));
        assert_eq!(select(Some("sqlite:elsewhere.db")), sqlite);
        assert_eq!(select(Some("mysql://db/x")), sqlite);
        assert_eq!(select(Some("")), sqlite);
        assert_eq!(select(None), sqlite);
    }

    #[test]
    fn database_debug_and_display_hide_the_password() {
        let db = Database::Postgres("postgres://app:hunter2@db:5432/identity".into());
        assert_eq!(
            format!("{db:?}"),
            r#"Postgres("postgres://app:***@db:5432/identity")"#
        );
        assert_eq!(db.to_string(), "postgres://app:***@db:5432/identity");
        let db = Database::Sqlite(PathBuf::from("/srv/data/svc.db"));
        assert_eq!(format!("{db:?}"), r#"Sqlite("/srv/data/svc.db")"#);
        assert_eq!(db.to_string(), "sqlite:/srv/data/svc.db");
    }

    #[test]
    fn redacts_passwords_in_urls() {
        for (url, expected) in [
            ("postgres://u:p@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:p%40ss@h:5432/db?sslmode=require",
                "postgres://u:***@h:5432/db?sslmode=require",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=p",
                "postgres://h/db?user=u&password=***",
            ),
            (
                "postgres://u:p@h/db?password=q#f",
                "postgres://u:***@h/db?password=***#f",
            ),
            ("postgres://h/db?a=b:c@d", "postgres://h/db?a=b:c@d"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[derive(Debug, PartialEq, serde::Deserialize, Serialize)]
    struct Layers {
        a: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        b: Option<String>,
    }

    #[test]
    fn flags_override_the_file_and_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("svc.toml");
        std::fs::write(&file, "a = \"file\"\nb = \"file\"\n").unwrap();
        // Environment variables cannot be set safely in a multi-threaded test process; the
        // services test the environment layer in child processes.
        let prefix = "SHARED_CONFIG_TEST_UNSET_";
        let flags = Layers {
            a: "flag".into(),
            b: None,
        };
        let layered: Layers = figment(Some(&file), prefix, &flags).extract().unwrap();
        assert_eq!(
            layered,
            Layers {
                a: "flag".into(),
                b: Some("file".into())
            }
        );
        let flags_only: Layers = figment(None, prefix, &flags).extract().unwrap();
        assert_eq!(flags_only, flags);

        let missing = dir.path().join("nope.toml");
        let err = ConfigError::from(
            figment(Some(&missing), prefix, &flags)
                .extract::<Layers>()
                .unwrap_err(),
        );
        assert!(
            err.to_string().starts_with("invalid configuration: "),
            "{err}"
        );
    }
}
