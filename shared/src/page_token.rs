//! Opaque page tokens and page-size handling for `List` RPCs (AIP-158).
//!
//! A token is the base64url (no padding) encoding of a JSON cursor chosen by the service, e.g.
//! `{"after": "<last id>"}`. Clients must treat it as opaque; being base64 keeps it out of
//! their hands in practice while staying trivial to debug. Tokens are not signed: the cursor
//! must only contain values the caller may see anyway, and the service must re-check
//! authorization on every page. AIP-158 also requires rejecting a token used with different
//! request parameters; include a fingerprint of the filter/order in the cursor to detect that.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Longest token [`decode`] accepts, in characters; a cheap guard against oversized input.
pub const MAX_TOKEN_LEN: usize = 2048;

/// The page token could not be decoded: not ours, corrupted, or from an incompatible version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid page token")]
pub struct InvalidPageToken;

/// The requested `page_size` was negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page_size must not be negative, got {0}")]
pub struct InvalidPageSize(pub i32);

/// Encodes `cursor` as an opaque page token.
///
/// # Panics
///
/// If `cursor` cannot be serialized to JSON (a map with non-string keys, or a failing custom
/// `Serialize`) — a programming error that any test of the `List` RPC reveals. Use
/// [`try_encode`] to handle it instead.
pub fn encode<T: Serialize>(cursor: &T) -> String {
    match try_encode(cursor) {
        Ok(token) => token,
        Err(error) => panic!("page token cursor is not serializable to JSON: {error}"),
    }
}

/// Encodes `cursor` as an opaque page token, reporting serialization failures.
pub fn try_encode<T: Serialize>(cursor: &T) -> Result<String, serde_json::Error> {
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor)?))
}

/// Decodes a token produced by [`encode`] back into its cursor.
///
/// An empty token is an error here; use [`decode_opt`] where empty means "first page".
pub fn decode<T: DeserializeOwned>(token: &str) -> Result<T, InvalidPageToken> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(InvalidPageToken);
    }
    let json = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| InvalidPageToken)?;
    serde_json::from_slice(&json).map_err(|_| InvalidPageToken)
}

/// Like [`decode`], but an empty token (the first page) yields `Ok(None)`.
pub fn decode_opt<T: DeserializeOwned>(token: &str) -> Result<Option<T>, InvalidPageToken> {
    if token.is_empty() {
        Ok(None)
    } else {
        decode(token).map(Some)
    }
}

/// The number of items to return for a requested `page_size`: `0` (unset) means `default`,
/// larger than `max` is lowered to `max`, negative is an error (AIP-158).
pub fn clamp_page_size(
    requested: i32,
    default: usize,
    max: usize,
) -> Result<usize, InvalidPageSize> {
    match usize::try_from(requested) {
        Err(_) => Err(InvalidPageSize(requested)),
        Ok(0) => Ok(default.min(max)),
        Ok(n) => Ok(n.min(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Cursor {
        after: String,
        filter_hash: u64,
    }

    #[test]
    fn round_trip() {
        let cursor = Cursor {
            after: "users/0190-ü/?&".into(),
            filter_hash: u64::MAX,
        };
        let token = encode(&cursor);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert_eq!(decode::<Cursor>(&token).unwrap(), cursor);
        assert_eq!(decode_opt::<Cursor>(&token).unwrap(), Some(cursor));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode::<Cursor>(""), Err(InvalidPageToken));
        assert_eq!(decode::<Cursor>("not base64!"), Err(InvalidPageToken));
        // Valid base64 of valid JSON, but not a Cursor.
        assert_eq!(decode::<Cursor>(&encode(&[1, 2])), Err(InvalidPageToken));
        // Padding is not part of our format.
        let padded = format!("{}==", encode(&"ab"));
        assert_eq!(decode::<String>(&padded), Err(InvalidPageToken));
        assert_eq!(
            decode::<String>(&"A".repeat(MAX_TOKEN_LEN + 1)),
            Err(InvalidPageToken)
        );
        assert_eq!(decode_opt::<Cursor>(""), Ok(None));
    }

    #[test]
    fn try_encode_reports_unserializable_cursors() {
        let map = std::collections::HashMap::from([((1, 2), 3)]);
        assert!(try_encode(&map).is_err());
    }

    #[test]
    fn page_size() {
        assert_eq!(clamp_page_size(0, 50, 1000), Ok(50));
        assert_eq!(clamp_page_size(10, 50, 1000), Ok(10));
        assert_eq!(clamp_page_size(5000, 50, 1000), Ok(1000));
        assert_eq!(clamp_page_size(0, 5000, 1000), Ok(1000));
        assert_eq!(clamp_page_size(-1, 50, 1000), Err(InvalidPageSize(-1)));
    }
}
