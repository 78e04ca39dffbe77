//! Authentication and authorization of the portal API: who may call what. No store access.
//!
//! * Callers send `authorization: Bearer <token>`: the **operator** token (platform level:
//!   companies, infrastructures, Community accounts, resync) or a **service** token (trusted
//!   internal services). Tokens are kept only as SHA-256 hashes and compared in constant time
//!   ([`tokens`]).
//! * A service acting for a person names them in `x-acting-for: <email>` ([`authenticate`]); the
//!   seed 004 access level of that person in the company named by the request decides what the
//!   call may do ([`levels`]).
//! * Every RPC has exactly one entry in [`rules::RULES`] (a test walks the `portal.v1`
//!   descriptors). The table rule is checked before the request is read; request-dependent
//!   needs (the infrastructures touched, the member targeted) are stated by the portal rules
//!   ([`crate::rules`]) through [`proof::Entry::require`].
//! * The store can only be written by [`crate::rules`], against an [`proof::Authorized`] that
//!   only [`proof`] makes: a rule that skipped the check does not compile.

pub mod authenticate;
pub mod levels;
pub mod proof;
pub mod rules;
pub mod tokens;

#[cfg(test)]
mod tests;

/// Why a caller was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or unknown credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    PermissionDenied(String),
    /// The `x-acting-for` metadata is missing or not an email (the text says which).
    #[error("x-acting-for {0}")]
    ActingFor(String),
    /// A programming error (an RPC without a rule, a contextual rule used without its needs).
    #[error("{0}")]
    Internal(String),
}
