//! Secret settings given inline or in a file: every secret setting `<name>` of both services
//! has a `<name>_file` twin naming a file that holds the value (a mounted container secret,
//! a file readable only by the service's user), so the secret need not sit in the TOML file,
//! the environment or the command line.
//!
//! The file's content, trimmed of surrounding white space, is the value. Setting both `<name>`
//! and `<name>_file` is a configuration error naming the setting, as is an empty or unreadable
//! file. The errors name the setting and the file, never the content.

use std::io;
use std::path::{Path, PathBuf};

/// Why a secret setting could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The value was given inline and as a file.
    #[error("{name} and {name}_file are both set; set only one")]
    Both {
        /// The setting, e.g. `operator_token` or `smtp.password`.
        name: String,
    },
    /// The file could not be read.
    #[error("{name}_file: cannot read {}: {source}", path.display())]
    Read {
        /// The setting.
        name: String,
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The file holds nothing but white space.
    #[error("{name}_file: {} is empty", path.display())]
    Empty {
        /// The setting.
        name: String,
        /// The file.
        path: PathBuf,
    },
}

/// The trimmed content of `path`, the file of the setting `name`; an empty file is an error.
pub fn read(name: &str, path: &Path) -> Result<String, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretFileError::Read {
        name: name.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SecretFileError::Empty {
            name: name.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(value.to_owned())
}

/// The value of the setting `name`: `inline`, or the content of `file` ([`read`]), or `None`
/// when neither is set. Both set is an error.
pub fn resolve<T: From<String>>(
    name: &str,
    inline: Option<T>,
    file: Option<&Path>,
) -> Result<Option<T>, SecretFileError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(SecretFileError::Both {
            name: name.to_owned(),
        }),
        (inline, None) => Ok(inline),
        (None, Some(path)) => read(name, path).map(|value| Some(T::from(value))),
    }
}

/// The values of the list setting `name`: `inline`, or the lines of `file` (each trimmed,
/// blank lines skipped; at least one value), or none. Both set is an error.
pub fn resolve_list<T: From<String>>(
    name: &str,
    inline: Vec<T>,
    file: Option<&Path>,
) -> Result<Vec<T>, SecretFileError> {
    let Some(path) = file else {
        return Ok(inline);
    };
    if !inline.is_empty() {
        return Err(SecretFileError::Both {
            name: name.to_owned(),
        });
    }
    Ok(read(name, path)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| T::from(line.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn the_file_gives_the_trimmed_value_and_inline_stays_when_no_file() {
        let f = file("  op_from_file \n");
        let value: Option<Secret> = resolve("operator_token", None, Some(f.path())).unwrap();
        assert_eq!(value.unwrap().expose(), "op_from_file");
        let value = resolve("operator_token", Some(Secret::new("op_inline")), None).unwrap();
        assert_eq!(value.unwrap().expose(), "op_inline");
        let none: Option<String> = resolve("database_url", None, None).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn both_set_is_an_error_naming_the_setting_not_the_value() {
        let f = file("postgres://u:file-secret@h/db\n");
        let err = resolve(
            "database_url",
            Some("postgres://u:inline-secret@h/db".to_owned()),
            Some(f.path()),
        )
        .unwrap_err();
        assert!(matches!(err, SecretFileError::Both { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "database_url and database_url_file are both set; set only one"
        );
        let err =
            resolve_list("service_tokens", vec![Secret::new("a")], Some(f.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service_tokens and service_tokens_file are both set; set only one"
        );
        assert!(!format!("{err:?}").contains("secret"), "{err:?}");
    }

    #[test]
    fn an_empty_or_missing_file_is_an_error_naming_the_file() {
        let f = file(" \n\t\n");
        let err = resolve::<String>("smtp.password", None, Some(f.path())).unwrap_err();
        assert!(matches!(err, SecretFileError::Empty { .. }), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("smtp.password_file: "), "{text}");
        assert!(text.contains(&f.path().display().to_string()), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = resolve::<String>("operator_token", None, Some(&missing)).unwrap_err();
        assert!(matches!(err, SecretFileError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn a_list_file_has_one_value_per_line() {
        let f = file("tok_a\n\n  tok_b  \n");
        let tokens: Vec<Secret> =
            resolve_list("service_tokens", Vec::new(), Some(f.path())).unwrap();
        let tokens: Vec<&str> = tokens.iter().map(Secret::expose).collect();
        assert_eq!(tokens, ["tok_a", "tok_b"]);
        let inline = resolve_list("service_tokens", vec![Secret::new("tok_c")], None).unwrap();
        assert_eq!(inline.len(), 1);
    }
}
