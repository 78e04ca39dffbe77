//! Permissions: the catalog (every permission, what it implies, the Developer defaults), what
//! follows from implication, the built-in roles, and the engine that decides who may do what.
//! Imports only the rest of `domain`.

pub mod built_in;
pub mod catalog;
pub mod engine;
pub mod implication;
mod key_hasher;
