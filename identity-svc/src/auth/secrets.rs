//! Identity's secrets: the prefixes of its tokens (random, base64url, stored only as SHA-256
//! hashes: generated and hashed by [`shared::secrets`], which also compares them in constant
//! time), argon2id password hashes, and the password policy.
//!
//! Pure functions of their inputs (and the random generator): no store, no core.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::RngExt as _;

use crate::error::Error;

/// Prefix of operator tokens.
pub const OPERATOR_PREFIX: &str = "odc_op_";
/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "odc_ses_";
/// Prefix of service-account tokens.
pub const SERVICE_ACCOUNT_PREFIX: &str = "odc_sa_";
/// Prefix of invitation tokens.
pub const INVITATION_PREFIX: &str = "odc_inv_";

/// Hashes a password with argon2id and a random salt. Slow and ≈19 MiB on purpose: the core
/// runs it (and [`verify_password`]) only on its bounded hashing pool.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt: [u8; 16] = rand::rng().random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hash: {e}")))
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// The password policy (DOMAIN.md): at least 12 characters, one digit, one upper-case letter.
pub fn check_password_policy(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 12 {
        return Err("must be at least 12 characters");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err("must contain a digit");
    }
    if !password.chars().any(char::is_uppercase) {
        return Err("must contain an upper-case letter");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy_needs_length_digit_and_upper_case() {
        assert!(check_password_policy("Short1").is_err());
        assert!(check_password_policy("longenoughbutnodigit").is_err());
        assert!(check_password_policy("longenough1nouppercase").is_err());
        assert!(check_password_policy("LongEnough1234").is_ok());
    }

    #[test]
    fn passwords_are_argon2id_hashed_and_verified() {
        let h = hash_password("LongEnough1234").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("LongEnough1234", &h));
        assert!(!verify_password("LongEnough1235", &h));
    }
}
