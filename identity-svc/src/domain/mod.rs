//! The domain: entities, value types, the permission catalog and engine, and the in-memory
//! state of an organization. No gRPC and no SQL here.

pub mod catalog;
pub mod email;
pub mod engine;
pub mod model;
pub mod names;
pub mod state;
