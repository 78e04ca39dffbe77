//! identity-svc: organizations, users, roles, permissions, groups, audit and change feed of
//! OutSystems Developer Cloud user management, served over gRPC.
//!
//! Layers, top to bottom: [`grpc`] (decode, call, encode) → [`rules`] (the mutations, one file per resource) →
//! [`core`] (state, commit, feed, sessions; owns the store) ; [`auth`] (who may call what) and
//! [`error`] beside them; [`domain`] under everything.

pub mod auth;
pub mod config;
pub mod core;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod rules;
pub mod server;

/// The store, for the benchmark only (feature `store-access`, which the services never
/// enable): without it, the store is private to [`core`].
#[cfg(feature = "store-access")]
pub use crate::core::store;
pub use server::{Dependencies, serve};
