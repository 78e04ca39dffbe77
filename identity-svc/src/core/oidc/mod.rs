//! OpenID Connect ID tokens of external identity providers: the [`Verifier`] with its cache of
//! each provider's key set (`discovery`: discovery document and JWKS over HTTP(S); `verify`:
//! the checks, without I/O).
//!
//! The cache is keyed by issuer. A token signed with a key the cache does not hold (a new
//! `kid`, or no `kid` and no cached key verifies it) fetches the key set again, at most once
//! per `jwks_refetch_min_secs` per issuer, measured with the service clock; a fetch is never
//! made while a lock is held (the cache's mutex is held only to read or swap an entry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;
use serde_json::{Map, Value};

use crate::config::OidcSettings;
use crate::config::oidc::MAX_CLOCK_SKEW_SECS;
use crate::domain::model::Micros;
use crate::error::{Error, Own};

mod discovery;
mod verify;

pub use verify::Expectation;

/// The claims of a verified ID token that sign-in uses, plus all of them.
#[derive(Debug, Clone)]
pub struct IdTokenClaims {
    /// `sub`: 1 to 255 printable ASCII characters.
    pub subject: String,
    /// `email`, when present, short and without control characters (not validated further).
    pub email: Option<String>,
    /// `email_verified` (`true` or `"true"`).
    pub email_verified: bool,
    /// `preferred_username`, as `email`.
    pub preferred_username: Option<String>,
    /// `name`, as `email`.
    pub name: Option<String>,
    /// Every claim of the token.
    pub claims: Map<String, Value>,
}

/// Why a token was refused; each maps to one `ErrorInfo` reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JWS, or a required claim missing or malformed.
    Malformed(String),
    /// Neither RS256 nor ES256.
    UnsupportedAlgorithm(String),
    /// `iss` is not the provider's.
    WrongIssuer(String),
    /// No key of the provider verifies the signature.
    BadSignature,
    /// `aud` holds neither the client id nor an allowed audience.
    WrongAudience(String),
    /// Past `exp` (plus the skew).
    Expired,
    /// Before `nbf` (minus the skew).
    NotYetValid,
    /// `iat` in the future (beyond the skew).
    IssuedInFuture,
    /// `nonce` differs from the request's.
    WrongNonce,
    /// The discovery document or key set could not be fetched.
    Unavailable(String),
}

impl Refusal {
    /// The `ErrorInfo` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "MALFORMED_TOKEN",
            Refusal::UnsupportedAlgorithm(_) => "UNSUPPORTED_ALGORITHM",
            Refusal::WrongIssuer(_) => "WRONG_ISSUER",
            Refusal::BadSignature => "BAD_SIGNATURE",
            Refusal::WrongAudience(_) => "WRONG_AUDIENCE",
            Refusal::Expired => "TOKEN_EXPIRED",
            Refusal::NotYetValid => "TOKEN_NOT_YET_VALID",
            Refusal::IssuedInFuture => "TOKEN_ISSUED_IN_FUTURE",
            Refusal::WrongNonce => "WRONG_NONCE",
            Refusal::Unavailable(_) => "IDENTITY_PROVIDER_UNAVAILABLE",
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Malformed(m)
            | Refusal::WrongIssuer(m)
            | Refusal::WrongAudience(m)
            | Refusal::Unavailable(m) => m.clone(),
            Refusal::UnsupportedAlgorithm(a) => {
                format!("ID tokens signed with {a} are not accepted (RS256, ES256)")
            }
            Refusal::BadSignature => "no key of the identity provider verifies the token".into(),
            Refusal::Expired => "the ID token has expired".into(),
            Refusal::NotYetValid => "the ID token is not valid yet".into(),
            Refusal::IssuedInFuture => "the ID token was issued in the future".into(),
            Refusal::WrongNonce => "the ID token's nonce is not the request's".into(),
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        let reason = r.reason();
        let message = r.message();
        match r {
            Refusal::Unavailable(_) => Error::Own(Own::ProviderUnavailable(message)),
            _ => Error::Own(Own::SignInRefused { reason, message }),
        }
    }
}

/// The cached key set of one issuer.
#[derive(Debug, Default)]
struct Entry {
    /// The keys and when they were fetched.
    keys: Option<(Arc<JwkSet>, Micros)>,
    /// The last fetch started (successful or not): bounds refetches.
    last_attempt: Option<Micros>,
}

/// Verifies ID tokens; one per core, shared by every organization.
#[derive(Debug)]
pub struct Verifier {
    http: reqwest::Client,
    settings: OidcSettings,
    cache: Mutex<HashMap<String, Entry>>,
}

impl Verifier {
    /// A verifier with `settings`; fails only if the TLS client cannot be built.
    pub fn new(settings: &OidcSettings) -> Result<Self, reqwest::Error> {
        let timeout = std::time::Duration::from_millis(settings.http_timeout_ms.max(1));
        Ok(Self {
            http: discovery::client(timeout, settings.allow_http_issuers)?,
            settings: settings.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether an issuer's scheme is accepted: https, or http when the settings allow it.
    pub fn accepts_scheme(&self, issuer: &str) -> bool {
        issuer.starts_with("https://")
            || (self.settings.allow_http_issuers && issuer.starts_with("http://"))
    }

    fn entry<R>(&self, issuer: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(cache.entry(issuer.to_owned()).or_default())
    }

    /// The cached keys of `issuer` if still fresh.
    fn cached(&self, issuer: &str, now: Micros) -> Option<Arc<JwkSet>> {
        let ttl = Micros::from(self.settings.jwks_cache_secs) * 1_000_000;
        self.entry(issuer, |e| {
            e.keys
                .as_ref()
                .filter(|(_, at)| now - at < ttl)
                .map(|(k, _)| Arc::clone(k))
        })
    }

    /// Fetches the keys of `issuer` unless a fetch started less than the refetch bound ago
    /// (`force` ignores the bound: there is nothing cached to use). `None`: not fetched.
    async fn fetch(
        &self,
        issuer: &str,
        now: Micros,
        force: bool,
    ) -> Result<Option<Arc<JwkSet>>, Refusal> {
        let bound = Micros::from(self.settings.jwks_refetch_min_secs) * 1_000_000;
        let go = self.entry(issuer, |e| {
            let allowed = force || e.last_attempt.is_none_or(|at| now - at >= bound);
            if allowed {
                e.last_attempt = Some(now);
            }
            allowed
        });
        if !go {
            return Ok(None);
        }
        let keys = Arc::new(discovery::fetch_keys(&self.http, issuer).await?);
        self.entry(issuer, |e| e.keys = Some((Arc::clone(&keys), now)));
        Ok(Some(keys))
    }

    /// Verifies `token` as an ID token of the provider `expect` describes, at `now`.
    pub async fn verify(
        &self,
        token: &str,
        expect: &Expectation,
        now: Micros,
    ) -> Result<IdTokenClaims, Refusal> {
        let u = verify::inspect(token, &expect.issuer)?;
        // Nothing fresh cached: fetch (the refetch bound is for unknown keys only).
        let (keys, fresh) = match self.cached(&expect.issuer, now) {
            Some(k) => (k, false),
            None => (
                self.fetch(&expect.issuer, now, true)
                    .await?
                    .ok_or(Refusal::BadSignature)?,
                true,
            ),
        };
        let mut payload = verify::signed_payload(token, &u, &keys);
        if payload.is_none() && !fresh {
            // An unknown key: the provider may have rotated its keys.
            if let Some(k) = self.fetch(&expect.issuer, now, false).await? {
                payload = verify::signed_payload(token, &u, &k);
            }
        }
        let payload = payload.ok_or(Refusal::BadSignature)?;
        let skew = Micros::from(self.settings.clock_skew_secs.min(MAX_CLOCK_SKEW_SECS)) * 1_000_000;
        verify::check_claims(&payload, expect, now, skew)?;
        verify::identity(payload)
    }
}
