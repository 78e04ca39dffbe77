//! The portal domain: records, the ODC mapping and the capability rules. No gRPC, no SQL.

pub mod capabilities;
pub mod mapping;
pub mod model;
