//! The `[login]` settings: what bounds the unauthenticated, password-checking work of Login and
//! AcceptInvitation (the hashing pool, the per-address rate limit, the waits after wrong
//! passwords). Environment: `IDENTITY_LOGIN__<FIELD>`, e.g. `IDENTITY_LOGIN__HASH_WORKERS=4`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::core::hashing::{DEFAULT_QUEUE, HashPool};
use crate::core::lockout::LockoutPolicy;
use crate::grpc::throttle::AddressLimits;

const SEC: i64 = 1_000_000;

/// See the module documentation; README's configuration section lists the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginSettings {
    /// Password hashes (argon2id, ≈19 MiB each) running at once; 0 means one per core.
    pub hash_workers: usize,
    /// Hashes that may wait for a worker; beyond, RESOURCE_EXHAUSTED (`SERVER_BUSY`).
    pub hash_queue: usize,
    /// Login and AcceptInvitation calls a minute per client address (0: no limit).
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
    fn default() -> Self {
        let lockout = LockoutPolicy::default();
        let secs = |m: i64| u32::try_from(m / SEC).unwrap_or(u32::MAX);
        Self {
            hash_workers: 0,
            hash_queue: DEFAULT_QUEUE,
            address_rate_per_minute: 120,
            address_burst: 20,
            trusted_proxies: Vec::new(),
            lockout_threshold: lockout.threshold,
            lockout_base_wait_secs: secs(lockout.base_wait),
            lockout_max_wait_secs: secs(lockout.max_wait),
            lockout_reset_secs: secs(lockout.reset_after),
            familiar_address_days: secs(lockout.familiar_for) / 86_400,
            familiar_addresses_max: lockout.familiar_max,
        }
    }
}

impl LoginSettings {
    /// The hashing pool.
    pub fn hash_pool(&self) -> HashPool {
        HashPool::new(self.hash_workers, self.hash_queue)
    }

    /// The waits after wrong passwords.
    pub fn lockout(&self) -> LockoutPolicy {
        LockoutPolicy {
            threshold: self.lockout_threshold.max(1),
            base_wait: i64::from(self.lockout_base_wait_secs) * SEC,
            max_wait: i64::from(self.lockout_max_wait_secs) * SEC,
            reset_after: i64::from(self.lockout_reset_secs) * SEC,
            familiar_for: i64::from(self.familiar_address_days) * 86_400 * SEC,
            familiar_max: self.familiar_addresses_max,
        }
    }

    /// The per-address rate limit.
    pub fn address_limits(&self) -> AddressLimits {
        AddressLimits::new(
            self.address_rate_per_minute,
            self.address_burst,
            self.trusted_proxies.clone(),
        )
    }
}
