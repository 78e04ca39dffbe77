//! Caller credentials: reading a bearer token from request metadata, and keeping secrets out
//! of logs.
//!
//! Verifying the token is the service's business; this module only does the parsing both
//! services would otherwise each get slightly wrong (scheme case, stray whitespace).

use std::fmt;

use serde::Deserialize;
use tonic::metadata::MetadataMap;

/// The token of an `authorization: Bearer <token>` header (RFC 6750), if present.
///
/// The scheme is matched case-insensitively; surrounding whitespace is ignored. Returns `None`
/// when the header is missing, not ASCII, uses another scheme, or the token is empty or
/// contains whitespace. Works in interceptors too (`Request<()>`).
pub fn bearer_token<T>(req: &tonic::Request<T>) -> Option<&str> {
    bearer_token_from_metadata(req.metadata())
}

/// [`bearer_token`] for a bare [`MetadataMap`] (e.g. in a tower layer).
pub fn bearer_token_from_metadata(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(|c: char| c.is_ascii_whitespace()))
    .then_some(token)
}

/// A secret string (password, API key, token) whose `Debug` and `Display` print `***`, so it
/// cannot leak through logs or error messages by accident.
///
/// There is deliberately no `PartialEq`: compare with [`Secret::matches`], which does not leak
/// the position of the first difference through timing.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is actually needed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time that depends only on the lengths.
    pub fn matches(&self, candidate: &str) -> bool {
        crate::secrets::constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> tonic::Request<()> {
        let mut req = tonic::Request::new(());
        if let Some(value) = authorization {
            req.metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        req
    }

    #[test]
    fn parses_bearer_tokens() {
        let cases = [
            (Some("Bearer abc.def"), Some("abc.def")),
            (Some("bearer abc"), Some("abc")),
            (Some("BEARER   abc  "), Some("abc")),
            (Some("  Bearer abc"), Some("abc")),
            (Some("Basic dXNlcjpwdw=="), None),
            (Some("Bearer"), None),
            (Some("Bearer "), None),
            (Some("Bearer a b"), None),
            (Some("Bearerabc"), None),
            (None, None),
        ];
        for (header, expected) in cases {
            let req = request(header);
            assert_eq!(bearer_token(&req), expected, "{header:?}");
        }
    }

    #[test]
    fn secret_is_redacted_and_compares() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
        assert!(secret.matches("hunter2"));
        assert!(!secret.matches("hunter3"));
        assert!(!secret.matches("hunter22"));
        let parsed: Secret = serde_json::from_str(r#""s3cret""#).unwrap();
        assert_eq!(parsed.expose(), "s3cret");
    }
}
