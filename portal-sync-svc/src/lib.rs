//! portal-sync-svc: Customer Portal team records, derived for ODC infrastructures from the
//! identity service.
//!
//! Layers: `grpc` (thin handlers) → `rules` (the portal's decisions; the only writer of the
//! store, with the proof of authorization) → `store`; `grpc` → `auth` (who may call what);
//! `sync` follows identity's change feed; everything → `domain`.

pub mod auth;
pub mod config;
pub mod convert;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod rules;
pub mod server;
pub mod store;
pub mod sync;

pub use server::serve;
