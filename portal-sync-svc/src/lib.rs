//! portal-sync-svc: Customer Portal team records, derived for ODC infrastructures from the
//! identity service.

pub mod auth;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod server;
pub mod store;
pub mod sync;

pub use server::serve;
