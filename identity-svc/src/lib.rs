//! identity-svc: organizations, users, roles, permissions, groups, audit and change feed of
//! OutSystems Developer Cloud user management, served over gRPC.

pub mod config;
pub mod domain;
pub mod grpc;
pub mod rules;
pub mod server;
pub mod service;
pub mod store;

pub use server::{Dependencies, serve};
