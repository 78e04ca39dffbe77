#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::items_after_statements,
    clippy::unnecessary_wraps,
    clippy::unused_self
)]
//! API tests: the real identity server started in-process on `127.0.0.1:0`, driven through the
//! generated gRPC clients. Every test runs twice: on a fresh SQLite data directory
//! (`<module>::sqlite::<test>`) and on a fresh PostgreSQL database (`<module>::postgres::<test>`,
//! through `TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips).

mod helpers;

mod abuse;
mod access;
mod feed;
mod grant_periods;
mod group_mappings;
mod groups;
mod lifecycle;
mod mailer;
mod oidc;
mod oidc_es256;
mod oidc_node_provider;
mod outbox;
mod replicas;
mod roles;
mod rules;
mod security;
mod seed;
mod smtp_relay;
mod streams;
mod validation;
