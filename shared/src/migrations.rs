//! Embedded SQL migrations (feature `migrations`): the migrator of a backend's migrations
//! compiled into the binary, and the check that a backend's list names every file of its
//! `migrations/<backend>` directory.
//!
//! `sqlx::migrate!` is only available with sqlx's `macros`/`derive` features, which the
//! workspace leaves off (they would compile the drivers a second time for the proc-macro). A
//! service embeds its migrations with `include_str!` in a list of [`Embedded`] entries instead,
//! and [`embedded_migrator`] records them exactly as `migrate!` would (same version,
//! description and SHA-384 checksum), so either way of embedding can migrate a database
//! created by the other.

use std::borrow::Cow;
use std::path::Path;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One embedded migration: `(version, description, sql)`, e.g.
/// `(3, "tokens revoke time", include_str!("../migrations/sqlite/0003_tokens_revoke_time.sql"))`.
pub type Embedded = (i64, &'static str, &'static str);

/// Builds the migrator of embedded migrations. A new migration file must be added to the
/// backend's list ([`missing_from`] checks it).
pub fn embedded_migrator(migrations: &[Embedded]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// For a service's test: how the migration files of each backend (`<migrations>/<backend>`)
/// differ from its embedded list, `None` when every file is embedded with the version and
/// description `sqlx::migrate!` would give it (`0003_tokens_revoke_time.sql` → 3, "tokens
/// revoke time") and its text is the file's. A migration file that is not in the list would
/// silently never run.
///
/// # Errors
///
/// A directory or a file cannot be read, or a file name is not `<version>_<description>.sql`.
pub fn missing_from(
    migrations: &Path,
    backends: &[(&str, &[Embedded])],
) -> std::io::Result<Option<String>> {
    let mut report = Vec::new();
    for &(backend, embedded) in backends {
        let dir = migrations.join(backend);
        let files = files_in(&dir)?;
        let listed: Vec<(i64, String, String)> = embedded
            .iter()
            .map(|&(v, d, sql)| (v, d.to_owned(), sql.to_owned()))
            .collect();
        if listed != files {
            let names = |l: &[(i64, String, String)]| -> Vec<String> {
                l.iter().map(|(v, d, _)| format!("{v} {d}")).collect()
            };
            report.push(format!(
                "{}: embedded {:?} (texts compared too), files {:?}",
                dir.display(),
                names(&listed),
                names(&files)
            ));
        }
    }
    Ok((!report.is_empty()).then(|| report.join("; ")))
}

/// The migrations in `dir` as `sqlx::migrate!` would embed them, by version.
fn files_in(dir: &Path) -> std::io::Result<Vec<(i64, String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let parsed = name
            .split_once('_')
            .and_then(|(v, d)| Some((v.parse::<i64>().ok()?, d.replace('_', " "))));
        let Some((version, description)) = parsed else {
            return Err(std::io::Error::other(format!(
                "{}: not <version>_<description>.sql",
                path.display()
            )));
        };
        files.push((version, description, std::fs::read_to_string(&path)?));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_changed_file_is_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sqlite");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("0001_init.sql"), "CREATE TABLE t (x BIGINT);").unwrap();
        let one: &[Embedded] = &[(1, "init", "CREATE TABLE t (x BIGINT);")];
        assert_eq!(missing_from(root.path(), &[("sqlite", one)]).unwrap(), None);
        assert_eq!(embedded_migrator(one).iter().count(), 1);

        std::fs::write(dir.join("0002_add_y.sql"), "ALTER TABLE t ADD y BIGINT;").unwrap();
        let report = missing_from(root.path(), &[("sqlite", one)])
            .unwrap()
            .unwrap();
        assert!(report.contains("2 add y"), "{report}");
    }
}
