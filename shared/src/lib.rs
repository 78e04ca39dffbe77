//! Common library of the workspace's gRPC services (`identity-svc`, `portal-sync-svc`).
//!
//! Everything both services need in exactly the same shape lives here, so that they look and
//! behave the same to operators and clients:
//!
//! * [`proto`] — code generated once from every `.proto` under `proto/`, plus the encoded
//!   descriptor set served by reflection.
//! * [`server`] — the server bootstrap: health, reflection (v1 and v1alpha), request timeout,
//!   a server-wide concurrency limit, per-method metrics and graceful shutdown.
//! * [`health`] — health that tells the truth: readiness from probes of each service's
//!   dependencies (its database, an upstream), and a `liveness` service for orchestrators.
//! * [`tls`] — TLS and mTLS of the servers (reloaded on SIGHUP and file changes) and the
//!   client TLS configuration of portal-sync's identity client.
//! * [`telemetry`] and [`metrics`] — logging setup and the Prometheus exporter.
//! * [`errors`] — rich `google.rpc` error details (`BadRequest`, `ErrorInfo`) on `Status`.
//! * [`page_token`] — opaque pagination tokens and page-size clamping (AIP-158).
//! * [`auth`] — bearer-token extraction and a `Secret` that never prints itself.
//! * [`operator_token`] — the operator token kept in the data directory (configured, read, or
//!   generated once with mode 0600), and the private data directory itself.
//! * [`config`] — the layering of configuration sources, the SQLite/PostgreSQL choice, and
//!   password redaction in database URLs.
//! * [`email`] — the `Email` value type (normalized, validated) of both services.
//! * [`secret_file`] — the `<name>_file` twin of every secret setting (the value read from a
//!   file; both set is an error).
//! * [`secrets`] — bearer tokens: generation, the stored SHA-256 form, constant-time compare.
//! * [`codec`] — the codec of both services: undecodable requests and control characters in
//!   any string field answered `INVALID_ARGUMENT` (never `INTERNAL`).
//! * [`text`] — the one policy for request texts (no control characters; multi-line fields).
//! * [`violations`] — collecting every bad field of a request (`google.rpc.BadRequest`).
//! * [`bootstrap`] and [`cli`] — what each `main.rs` does around `serve`, and the flags both
//!   services have.
//! * [`migrations`] (feature `migrations`) — SQL migrations embedded in the binary.
//! * [`testkit`] (feature `testkit`, tests and the benchmark only) — the PostgreSQL switch of
//!   the tests, throw-away databases, and starting a service in-process.

#![warn(missing_docs)]

pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod codec;
pub mod config;
pub mod email;
pub mod errors;
pub mod health;
pub mod metrics;
#[cfg(feature = "migrations")]
pub mod migrations;
pub mod operator_token;
pub mod page_token;
#[cfg(feature = "migrations")]
pub mod pool_metrics;
pub mod proto;
pub mod sealing;
pub mod secret_file;
pub mod secrets;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod text;
pub mod tls;
#[cfg(feature = "migrations")]
pub mod unavailable;
pub mod violations;
