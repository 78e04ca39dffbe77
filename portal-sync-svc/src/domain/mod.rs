//! The portal domain: records, resource names, a company's facts and access levels, the
//! capability table and the ODC mapping. No gRPC, no SQL; imports nothing of this crate but
//! itself.

pub mod capabilities;
pub mod facts;
pub mod mapping;
pub mod model;
pub mod names;
