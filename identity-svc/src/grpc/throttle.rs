//! The per-client-address rate limit of the public, password-checking RPCs (Login and
//! AcceptInvitation share one budget per address): a keyed GCRA limiter (`governor`) answering
//! RESOURCE_EXHAUSTED with `ErrorInfo { reason: "TOO_MANY_REQUESTS" }` and a `RetryInfo`
//! holding the wait, before any password is hashed.
//!
//! The key is the TCP peer's address; IPv6 addresses count per /64 (one host usually has the
//! whole prefix). `x-forwarded-for` is believed only when the peer is one of the configured
//! trusted proxies (none by default: any client could write the header), and then the client is
//! its right-most address that is not itself a trusted proxy.
//!
//! Memory stays bounded: [`AddressLimits::sweep`] (every few seconds, from the server) drops
//! the addresses whose budget is full again, so only addresses seen within the last
//! `burst / rate` are kept.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::core::lockout::THROTTLED_TOTAL;
use crate::error::{ADDRESS_RATE, Error, Own};

/// The header a trusted proxy names the client in.
pub const FORWARDED_FOR: &str = "x-forwarded-for";
/// The `reason` label of the throttled-login counter for the per-address limit.
pub const ADDRESS_RATE_LABEL: &str = "address_rate";

/// The per-address limit (see the module documentation).
#[derive(Debug)]
pub struct AddressLimits {
    /// `None`: no limit.
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpAddr>,
}

impl AddressLimits {
    /// The limits `[login]` asks for.
    pub fn from_settings(settings: &crate::config::LoginSettings) -> Self {
        Self::new(
            settings.address_rate_per_minute,
            settings.address_burst,
            settings.trusted_proxies.clone(),
        )
    }

    /// `per_minute` calls a minute per address, up to `burst` at once; `per_minute` 0 turns
    /// the limit off. `trusted_proxies`: peers whose `x-forwarded-for` is believed.
    pub fn new(per_minute: u32, burst: u32, trusted_proxies: Vec<IpAddr>) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            DefaultKeyedRateLimiter::dashmap(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            limiter,
            trusted_proxies,
        }
    }

    /// The client's address: the peer's, or (from a trusted proxy) the right-most address of
    /// `x-forwarded-for` that is not a trusted proxy.
    pub fn client(&self, peer: Option<IpAddr>, md: &MetadataMap) -> Option<IpAddr> {
        let peer = peer.map(canonical)?;
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded = md
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
                // A hop we cannot read: the ones left of it are the client's to write.
                return Some(peer);
            };
            if !self.trusted_proxies.contains(&ip) {
                return Some(ip);
            }
        }
        Some(peer)
    }

    /// Counts one call of `client`; RESOURCE_EXHAUSTED (with the wait) past its budget. A call
    /// without an address counts under the unspecified address.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Status> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let key = key(client.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        limiter.check_key(&key).map_err(|not_until| {
            metrics::counter!(THROTTLED_TOTAL, "reason" => ADDRESS_RATE_LABEL).increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::Own(Own::Throttled {
                reason: ADDRESS_RATE,
                message: format!(
                    "too many login attempts from this address; retry in {} ms",
                    wait.as_millis().max(1)
                ),
                retry_after: wait,
            })
            .into_status()
        })
    }

    /// Forgets the addresses whose budget is full again (bounded memory).
    pub fn sweep(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(0, DefaultKeyedRateLimiter::len)
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The limiter's key: the address, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1_u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;
    use tonic_types::StatusExt as _;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_forwarded_header_counts_only_from_a_trusted_proxy() {
        let limits = AddressLimits::new(60, 5, vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        let mut md = MetadataMap::new();
        md.insert(
            FORWARDED_FOR,
            MetadataValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.2"),
        );
        assert_eq!(
            limits.client(Some(ip("10.0.0.1")), &md),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            limits.client(Some(ip("198.51.100.7")), &md),
            Some(ip("198.51.100.7"))
        );
        md.insert(FORWARDED_FOR, MetadataValue::from_static("junk, 10.0.0.2"));
        assert_eq!(
            limits.client(Some(ip("10.0.0.1")), &md),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            limits.client(Some(ip("::ffff:10.0.0.1")), &MetadataMap::new()),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn the_budget_is_per_address_and_ipv6_counts_per_prefix() {
        let limits = AddressLimits::new(1, 2, Vec::new());
        let a = Some(ip("192.0.2.1"));
        assert!(limits.check(a).is_ok());
        assert!(limits.check(a).is_ok());
        let refused = limits.check(a).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let retry = refused
            .get_details_retry_info()
            .unwrap()
            .retry_delay
            .unwrap();
        assert!(retry > std::time::Duration::from_secs(50), "{retry:?}");
        assert!(limits.check(Some(ip("192.0.2.2"))).is_ok());
        assert!(limits.check(Some(ip("2001:db8::1"))).is_ok());
        assert!(limits.check(Some(ip("2001:db8::2"))).is_ok());
        assert!(limits.check(Some(ip("2001:db8::3"))).is_err());
        assert!(limits.check(Some(ip("2001:db8:0:1::1"))).is_ok());
        assert_eq!(limits.tracked(), 4);
    }

    #[test]
    fn no_rate_means_no_limit() {
        let limits = AddressLimits::new(0, 0, Vec::new());
        for _ in 0..100 {
            assert!(limits.check(None).is_ok());
        }
    }
}
