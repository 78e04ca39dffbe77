//! The `[oidc]` settings: how ID tokens of external identity providers are verified (clock
//! skew, the cache of discovery documents and key sets, the HTTP client that fetches them).
//! Environment: `IDENTITY_OIDC__<FIELD>`, e.g. `IDENTITY_OIDC__CLOCK_SKEW_SECS=30`.

use serde::{Deserialize, Serialize};

/// The largest clock skew accepted, whatever the setting says (seconds).
pub const MAX_CLOCK_SKEW_SECS: u32 = 300;

/// See the module documentation; README's configuration section lists the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OidcSettings {
    /// Skew allowed between the provider's clock and ours when checking `exp`, `nbf` and
    /// `iat` (seconds; at most [`MAX_CLOCK_SKEW_SECS`]).
    pub clock_skew_secs: u32,
    /// How long a provider's key set is used before it is fetched again (seconds).
    pub jwks_cache_secs: u32,
    /// A token signed with a key the cache does not know makes the key set be fetched again,
    /// at most once per this many seconds per provider (so forged tokens cannot make the
    /// service hammer a provider).
    pub jwks_refetch_min_secs: u32,
    /// Timeout of each fetch of a discovery document or key set (milliseconds).
    pub http_timeout_ms: u64,
    /// Accept `http://` issuers (tests, a provider on the same host); off: https only.
    pub allow_http_issuers: bool,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            clock_skew_secs: 60,
            jwks_cache_secs: 3600,
            jwks_refetch_min_secs: 10,
            http_timeout_ms: 5000,
            allow_http_issuers: false,
        }
    }
}
