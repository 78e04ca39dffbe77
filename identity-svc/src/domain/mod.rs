//! The domain: entities, value types, resource names, the permission catalog and engine, and
//! the in-memory state of an organization. No gRPC and no SQL here, and nothing of the crate
//! outside `domain`.

pub mod model;
pub mod names;
pub mod permissions;
pub mod state;
