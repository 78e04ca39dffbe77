//! Who may call what: the RPC → requirement table ([`rules`]), the admission of a caller and the
//! proof of authorization ([`proof`]), and identity's secrets (token prefixes, password hashes and
//! policy: [`secrets`]; token generation and hashing are `shared::secrets`).
//!
//! Must not import the core or the store: authentication against stored tokens is the core's
//! (`Core::authenticate`, in the core); the core imports this module for [`Authorized`].

pub mod proof;
pub mod rules;
pub mod secrets;

pub use proof::{Authorized, Caller, Entry, principal_name};
pub use rules::{Need, RULES, Rule, rule};
pub use secrets::{
    INVITATION_PREFIX, OPERATOR_PREFIX, SERVICE_ACCOUNT_PREFIX, SESSION_PREFIX,
    check_password_policy, hash_password, verify_password,
};
