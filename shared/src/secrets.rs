//! Bearer-token secrets: generating them, the only form that is stored (a SHA-256 hash), and
//! comparing secrets without leaking where they differ.
//!
//! A token is `<prefix><256 random bits>`; the prefix says what it is for (`odc_ses_`,
//! `odc_sa_`, `psync_op_`, ...) so a leaked token is recognizable in a scanner. Servers keep
//! only [`hash_token`]: a database dump yields no usable token. Passwords are not tokens:
//! they are hashed with argon2 by the identity service.

use base64::Engine as _;
use rand::RngExt as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// How the random part of a token is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEncoding {
    /// 43 characters of unpadded base64url: short enough that an invitation line of a mail
    /// (`invitation_token: odc_inv_...`) stays under 76 characters as plain 7-bit text.
    Base64Url,
    /// 64 lower-case hex digits.
    Hex,
}

/// A fresh random token: `prefix` then 256 random bits in `encoding`.
pub fn new_token(prefix: &str, encoding: TokenEncoding) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    let random = match encoding {
        TokenEncoding::Base64Url => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        TokenEncoding::Hex => hex::encode(bytes),
    };
    format!("{prefix}{random}")
}

/// The stored form of a token: the lower-case hex SHA-256 of its text.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (the `subtle`
/// crate): comparing a presented secret with a stored one leaks nothing about where they
/// first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_prefixed_and_encoded() {
        let a = new_token("odc_ses_", TokenEncoding::Base64Url);
        let b = new_token("odc_ses_", TokenEncoding::Base64Url);
        assert_ne!(a, b);
        let random = a.strip_prefix("odc_ses_").unwrap();
        assert_eq!(random.len(), 43);
        assert!(
            random
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let h = new_token("psync_op_", TokenEncoding::Hex);
        let random = h.strip_prefix("psync_op_").unwrap();
        assert_eq!(random.len(), 64);
        assert!(
            random
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn hash_is_hex_sha256_and_stable() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash_token("x"), hash_token("x"));
        assert_ne!(hash_token("x"), hash_token("y"));
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }
}
