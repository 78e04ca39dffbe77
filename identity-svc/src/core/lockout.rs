//! Brute-force protection of accounts (Login), after Keycloak's brute-force detection with the
//! familiar/unfamiliar split of smart-lockout schemes:
//!
//! * **An increasing wait per account.** Wrong passwords are counted; from the `threshold`-th
//!   on, every one makes the account wait `min(base × 2^(failures − threshold), max)` before
//!   the next password is checked. A success resets the count, and so does a quiet period
//!   (`reset_after` without a failure once the last wait is over). A login during the wait is
//!   refused (RESOURCE_EXHAUSTED, `LOCKED_OUT`, `RetryInfo` = the rest of the wait) without
//!   checking the password, so it costs no hashing.
//! * **Familiar addresses have counters of their own.** An address the account logged in
//!   from successfully (within `familiar_for`) is not held by the account's wait: it has its
//!   own count and wait, grown only by its own wrong passwords. An attacker guessing from
//!   elsewhere keeps the account's wait growing (so guessing stays slow, from any number of
//!   addresses), but cannot keep the user out of the places the user logs in from. A user on a
//!   new address during an attack waits like the attacker, up to `max` at a time: the bound
//!   README documents.
//!
//! The account's counters are in the store (every replica counts them); the familiar addresses
//! are in this replica's memory, bounded by `familiar_max` entries (the oldest are dropped), and
//! start empty on a restart. A successful login from an unfamiliar address resets the account
//! counter and makes the address familiar.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use uuid::Uuid;

use crate::config::LoginSettings;
use crate::domain::model::Micros;

/// Counter of logins and invitation acceptances refused before their password was checked,
/// by `reason`: `address_rate`, `pool_full`, `account_wait`.
pub const THROTTLED_TOTAL: &str = "identity_login_throttled_total";
/// Counter of accounts (or familiar addresses of an account) entering a wait, by `scope`:
/// `account` or `familiar_address`.
pub const LOCKOUTS_TOTAL: &str = "identity_login_lockouts_total";
/// The `reason` label of [`THROTTLED_TOTAL`] for a login refused during a wait.
pub const ACCOUNT_WAIT: &str = "account_wait";

/// The waits after wrong passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Wrong passwords in a row before the first wait.
    pub threshold: u32,
    /// The first wait; each further wrong password doubles it.
    pub base_wait: Micros,
    /// The longest wait.
    pub max_wait: Micros,
    /// Failures are forgotten after this long without one, counted from the end of the last
    /// wait.
    pub reset_after: Micros,
    /// How long an address stays familiar after a successful login from it.
    pub familiar_for: Micros,
    /// Most familiar (account, address) pairs kept in memory.
    pub familiar_max: usize,
}

impl Default for LockoutPolicy {
    /// The `[login]` defaults.
    fn default() -> Self {
        Self::from(&LoginSettings::default())
    }
}

impl From<&LoginSettings> for LockoutPolicy {
    fn from(s: &LoginSettings) -> Self {
        const SEC: Micros = 1_000_000;
        Self {
            threshold: s.lockout_threshold.max(1),
            base_wait: Micros::from(s.lockout_base_wait_secs) * SEC,
            max_wait: Micros::from(s.lockout_max_wait_secs) * SEC,
            reset_after: Micros::from(s.lockout_reset_secs) * SEC,
            familiar_for: Micros::from(s.familiar_address_days) * 86_400 * SEC,
            familiar_max: s.familiar_addresses_max,
        }
    }
}

/// A failure count and the time before which no password is checked (the time of the last
/// failure plus its wait; `None` when no failure is known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    /// Wrong passwords in a row.
    pub count: u32,
    /// No password is checked before this time.
    pub until: Option<Micros>,
}

impl LockoutPolicy {
    /// The wait after the `failures`-th wrong password in a row.
    pub fn wait(&self, failures: u32) -> Micros {
        if failures < self.threshold {
            return 0;
        }
        let doublings = failures - self.threshold;
        if doublings >= 40 {
            return self.max_wait;
        }
        self.base_wait
            .saturating_mul(1_i64 << doublings)
            .min(self.max_wait)
    }

    /// `stored` as of `now`: forgotten when the quiet period has passed.
    pub fn current(&self, stored: Failures, now: Micros) -> Failures {
        match stored.until {
            Some(until) if now.saturating_sub(until) >= self.reset_after => Failures::default(),
            _ => stored,
        }
    }

    /// How long a login at `now` must still wait, if at all.
    pub fn remaining(&self, failures: Failures, now: Micros) -> Option<Micros> {
        failures.until.filter(|u| *u > now).map(|u| u - now)
    }

    /// The counters after one more wrong password at `now`; the flag says a wait begins.
    pub fn failed(&self, failures: Failures, now: Micros) -> (Failures, bool) {
        let count = self.current(failures, now).count.saturating_add(1);
        let wait = self.wait(count);
        (
            Failures {
                count,
                until: Some(now + wait),
            },
            wait > 0,
        )
    }
}

/// One familiar address of one account.
#[derive(Debug, Clone, Copy)]
struct Familiar {
    /// The last successful login from it.
    last_success: Micros,
    /// Its own wrong passwords.
    failures: Failures,
}

/// The familiar addresses of every account, in memory (see the module documentation).
#[derive(Debug, Default)]
pub struct FamiliarAddresses {
    pairs: Mutex<HashMap<(Uuid, IpAddr), Familiar>>,
}

impl FamiliarAddresses {
    fn pairs(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, IpAddr), Familiar>> {
        self.pairs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The failures of `address` if it is familiar to `user` at `now`.
    pub fn get(
        &self,
        policy: &LockoutPolicy,
        user: Uuid,
        address: IpAddr,
        now: Micros,
    ) -> Option<Failures> {
        let pairs = self.pairs();
        let f = pairs.get(&(user, address))?;
        (now - f.last_success < policy.familiar_for).then(|| policy.current(f.failures, now))
    }

    /// Records the failures of a familiar address.
    pub fn set_failures(&self, user: Uuid, address: IpAddr, failures: Failures) {
        if let Some(f) = self.pairs().get_mut(&(user, address)) {
            f.failures = failures;
        }
    }

    /// A successful login of `user` from `address` at `now`: the address is familiar, with no
    /// failures. Beyond `familiar_max` pairs, the expired and then the oldest are dropped.
    pub fn succeeded(&self, policy: &LockoutPolicy, user: Uuid, address: IpAddr, now: Micros) {
        let mut pairs = self.pairs();
        if pairs.len() >= policy.familiar_max.max(1) && !pairs.contains_key(&(user, address)) {
            pairs.retain(|_, f| now - f.last_success < policy.familiar_for);
            if pairs.len() >= policy.familiar_max.max(1) {
                // Drop the oldest eighth at once, so a full map is not scanned on every login.
                let mut times: Vec<Micros> = pairs.values().map(|f| f.last_success).collect();
                let cut = (times.len() / 8).max(1) - 1;
                let (_, oldest, _) = times.select_nth_unstable(cut);
                let oldest = *oldest;
                pairs.retain(|_, f| f.last_success > oldest);
            }
        }
        pairs.insert(
            (user, address),
            Familiar {
                last_success: now,
                failures: Failures::default(),
            },
        );
    }

    /// How many pairs are kept.
    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Micros = 1_000_000;

    #[test]
    fn the_wait_starts_at_the_threshold_doubles_and_is_capped() {
        let p = LockoutPolicy::default();
        let waits: Vec<Micros> = (1..=12).map(|n| p.wait(n) / SEC).collect();
        assert_eq!(waits, [0, 0, 0, 0, 60, 120, 240, 480, 900, 900, 900, 900]);
        assert_eq!(p.wait(u32::MAX), p.max_wait);
    }

    #[test]
    fn failures_are_forgotten_after_the_quiet_period() {
        let p = LockoutPolicy::default();
        let mut f = Failures::default();
        let t0 = 1_000 * SEC;
        for i in 0..5 {
            (f, _) = p.failed(f, t0 + i);
        }
        assert_eq!(f.count, 5);
        let end = f.until.unwrap();
        assert_eq!(p.remaining(f, t0 + 4), Some(end - t0 - 4));
        assert_eq!(p.current(f, end + p.reset_after - 1), f);
        assert_eq!(p.current(f, end + p.reset_after), Failures::default());
        let (after, waits) = p.failed(f, end + p.reset_after);
        assert_eq!((after.count, waits), (1, false));
    }

    #[test]
    fn familiar_addresses_expire_and_stay_bounded() {
        let p = LockoutPolicy {
            familiar_max: 16,
            ..LockoutPolicy::default()
        };
        let fam = FamiliarAddresses::default();
        let user = Uuid::new_v4();
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        fam.succeeded(&p, user, ip(1), 0);
        assert_eq!(fam.get(&p, user, ip(1), 5), Some(Failures::default()));
        assert_eq!(fam.get(&p, user, ip(2), 5), None);
        assert_eq!(fam.get(&p, Uuid::new_v4(), ip(1), 5), None);
        assert_eq!(fam.get(&p, user, ip(1), p.familiar_for), None);
        for i in 0..100 {
            fam.succeeded(&p, user, ip(i), Micros::from(i) + 1);
        }
        assert!(fam.len() <= 16);
        assert!(fam.get(&p, user, ip(99), 200).is_some(), "the newest stays");
    }
}
