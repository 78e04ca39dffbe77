//! The operator and service tokens: generation, the stored form (SHA-256), and identifying a
//! presented token by comparing its hash with every accepted hash in constant time.

use std::fmt;

use rand::RngExt as _;
use sha2::{Digest, Sha256};

/// Prefix of generated operator tokens.
pub const OPERATOR_PREFIX: &str = "psync_op_";
/// Prefix recommended for service tokens (any non-empty token is accepted).
pub const SERVICE_PREFIX: &str = "psync_svc_";

/// A fresh random token with `prefix`.
pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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
