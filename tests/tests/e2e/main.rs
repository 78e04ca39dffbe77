#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::items_after_statements,
    clippy::unnecessary_wraps
)]
//! End-to-end tests of portal-sync against a real identity service. Every test runs on SQLite
//! (`<module>::sqlite::<test>`) and on PostgreSQL (`<module>::postgres::<test>`, through
//! `TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips).

mod harness;

mod external_sign_in;
mod faults;
mod grant_periods;
mod health;
mod mapped;
mod pg_tls;
mod portal_api;
mod properties;
mod replicas;
mod secrets;
mod sync;
mod tls;
mod traces;
