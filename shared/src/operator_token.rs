//! The operator token of a service, and the private data directory that keeps it.
//!
//! Both services accept an operator token from their configuration; when none is configured
//! they keep one in `<data_dir>/operator-token`, generated on first start and written once,
//! readable only by its owner (mode 0600). [`load_or_create`] settles which token applies and
//! returns it; the service keeps only its hash, computed with its own hash function.
//!
//! The token is never logged or put in an error: only the file's path is.

use std::io::{self, ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::auth::Secret;
use crate::secrets::{TokenEncoding, hash_token, new_token};

/// Name of the file in the data directory holding the generated operator token.
pub const TOKEN_FILE: &str = "operator-token";

/// Where the generated operator token is kept: `<data_dir>/operator-token`.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Why the operator token could not be settled. The messages name the file, never the token.
#[derive(Debug, thiserror::Error)]
pub enum OperatorTokenError {
    /// `operator_token` is set in the configuration but blank.
    #[error("operator_token is configured but empty")]
    ConfiguredEmpty,
    /// The token file exists but could not be read.
    #[error("cannot read the operator token file {}", path.display())]
    Read {
        /// The token file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The token file holds nothing but white space.
    #[error(
        "the operator token file {} is empty; delete it to generate a new token",
        path.display()
    )]
    EmptyFile {
        /// The token file.
        path: PathBuf,
    },
    /// A new token file could not be written.
    #[error("cannot write the operator token file {}", path.display())]
    Write {
        /// The token file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The token file was there when creating it, and gone when reading it right after.
    #[error("operator token file {} vanished", path.display())]
    Vanished {
        /// The token file.
        path: PathBuf,
    },
}

/// The operator token, trimmed of surrounding white space.
///
/// The token is `configured` if set (an error if blank); otherwise the content of
/// [`token_path`]`(data_dir)`; otherwise a new token from `new_token`, written once to that
/// file with mode 0600. `new_token` is called only in that last case and must return a fresh
/// token of at least 256 random bits (each service passes its own generator, which fixes the
/// token's prefix and encoding). If another process creates the file first, its token wins.
///
/// Only the file's path is logged, never the token; a file readable by other users is warned
/// about.
pub fn load_or_create(
    configured: Option<&Secret>,
    data_dir: &Path,
    new_token: impl FnOnce() -> String,
) -> Result<String, OperatorTokenError> {
    if let Some(token) = configured {
        let token = token.expose().trim();
        if token.is_empty() {
            return Err(OperatorTokenError::ConfiguredEmpty);
        }
        tracing::info!("operator token taken from the configuration");
        return Ok(token.to_owned());
    }
    let path = token_path(data_dir);
    if let Some(token) = read_token_file(&path)? {
        tracing::info!(path = %path.display(), "operator token read from file");
        return Ok(token);
    }
    if let Some(token) = create_token_file(&path, new_token)? {
        tracing::info!(
            path = %path.display(),
            "generated a new operator token; it is in this file (mode 0600)"
        );
        return Ok(token);
    }
    // Another process created it between our read and our create.
    read_token_file(&path)?.ok_or(OperatorTokenError::Vanished { path })
}

/// The SHA-256 hash ([`hash_token`]) of the operator token, the only form a server keeps:
/// [`load_or_create`] with a generator of `prefix` + 256 random bits in `encoding`
/// ([`new_token`]).
pub fn load_or_create_hash(
    configured: Option<&Secret>,
    data_dir: &Path,
    prefix: &str,
    encoding: TokenEncoding,
) -> Result<String, OperatorTokenError> {
    let token = load_or_create(configured, data_dir, || new_token(prefix, encoding))?;
    Ok(hash_token(&token))
}

/// The token in `path`, or `None` if there is no such file.
fn read_token_file(path: &Path) -> Result<Option<String>, OperatorTokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(OperatorTokenError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the operator token file is readable by other users; chmod 600 it"
        );
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(OperatorTokenError::EmptyFile {
            path: path.to_owned(),
        });
    }
    Ok(Some(token.to_owned()))
}

/// Writes a new token to `path`, which must not exist yet (`None` if it does).
fn create_token_file(
    path: &Path,
    new_token: impl FnOnce() -> String,
) -> Result<Option<String>, OperatorTokenError> {
    let write_error = |source| OperatorTokenError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(write_error(e)),
    };
    let token = new_token();
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    Ok(Some(token))
}

/// Creates `dir` and its missing parents; new directories are private to the owner (0700), as
/// they hold the operator token, the database and other secrets (password hashes, invitations).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(token: &'static str) -> impl FnOnce() -> String {
        move || token.to_owned()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generates_the_token_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path(), generator("op_first")).unwrap();
        assert_eq!(first, "op_first");
        let path = token_path(dir.path());
        assert_eq!(path, dir.path().join("operator-token"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "op_first\n");
        assert_eq!(mode(&path), 0o600);
        // A restart keeps the same token and does not generate another.
        let again = load_or_create(None, dir.path(), || unreachable!("no new token")).unwrap();
        assert_eq!(again, first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "op_first\n");
    }

    #[test]
    fn the_hash_is_of_the_generated_then_reread_token() {
        let dir = tempfile::tempdir().unwrap();
        let hash = load_or_create_hash(None, dir.path(), "op_", TokenEncoding::Hex).unwrap();
        let token = std::fs::read_to_string(token_path(dir.path())).unwrap();
        assert!(token.starts_with("op_"));
        assert_eq!(hash, hash_token(token.trim()));
        let again = load_or_create_hash(None, dir.path(), "op_", TokenEncoding::Hex).unwrap();
        assert_eq!(again, hash);
        let configured = Secret::new(" op_set ");
        let set =
            load_or_create_hash(Some(&configured), dir.path(), "op_", TokenEncoding::Hex).unwrap();
        assert_eq!(set, hash_token("op_set"));
    }

    #[test]
    fn a_configured_token_wins_trimmed_and_no_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(token_path(dir.path()), "op_in_file\n").unwrap();
        let configured = Secret::new(" op_configured \n");
        let token = load_or_create(Some(&configured), dir.path(), generator("op_new")).unwrap();
        assert_eq!(token, "op_configured");

        let empty = tempfile::tempdir().unwrap();
        let token = load_or_create(Some(&configured), empty.path(), generator("op_new")).unwrap();
        assert_eq!(token, "op_configured");
        assert!(!token_path(empty.path()).exists());
    }

    #[test]
    fn a_blank_configured_token_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            load_or_create(Some(&Secret::new("  ")), dir.path(), generator("op_new")).unwrap_err();
        assert!(matches!(err, OperatorTokenError::ConfiguredEmpty), "{err}");
        assert_eq!(err.to_string(), "operator_token is configured but empty");
        assert!(!token_path(dir.path()).exists());
    }

    #[test]
    fn reads_an_existing_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(token_path(dir.path()), "  op_existing \n").unwrap();
        let token = load_or_create(None, dir.path(), || unreachable!("no new token")).unwrap();
        assert_eq!(token, "op_existing");
    }

    #[test]
    fn an_empty_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(dir.path());
        std::fs::write(&path, "\n").unwrap();
        let err = load_or_create(None, dir.path(), generator("op_new")).unwrap_err();
        assert!(matches!(err, OperatorTokenError::EmptyFile { .. }), "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "\n");
    }

    #[test]
    fn unreadable_or_unwritable_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be cannot be read as one.
        std::fs::create_dir(token_path(dir.path())).unwrap();
        let err = load_or_create(None, dir.path(), generator("op_new")).unwrap_err();
        assert!(matches!(err, OperatorTokenError::Read { .. }), "{err}");
        assert!(err.to_string().contains("operator-token"), "{err}");
        assert!(std::error::Error::source(&err).is_some());

        // A data directory that does not exist cannot receive the file.
        let missing = dir.path().join("missing");
        let err = load_or_create(None, &missing, generator("op_secret")).unwrap_err();
        assert!(matches!(err, OperatorTokenError::Write { .. }), "{err}");
        assert!(!format!("{err} {err:?}").contains("op_secret"), "{err:?}");
    }

    #[test]
    fn creating_over_an_existing_file_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(dir.path());
        std::fs::write(&path, "op_other_process\n").unwrap();
        let created = create_token_file(&path, || unreachable!("no new token")).unwrap();
        assert_eq!(created, None);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "op_other_process\n"
        );
    }

    #[test]
    fn private_dirs_are_owner_only_and_may_exist() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        create_private_dir(&nested).unwrap();
    }
}
