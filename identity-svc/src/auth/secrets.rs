//! Identity's secrets: the prefixes of its tokens (random, base64url, stored only as SHA-256
//! hashes: generated and hashed by [`shared::secrets`], which also compares them in constant
//! time), argon2id password hashes, and the password policy.
//!
//! Pure functions of their inputs (and the random generator): no store, no core.

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

thread_local! {
    /// argon2's working memory (≈19 MiB with the default parameters), kept by the thread that
    /// hashes instead of allocated and freed per hash: the core hashes only on the few threads
    /// of its hashing pool, so this is the whole of hashing's memory, and the allocator never
    /// sees the 19 MiB allocations it would otherwise keep in a growing number of arenas.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Raw argon2 of `password` and `salt` into `out`, on this thread's reused memory.
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    BLOCKS.with_borrow_mut(|blocks| {
        let needed = params.block_count();
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password,
            salt,
            out,
            &mut blocks[..needed],
        )
    })
}

/// Hashes a password with argon2id (default parameters) and a random salt, as a PHC string.
/// Slow and ≈19 MiB on purpose: the core runs it (and [`verify_password`]) only on its bounded
/// hashing pool.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("password hash: {e}"));
    let salt: [u8; 16] = rand::rng().random();
    let params = Params::default();
    let mut out = [0_u8; Params::DEFAULT_OUTPUT_LEN];
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    argon2_into(
        algorithm,
        version,
        params.clone(),
        password.as_bytes(),
        &salt,
        &mut out,
    )
    .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| fail(&e))?),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a stored PHC hash (any argon2 variant and parameters), comparing
/// in constant time. A hash that cannot be read matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::new(phc.algorithm.as_str()),
        Params::try_from(&phc),
        phc.salt,
        phc.hash,
    ) else {
        return false;
    };
    let version = phc
        .version
        .map_or(Ok(Version::default()), Version::try_from)
        .unwrap_or_default();
    let mut out = vec![0_u8; expected.len()];
    argon2_into(
        algorithm,
        version,
        params,
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
    )
    .is_ok()
        && shared::secrets::constant_time_eq(&out, expected.as_bytes())
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
        assert!(!verify_password("LongEnough1234", "not a hash"));
    }

    #[test]
    fn hashes_made_by_the_argon2_crate_itself_still_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let h = Argon2::default()
            .hash_password_with_salt(b"LongEnough1234", b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(verify_password("LongEnough1234", &h));
        assert!(!verify_password("LongEnough1235", &h));
        let ours = hash_password("LongEnough1234").unwrap();
        assert!(
            argon2::password_hash::PasswordVerifier::verify_password(
                &Argon2::default(),
                b"LongEnough1234",
                &PasswordHash::new(&ours).unwrap(),
            )
            .is_ok()
        );
    }
}
