//! PostgreSQL for tests: the one switch every suite honours, and throw-away databases.
//!
//! `TEST_PG_URL` names the server (default `postgres://postgres@127.0.0.1:5432/postgres`;
//! the user needs `CREATEDB`). `TEST_PG_URL=off` skips every PostgreSQL variant, saying so on
//! stderr, unless `TEST_REQUIRE_PG=1` (as in CI), which turns a skip into a failure. A server
//! that cannot be reached fails the tests: a silent skip would hide a broken setup.
//!
//! Each test gets its own database ([`TestDatabase::create`]), dropped (`WITH (FORCE)`) when
//! the guard is dropped, so tests can run in parallel, in one process or many.

use std::fmt;

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

/// The variable naming the PostgreSQL server of the tests, or `off`.
pub const URL_VAR: &str = "TEST_PG_URL";
/// `1` or `true`: skipping the PostgreSQL variants is a failure (CI).
pub const REQUIRE_VAR: &str = "TEST_REQUIRE_PG";
/// The server used when [`URL_VAR`] is unset or empty.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the server to create test databases on, or `None` when [`URL_VAR`] is `off`
/// (then a line on stderr says that `test` was skipped).
///
/// # Panics
/// When [`URL_VAR`] is `off` but [`REQUIRE_VAR`] asks for PostgreSQL.
pub fn admin_url(test: &str) -> Option<String> {
    let url = std::env::var(URL_VAR)
        .ok()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    if !url.eq_ignore_ascii_case("off") {
        return Some(url);
    }
    let required = std::env::var(REQUIRE_VAR)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"));
    assert!(
        !required,
        "{REQUIRE_VAR}=1 but {URL_VAR}=off: {test} cannot run"
    );
    eprintln!("SKIPPED: {URL_VAR}=off, PostgreSQL test {test} not run");
    None
}

/// `url` with its database replaced by `database` (query parameters kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, params) = url
        .split_once('?')
        .map_or((url, None), |(b, p)| (b, Some(p)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = base[authority..]
        .find('/')
        .map_or(base, |s| &base[..authority + s]);
    match params {
        Some(p) => format!("{base}/{database}?{p}"),
        None => format!("{base}/{database}"),
    }
}

/// A database that belongs to one test: created empty, dropped with the guard.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// Creates `<prefix>_<random>` on the server at `admin_url`.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses to create the database.
    pub async fn create(admin_url: &str, prefix: &str) -> Self {
        Self::try_create(admin_url, prefix)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required for this test: {e}"))
    }

    /// Creates `<prefix>_<random>` on the server at `admin_url`, or says why it could not (for
    /// a caller that reports errors rather than panicking, such as the benchmark).
    ///
    /// # Errors
    /// The server cannot be reached or refuses to create the database.
    pub async fn try_create(admin_url: &str, prefix: &str) -> Result<Self, sqlx::Error> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut c = PgConnection::connect(admin_url).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await?;
        Ok(Self {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    /// The URL of the database itself, to hand to a service or a store.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside of any async context we could await in: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&url).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_the_database_and_keeps_parameters() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
