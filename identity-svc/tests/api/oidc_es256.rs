//! Sign-in with ID tokens signed ES256 by a real OpenID provider (`oidc_node_provider.rs`: the
//! certified `oidc-provider` from npm), whose key set mixes kinds (an EC P-256 key and an RSA
//! key): both kinds verify, a tampered signature is refused, a rotated EC key is fetched once
//! per bound.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::api_tests;
use crate::helpers::*;
use crate::oidc::{app_for_oidc, create_provider, provider_req, sign_in};
use crate::oidc_node_provider::{ES256_CLIENT, Provider, RS256_CLIENT};

api_tests!(
    es256_and_rs256_tokens_verify_against_a_mixed_key_set,
    a_rotated_es256_key_is_fetched_once_per_bound,
);

/// The accounts the provider knows.
fn accounts() -> Value {
    json!({
        "ec-person": {"email": "ec@es256.example", "email_verified": true, "name": "Elliptic Curve",
                      "preferred_username": "ecp"},
    })
}

/// The JOSE header of a compact JWS.
fn header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The kid of the key of kind `kty` in the key set `jwks`.
fn kid_of(jwks: &Value, kty: &str) -> String {
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == kty)
        .unwrap_or_else(|| panic!("no {kty} key in {jwks}"));
    key["kid"].as_str().unwrap().to_owned()
}

/// `token` with the first byte of its signature changed.
fn flip_signature(token: &str) -> String {
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    bytes[0] ^= 0x01;
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// `token` with another subject in its payload and the original signature.
fn swap_subject(token: &str, sub: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!(sub);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// An identity provider for `op` that auto-creates profiles and accepts both clients' tokens.
async fn setup(app: &TestApp, admin: &Session, op: &Provider) -> pb::IdentityProvider {
    let mut req = provider_req(
        &admin.org,
        &op.issuer(),
        pb::EmailTrust::VerifiedClaim,
        pb::ProfileLinking::Email,
        true,
    );
    req.identity_provider.as_mut().unwrap().allowed_audiences = vec![RS256_CLIENT.into()];
    create_provider(app, admin, req).await
}

async fn es256_and_rs256_tokens_verify_against_a_mixed_key_set(backend: Backend) {
    let Some(op) = Provider::start("es256_mixed_key_set", &accounts()).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Es256").await;
    let p = setup(&app, &admin, &op).await;
    // The provider publishes one key of each kind.
    let jwks = op.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    let mut kinds: Vec<_> = keys.iter().map(|k| k["kty"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["EC", "RSA"], "{jwks}");
    assert!(keys.iter().any(|k| k["kty"] == "EC" && k["crv"] == "P-256"));

    let es = op.id_token(ES256_CLIENT, "ec-person", "n1").await;
    let h = header(&es);
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["kid"], kid_of(&jwks, "EC"), "signed with the EC key");
    let first = sign_in(&app, &p.name, es.clone(), "n1").await.unwrap();
    assert!(first.user_created);
    let user = first.user.unwrap();
    assert_eq!(user.email, "ec@es256.example");
    assert_eq!(user.display_name, "Elliptic Curve");
    assert_eq!(user.provider_profiles[0].subject, "ec-person");
    assert!(user.provider_profiles[0].email_verified);

    // The same provider's RS256 token (the other key of the set) for the same person.
    let rs = op.id_token(RS256_CLIENT, "ec-person", "n2").await;
    let h = header(&rs);
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["kid"], kid_of(&jwks, "RSA"), "signed with the RSA key");
    let second = sign_in(&app, &p.name, rs, "n2").await.unwrap();
    assert!(!second.user_created);
    assert_eq!(second.user.unwrap().name, user.name);

    // Tampered: a changed signature, or a changed payload under the original signature.
    for (forged, what) in [
        (flip_signature(&es), "signature"),
        (swap_subject(&es, "someone-else"), "payload"),
    ] {
        let r = sign_in(&app, &p.name, forged, "n1").await;
        let status = assert_code(r, Code::Unauthenticated, Some("BAD_SIGNATURE"));
        assert!(
            status.message().contains("no key"),
            "tampered {what}: {status:?}"
        );
    }
    // The genuine token still signs in; nothing was created by the refusals.
    let again = sign_in(&app, &p.name, es, "n1").await.unwrap();
    assert!(!again.user_created);
    assert_eq!(again.user.unwrap().provider_profiles.len(), 1);
}

async fn a_rotated_es256_key_is_fetched_once_per_bound(backend: Backend) {
    let Some(mut op) = Provider::start("es256_key_rotation", &accounts()).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Es256Rotate").await;
    let p = setup(&app, &admin, &op).await;
    let before = kid_of(&op.jwks().await, "EC");
    let first = sign_in(
        &app,
        &p.name,
        op.id_token(ES256_CLIENT, "ec-person", "n").await,
        "n",
    )
    .await
    .unwrap();
    // New keys: the cached key set no longer verifies the provider's tokens.
    op.restart().await;
    let after = kid_of(&op.jwks().await, "EC");
    assert_ne!(before, after, "a restart makes a new EC key");
    let token = op.id_token(ES256_CLIENT, "ec-person", "n").await;
    assert_eq!(header(&token)["kid"], after);
    // Within the refetch bound (10 s since the last fetch) the key set is not fetched again.
    let r = sign_in(&app, &p.name, token.clone(), "n").await;
    assert_code(r, Code::Unauthenticated, Some("BAD_SIGNATURE"));
    app.clock.advance(Duration::from_secs(11));
    let r = sign_in(&app, &p.name, token, "n").await.unwrap();
    assert!(!r.user_created, "the same person, the same profile");
    assert_eq!(r.user.unwrap().name, first.user.unwrap().name);
}
