//! The migrations of both backends, embedded in the binary, and the check that every
//! migration file is in its backend's list.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Builds the migrator of embedded migrations `(version, description, sql)`.
///
/// `sqlx::migrate!` is only available with sqlx's `macros`/`derive` features, which the
/// workspace leaves off (they would compile the drivers a second time for the proc-macro).
/// The migrations are embedded with `include_str!` instead and recorded exactly as
/// `migrate!` would record them (same version, description and SHA-384 checksum), so either
/// way of embedding can migrate a database created by the other. A new migration file must be
/// added to the backend's list.
pub(crate) fn embedded_migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
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

#[cfg(test)]
mod tests {
    /// Every file of `migrations/<backend>` is embedded in the backend's list, with the version
    /// and description `sqlx::migrate!` would give it (`0003_tokens_revoke_time.sql` → 3,
    /// "tokens revoke time"), and its text is the file's. A migration file that is not in the
    /// list would silently never run.
    #[test]
    fn every_migration_file_is_embedded() {
        for (backend, embedded) in [
            ("sqlite", crate::core::store::sqlite::MIGRATIONS),
            ("postgres", crate::core::store::postgres::MIGRATIONS),
        ] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| {
                    let path = entry.unwrap().path();
                    let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
                    let (version, description) = name.split_once('_').unwrap();
                    (
                        version.parse().unwrap(),
                        description.replace('_', " "),
                        std::fs::read_to_string(&path).unwrap(),
                    )
                })
                .collect();
            files.sort();
            let listed: Vec<(i64, String, String)> = embedded
                .iter()
                .map(|&(v, d, sql)| (v, d.to_owned(), sql.to_owned()))
                .collect();
            assert_eq!(listed, files, "migrations of {backend}");
        }
    }
}
