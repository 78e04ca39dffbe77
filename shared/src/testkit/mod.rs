//! Test support shared by every suite that starts a service for real (feature `testkit`,
//! enabled from `[dev-dependencies]` only, and by the benchmark binary): the PostgreSQL
//! switch and throw-away databases ([`pg`]), a PostgreSQL cluster of a test's own
//! ([`pg_cluster`], e.g. with TLS), a service started in-process and stopped again
//! ([`server`]), what clients send and read ([`clients`]), environment variables set for
//! one test ([`env`](mod@env)), certificates signed by a test CA ([`certs`]), and a real OpenID
//! provider run as a child process ([`oidc_provider`]).
//!
//! It knows no service: each suite's harness (`identity-svc/tests/api/helpers.rs`,
//! `tests/tests/e2e/harness.rs`) passes its service's `serve` function and settings.

pub mod certs;
pub mod clients;
pub mod env;
pub mod oidc_provider;
pub mod pg;
pub mod pg_cluster;
pub mod server;

/// Which store a test runs its services on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file in the test's temporary data directory.
    Sqlite,
    /// A fresh database on the server named by [`pg::URL_VAR`].
    Postgres,
}

/// Whether a test on `backend` should run: always on SQLite; on PostgreSQL unless the switch
/// ([`pg::URL_VAR`]`=off`) says to skip it, which [`pg::admin_url`] reports.
pub fn should_run(backend: Backend, test: &str) -> bool {
    match backend {
        Backend::Sqlite => true,
        Backend::Postgres => pg::admin_url(test).is_some(),
    }
}
