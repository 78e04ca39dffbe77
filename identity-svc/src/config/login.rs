//! The `[login]` settings: what bounds the unauthenticated, password-checking work of Login and
//! AcceptInvitation (the hashing pool, the per-address rate limit, the waits after wrong
//! passwords). Environment: `IDENTITY_LOGIN__<FIELD>`, e.g. `IDENTITY_LOGIN__HASH_WORKERS=4`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Password hashes that may wait for a worker by default.
pub const DEFAULT_HASH_QUEUE: usize = 32;

/// See the module documentation; README's configuration section lists the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginSettings {
    /// Password hashes (argon2id, ≈19 MiB each) running at once; 0 means one per core.
    pub hash_workers: usize,
    /// Hashes that may wait for a worker; beyond, RESOURCE_EXHAUSTED (`SERVER_BUSY`).
    pub hash_queue: usize,
    /// Login, AcceptInvitation and SignInWithIdentityProvider calls a minute per client
    /// address, counted together (0: no limit).
    pub address_rate_per_minute: u32,
    /// Calls an address may make at once before the rate applies.
    pub address_burst: u32,
    /// Peers (reverse proxies) whose `x-forwarded-for` names the client; none by default.
    pub trusted_proxies: Vec<IpAddr>,
    /// Wrong passwords in a row before an account waits.
    pub lockout_threshold: u32,
    /// The first wait (seconds); each further wrong password doubles it.
    pub lockout_base_wait_secs: u32,
    /// The longest wait (seconds).
    pub lockout_max_wait_secs: u32,
    /// Wrong passwords are forgotten after this many seconds without one.
    pub lockout_reset_secs: u32,
    /// Days an address stays familiar after a successful login from it (its own counters,
    /// not held by the account's wait).
    pub familiar_address_days: u32,
    /// Most familiar (account, address) pairs kept in memory.
    pub familiar_addresses_max: usize,
}

impl Default for LoginSettings {
    /// The defaults the service runs with (`core::lockout::LockoutPolicy::default` and the
    /// core's hashing pool are these).
    fn default() -> Self {
        Self {
            hash_workers: 0,
            hash_queue: DEFAULT_HASH_QUEUE,
            address_rate_per_minute: 120,
            address_burst: 20,
            trusted_proxies: Vec::new(),
            lockout_threshold: 5,
            lockout_base_wait_secs: 60,
            lockout_max_wait_secs: 15 * 60,
            lockout_reset_secs: 12 * 3600,
            familiar_address_days: 30,
            familiar_addresses_max: 100_000,
        }
    }
}
