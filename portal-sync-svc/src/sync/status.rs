//! What the sync of one infrastructure looks like now, for `Sync.GetSyncStatus` and the
//! metrics: the cursor, identity's sequence, the health, and whether the worker can see
//! identity at all (staleness, and whether the lag is known).

use std::time::Duration;

use super::failure::SyncHealth;
use crate::domain::model::Micros;

/// Gauge of the seconds since identity last answered an infrastructure's sync (0 while its
/// change feed is open), labelled `infrastructure` (its resource name).
pub const STALENESS_SECONDS: &str = "portal_sync_staleness_seconds";
/// Gauge of the events identity has committed that an infrastructure's records do not reflect
/// yet, labelled `infrastructure`; NaN while unknown (identity unreachable or refusing).
pub const LAG_EVENTS: &str = "portal_sync_lag_events";

/// What the sync of one infrastructure looks like now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusView {
    /// The infrastructure's resource name (the metrics' label).
    pub infrastructure: String,
    /// Identity sequence the records reflect.
    pub cursor: u64,
    /// Identity's latest sequence as last seen.
    pub identity_sequence: u64,
    /// Last full snapshot.
    pub last_snapshot_time: Option<Micros>,
    /// Last error, as a sentence for the operator (empty when healthy).
    pub last_error: String,
    /// How the sync is doing.
    pub health: SyncHealth,
    /// Last time the worker applied something or confirmed it was current.
    pub last_sync_time: Option<Micros>,
    /// The change feed is open: identity answers, and `identity_sequence` is current.
    pub following: bool,
    /// When identity last answered (a snapshot, the feed opening, an event, the feed breaking),
    /// or when the worker started if it has not answered since; None before the worker ran.
    pub last_answered: Option<Micros>,
    /// The replica that holds the infrastructure's sync lease (runs its sync); empty when none.
    pub holder: String,
    /// When the holder's lease lapses unless renewed (None when no replica holds it).
    pub lease_expire_time: Option<Micros>,
}

impl StatusView {
    /// How long the records may have been missing identity's changes, at `now`: zero while
    /// the feed is open, else the time since identity last answered.
    pub fn staleness(&self, now: Micros) -> Option<Duration> {
        if self.following {
            return Some(Duration::ZERO);
        }
        let since = self.last_answered?;
        Some(Duration::from_micros(
            u64::try_from(now.saturating_sub(since)).unwrap_or(0),
        ))
    }

    /// The events identity has committed that the records do not reflect yet, when known.
    pub fn lag(&self) -> Option<u64> {
        self.following
            .then(|| self.identity_sequence.saturating_sub(self.cursor))
    }

    /// The lag when identity last answered (the lag, when it is known).
    pub fn last_lag(&self) -> u64 {
        self.identity_sequence.saturating_sub(self.cursor)
    }

    /// Sets the metrics of this infrastructure.
    pub(super) fn publish(&self, now: Micros) {
        if self.infrastructure.is_empty() {
            return;
        }
        let label = ("infrastructure", self.infrastructure.clone());
        if let Some(s) = self.staleness(now) {
            ::metrics::gauge!(STALENESS_SECONDS, std::slice::from_ref(&label)).set(s.as_secs_f64());
        }
        #[allow(clippy::cast_precision_loss)] // a lag beyond 2^53 events is not a concern
        let lag = self.lag().map_or(f64::NAN, |l| l as f64);
        ::metrics::gauge!(LAG_EVENTS, &[label]).set(lag);
    }
}

/// Describes the sync's gauges (once, at start).
pub(super) fn describe() {
    ::metrics::describe_gauge!(
        STALENESS_SECONDS,
        ::metrics::Unit::Seconds,
        "Seconds since identity last answered an ODC infrastructure's sync: 0 while its change \
         feed is open; grows while identity is unreachable or refuses the token."
    );
    ::metrics::describe_gauge!(
        LAG_EVENTS,
        "Change events identity has committed that an ODC infrastructure's records do not \
         reflect yet; NaN while unknown (identity unreachable or refusing the token)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_and_lag_tell_blind_from_caught_up() {
        let mut v = StatusView {
            cursor: 7,
            identity_sequence: 9,
            following: true,
            last_answered: Some(1_000_000),
            ..StatusView::default()
        };
        assert_eq!(v.staleness(5_000_000), Some(Duration::ZERO));
        assert_eq!(v.lag(), Some(2));
        v.following = false;
        assert_eq!(v.staleness(5_000_000), Some(Duration::from_secs(4)));
        assert_eq!(v.lag(), None);
        assert_eq!(v.last_lag(), 2);
        assert_eq!(StatusView::default().staleness(5), None);
    }
}
