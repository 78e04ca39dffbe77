//! The operator and service tokens of this service: their prefixes, and identifying a
//! presented token by comparing its hash with every accepted hash in constant time.
//! Generation, hashing and the comparison itself are the shared kit's ([`shared::secrets`]).

use std::fmt;

use shared::secrets::{constant_time_eq, hash_token};

/// Prefix of generated operator tokens.
pub const OPERATOR_PREFIX: &str = "psync_op_";
/// Prefix recommended for service tokens (any non-empty token is accepted).
pub const SERVICE_PREFIX: &str = "psync_svc_";

/// The kinds of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The platform operator.
    Operator,
    /// A trusted internal service.
    Service,
}

/// The hashes of the accepted tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    operator: Vec<String>,
    service: Vec<String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("operator", &self.operator.len())
            .field("service", &self.service.len())
            .finish()
    }
}

impl Tokens {
    /// From SHA-256 hashes (see [`hash_token`]) of the operator and service tokens.
    pub fn new(operator_hashes: Vec<String>, service_hashes: Vec<String>) -> Self {
        Self {
            operator: operator_hashes,
            service: service_hashes,
        }
    }

    /// Which kind of token `token` is, comparing its hash with every known hash in constant
    /// time.
    pub fn identify(&self, token: &str) -> Option<TokenKind> {
        let hash = hash_token(token);
        let mut found = None;
        for h in &self.operator {
            if constant_time_eq(h.as_bytes(), hash.as_bytes()) {
                found = Some(TokenKind::Operator);
            }
        }
        for h in &self.service {
            if constant_time_eq(h.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(TokenKind::Service);
            }
        }
        found
    }
}
