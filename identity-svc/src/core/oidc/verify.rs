//! Checking one ID token against a key set, without any I/O: the header and the unverified
//! issuer (so a foreign token is refused before any fetch), the signature (RS256, ES256) with
//! `jsonwebtoken`, then the claims with the service clock: `aud`, `exp`, `nbf`, `iat` with a
//! bounded skew, `nonce`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{IdTokenClaims, Refusal};
use crate::domain::model::Micros;

/// Longest `sub` accepted (OpenID Connect Core 1.0 §2: at most 255 ASCII characters).
const SUBJECT_MAX: usize = 255;
/// Longest email, user name or name kept from a token (longer ones are dropped).
const CLAIM_TEXT_MAX: usize = 254;

/// What a token must say: the provider's issuer, the audiences it accepts, the nonce the
/// caller sent (if any).
#[derive(Debug, Clone)]
pub struct Expectation {
    /// `iss`.
    pub issuer: String,
    /// `aud` must hold one of these.
    pub audiences: Vec<String>,
    /// `nonce` must equal it when set.
    pub nonce: Option<String>,
}

/// The header and the unverified payload of a token whose algorithm is one we verify and
/// whose `iss` is the expected one.
#[derive(Debug)]
pub(super) struct Unverified {
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
}

/// Reads the header and the unverified issuer.
pub(super) fn inspect(token: &str, issuer: &str) -> Result<Unverified, Refusal> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Refusal::Malformed("the ID token is not a compact JWS".into()))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(Refusal::UnsupportedAlgorithm(format!("{:?}", header.alg)));
    }
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .ok_or_else(|| Refusal::Malformed("the ID token's payload is not a JSON object".into()))?;
    match payload.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == issuer => Ok(Unverified {
            alg: header.alg,
            kid: header.kid,
        }),
        other => Err(Refusal::WrongIssuer(format!(
            "the token's issuer {:?} is not the provider's {issuer:?}",
            other.unwrap_or("")
        ))),
    }
}

/// The keys of `keys` that may have signed a token of `u`: the one with its `kid`, or, when
/// the token names none, every key (a provider with one key often omits it).
fn candidates<'k>(keys: &'k JwkSet, u: &Unverified) -> Vec<&'k Jwk> {
    match &u.kid {
        Some(kid) => keys.find(kid).into_iter().collect(),
        None => keys.keys.iter().collect(),
    }
}

/// The verified payload, or `None` when no key of `keys` verifies the signature.
pub(super) fn signed_payload(
    token: &str,
    u: &Unverified,
    keys: &JwkSet,
) -> Option<Map<String, Value>> {
    let mut validation = Validation::new(u.alg);
    // The claims are checked below with the service clock and our own rules.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    candidates(keys, u).into_iter().find_map(|jwk| {
        let key = DecodingKey::from_jwk(jwk).ok()?;
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .ok()
            .map(|d| d.claims)
    })
}

/// A time claim in microseconds (a NumericDate may carry a fraction).
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Micros>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && s.abs() < 1e13)
            .map(|s| {
                #[allow(clippy::cast_possible_truncation)]
                let micros = (s * 1e6) as Micros;
                Some(micros)
            })
            .ok_or_else(|| Refusal::Malformed(format!("`{name}` is not a number"))),
    }
}

/// Checks `aud`, the times and the nonce of a verified payload.
pub(super) fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expectation,
    now: Micros,
    skew: Micros,
) -> Result<(), Refusal> {
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud
        .iter()
        .any(|a| expect.audiences.iter().any(|want| want == a))
    {
        return Err(Refusal::WrongAudience(format!(
            "the token's audience {aud:?} holds neither the client id nor an allowed audience"
        )));
    }
    let exp = time_claim(claims, "exp")?
        .ok_or_else(|| Refusal::Malformed("the token has no `exp`".into()))?;
    let iat = time_claim(claims, "iat")?
        .ok_or_else(|| Refusal::Malformed("the token has no `iat`".into()))?;
    if now > exp.saturating_add(skew) {
        return Err(Refusal::Expired);
    }
    if let Some(nbf) = time_claim(claims, "nbf")?
        && now.saturating_add(skew) < nbf
    {
        return Err(Refusal::NotYetValid);
    }
    if now.saturating_add(skew) < iat {
        return Err(Refusal::IssuedInFuture);
    }
    if let Some(nonce) = &expect.nonce
        && claims.get("nonce").and_then(Value::as_str) != Some(nonce.as_str())
    {
        return Err(Refusal::WrongNonce);
    }
    Ok(())
}

/// A short text claim, dropped when it is too long or holds control characters.
fn text_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    let s = claims.get(name)?.as_str()?.trim();
    (!s.is_empty()
        && s.chars().count() <= CLAIM_TEXT_MAX
        && shared::text::check(s, shared::text::Lines::Single).is_ok())
    .then(|| s.to_owned())
}

/// The claims sign-in uses, from a verified and checked payload.
pub(super) fn identity(claims: Map<String, Value>) -> Result<IdTokenClaims, Refusal> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| {
            !s.is_empty() && s.len() <= SUBJECT_MAX && s.chars().all(|c| c.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Refusal::Malformed("`sub` is missing or not 1 to 255 ASCII characters".into())
        })?
        .to_owned();
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        // Some providers send the string form.
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    Ok(IdTokenClaims {
        subject,
        email: text_claim(&claims, "email"),
        email_verified,
        preferred_username: text_claim(&claims, "preferred_username"),
        name: text_claim(&claims, "name"),
        claims,
    })
}

#[cfg(test)]
mod tests;
