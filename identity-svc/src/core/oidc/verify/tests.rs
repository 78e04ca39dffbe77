//! The checks without a provider, with P-256 keys made here: a token naming one `kid` is
//! verified with that key only, a token naming none with every key, and each claim rule at its
//! boundary. ES256 and RS256 tokens of a real provider (with a key set of both kinds) are the
//! API tests' (`tests/api/oidc_es256.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::*;

const ISS: &str = "https://login.example.com";
const NOW: Micros = 1_800_000_000 * 1_000_000;
const SKEW: Micros = 60 * 1_000_000;

/// A P-256 key: its encoding key and its public JWK (with `kid`).
fn p256(kid: &str) -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // Uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn claims() -> Value {
    let now = NOW / 1_000_000;
    json!({"iss": ISS, "sub": "s-1", "aud": "client", "iat": now, "exp": now + 300,
           "nonce": "n", "email": "a@example.com", "email_verified": "true"})
}

fn sign(key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn keys(jwks: &[Value]) -> JwkSet {
    serde_json::from_value(json!({ "keys": jwks })).unwrap()
}

fn expect() -> Expectation {
    Expectation {
        issuer: ISS.into(),
        audiences: vec!["client".into()],
        nonce: Some("n".into()),
    }
}

#[test]
fn es256_tokens_verify_with_the_key_of_their_kid_only() {
    let (k1, j1) = p256("k1");
    let (k2, j2) = p256("k2");
    let set = keys(&[j1, j2]);
    let token = sign(&k2, Some("k2"), &claims());
    let u = inspect(&token, ISS).unwrap();
    let payload = signed_payload(&token, &u, &set).expect("k2 verifies");
    let id = identity(payload).unwrap();
    assert_eq!(id.subject, "s-1");
    assert!(id.email_verified, "the string form counts");
    // Signed with k1 but naming k2: no key verifies it.
    let forged = sign(&k1, Some("k2"), &claims());
    assert!(signed_payload(&forged, &inspect(&forged, ISS).unwrap(), &set).is_none());
    // Without a kid, every key is tried.
    let bare = sign(&k1, None, &claims());
    assert!(signed_payload(&bare, &inspect(&bare, ISS).unwrap(), &set).is_some());
}

#[test]
fn foreign_issuers_and_other_algorithms_are_refused_before_any_key_is_needed() {
    let (k, _) = p256("k");
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com");
    let token = sign(&k, Some("k"), &c);
    assert_eq!(inspect(&token, ISS).unwrap_err().reason(), "WRONG_ISSUER");
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"shared"),
    )
    .unwrap();
    assert_eq!(
        inspect(&hs, ISS).unwrap_err().reason(),
        "UNSUPPORTED_ALGORITHM"
    );
    assert_eq!(inspect("x.y", ISS).unwrap_err().reason(), "MALFORMED_TOKEN");
}

fn check(c: &Value, now: Micros) -> Result<(), &'static str> {
    let map = c.as_object().unwrap().clone();
    check_claims(&map, &expect(), now, SKEW).map_err(|r| r.reason())
}

#[test]
fn times_are_checked_with_the_skew_and_no_more() {
    let c = claims();
    let exp = c["exp"].as_i64().unwrap() * 1_000_000;
    assert_eq!(check(&c, exp + SKEW), Ok(()));
    assert_eq!(check(&c, exp + SKEW + 1), Err("TOKEN_EXPIRED"));
    let mut future = claims();
    future["iat"] = json!(NOW / 1_000_000 + 61);
    assert_eq!(check(&future, NOW), Err("TOKEN_ISSUED_IN_FUTURE"));
    let mut early = claims();
    early["nbf"] = json!(NOW / 1_000_000 + 61);
    assert_eq!(check(&early, NOW), Err("TOKEN_NOT_YET_VALID"));
    early["nbf"] = json!(NOW / 1_000_000 + 60);
    assert_eq!(check(&early, NOW), Ok(()));
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(check(&no_exp, NOW), Err("MALFORMED_TOKEN"));
}

#[test]
fn the_audience_may_be_a_list_and_the_nonce_must_match() {
    let mut c = claims();
    c["aud"] = json!(["other", "client"]);
    assert_eq!(check(&c, NOW), Ok(()));
    c["aud"] = json!(["other"]);
    assert_eq!(check(&c, NOW), Err("WRONG_AUDIENCE"));
    let mut n = claims();
    n["nonce"] = json!("m");
    assert_eq!(check(&n, NOW), Err("WRONG_NONCE"));
}

#[test]
fn subjects_must_be_short_printable_ascii() {
    for bad in [json!(""), json!("a b"), json!("x".repeat(256)), json!(7)] {
        let mut c = claims();
        c["sub"] = bad;
        let map = c.as_object().unwrap().clone();
        assert_eq!(identity(map).unwrap_err().reason(), "MALFORMED_TOKEN");
    }
}
