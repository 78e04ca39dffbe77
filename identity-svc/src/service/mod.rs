//! The mutations, in domain types (moving to `rules/`).

pub mod ops;
