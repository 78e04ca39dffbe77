//! The sync lease of each ODC infrastructure, as this replica holds it: several replicas may
//! share one database, and each infrastructure's sync runs on exactly one of them at a time.
//!
//! A worker acquires its infrastructure's lease (`sync_leases`, [`LeaseStore`]) for
//! `lease_ttl_ms`, or waits while another replica holds it (until it lapses, polling at least
//! every third of the ttl); while holding it, it runs the sync and renews the lease every third
//! of the ttl, storing its view of the sync with it (the [`Report`] other replicas answer
//! `GetSyncStatus` from). Every acquisition increments the lease's fencing token, and every sync
//! write carries it ([`Syncer::fence`]): a replica that lost the lease — it stalled past the
//! expiry and another took over — has its writes refused, stops its sync and goes back to
//! acquiring. A graceful shutdown releases the leases, so another replica takes over at its
//! next try (within a third of the ttl); a replica that dies is replaced within a ttl.
//!
//! [`LeaseStore`]: crate::store::LeaseStore

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::resume::Followed;
use super::{StatusView, SyncHealth, Syncer, now};
use crate::domain::model::{Infrastructure, Micros};
use crate::domain::names;
use crate::store::{Fence, Lease, LeaseView, StoreError, SyncState};

/// Gauge of the sync leases this replica holds, labelled `replica`.
pub const LEASES_HELD: &str = "portal_sync_leases_held";
/// Gauge per ODC infrastructure this replica knows of, labelled `infrastructure`: 1 while this
/// replica holds its lease (runs its sync), else 0. Summed over the replicas, 0 means no replica
/// runs that infrastructure's sync.
pub const LEASE_HELD: &str = "portal_sync_lease_held";
/// Counter of the sync leases this replica acquired, labelled `replica`.
pub const LEASE_ACQUISITIONS_TOTAL: &str = "portal_sync_lease_acquisitions_total";
/// Counter of the sync leases this replica lost while running the sync, labelled `replica` and
/// `reason` ([`Loss`]).
pub const LEASE_LOSSES_TOTAL: &str = "portal_sync_lease_losses_total";

/// How a held lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loss {
    /// A write was refused: the lease's fencing token or expiry no longer matched.
    WriteRefused,
    /// A renewal was refused: another replica holds the lease now (or it had lapsed).
    RenewalRefused,
    /// The lease lapsed while renewals failed (the database did not answer).
    Expired,
}

impl Loss {
    fn label(self) -> &'static str {
        match self {
            Self::WriteRefused => "write_refused",
            Self::RenewalRefused => "renewal_refused",
            Self::Expired => "expired",
        }
    }
}

/// The holder's view of the sync, stored with the lease at each renewal (JSON).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(super) struct Report {
    /// The replica that wrote it, and its lease's fencing token: the report speaks for the
    /// current holder only if both match the lease.
    holder: String,
    token: u64,
    identity_sequence: u64,
    last_error: String,
    health: String,
    last_sync_time: Option<Micros>,
    following: bool,
    last_answered: Option<Micros>,
}

fn health_name(h: SyncHealth) -> &'static str {
    match h {
        SyncHealth::Unknown => "unknown",
        SyncHealth::Syncing => "syncing",
        SyncHealth::Retrying => "retrying",
        SyncHealth::Refused => "refused",
    }
}

fn health_of(name: &str) -> SyncHealth {
    match name {
        "syncing" => SyncHealth::Syncing,
        "retrying" => SyncHealth::Retrying,
        "refused" => SyncHealth::Refused,
        _ => SyncHealth::Unknown,
    }
}

impl Report {
    /// What the holder of `fence` reports at `now`: while the change feed is open, identity
    /// answers now.
    fn of(fence: &Fence, s: &StatusView, now: Micros) -> Self {
        Self {
            holder: fence.holder.clone(),
            token: fence.token,
            identity_sequence: s.identity_sequence,
            last_error: s.last_error.clone(),
            health: health_name(s.health).to_owned(),
            last_sync_time: s.last_sync_time,
            following: s.following,
            last_answered: if s.following {
                Some(now)
            } else {
                s.last_answered
            },
        }
    }
}

/// The status of an infrastructure's sync as the database tells it: the stored cursor and
/// snapshot time, the lease's holder, and the holder's last report. When no replica holds the
/// lease at `now`, nothing follows identity and the status says so.
pub(super) fn from_database(
    state: &SyncState,
    lease: Option<&LeaseView>,
    now: Micros,
) -> StatusView {
    let mut v = StatusView {
        cursor: state.cursor,
        identity_sequence: state.cursor,
        last_snapshot_time: state.snapshot_time,
        ..StatusView::default()
    };
    let Some(lease) = lease else {
        return v;
    };
    let report = lease
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str::<Report>(r).ok());
    if let Some(r) = report {
        v.identity_sequence = r.identity_sequence.max(state.cursor);
        v.last_error = r.last_error;
        v.health = health_of(&r.health);
        v.last_sync_time = r.last_sync_time;
        // A previous holder's feed says nothing of the current holder's.
        v.following = r.following && r.holder == lease.holder && r.token == lease.token;
        v.last_answered = r.last_answered;
    }
    if lease.held_at(now) {
        v.holder.clone_from(&lease.holder);
        v.lease_expire_time = Some(lease.expire_time);
    } else {
        v.following = false;
        v.health = SyncHealth::Unknown;
        let how = if lease.expire_time == 0 {
            "released"
        } else {
            "let lapse"
        };
        v.last_error = format!(
            "no replica runs this infrastructure's sync: {} {how} its lease; another replica \
             takes it over when one runs",
            lease.holder
        );
    }
    v
}

/// Describes the lease metrics (once, at start).
pub(super) fn describe() {
    ::metrics::describe_gauge!(
        LEASES_HELD,
        "Sync leases of ODC infrastructures this replica holds."
    );
    ::metrics::describe_gauge!(
        LEASE_HELD,
        "1 while this replica holds the ODC infrastructure's sync lease, else 0; the sum over \
         the replicas is 0 when no replica runs that infrastructure's sync."
    );
    ::metrics::describe_counter!(
        LEASE_ACQUISITIONS_TOTAL,
        "Sync leases this replica acquired."
    );
    ::metrics::describe_counter!(
        LEASE_LOSSES_TOTAL,
        "Sync leases this replica lost while running the sync (another replica took over), by \
         reason: write_refused, renewal_refused, expired."
    );
}

/// Discovery found `infra`: this replica does not hold its lease yet.
pub(super) fn discovered(infra: &Infrastructure) {
    let name = names::fmt::infrastructure(infra.company, infra.id);
    ::metrics::gauge!(LEASE_HELD, &[("infrastructure", name)]).set(0.0);
}

impl Syncer {
    fn ttl(&self) -> Duration {
        Duration::from_millis(self.settings.lease_ttl_ms.max(30))
    }

    fn ttl_micros(&self) -> Micros {
        i64::try_from(self.ttl().as_micros()).unwrap_or(i64::MAX)
    }

    /// The fence of this replica's writes to `infra`'s records, while it holds the lease.
    pub(super) fn fence(&self, infra: Uuid) -> Option<Fence> {
        self.fences.lock().ok()?.get(&infra).cloned()
    }

    /// The status of an infrastructure's sync on any replica: the live view while this replica
    /// runs it, else what the database says (the holder's last report, at most a third of the
    /// ttl old).
    pub async fn status_of(&self, infra: Uuid) -> Result<StatusView, StoreError> {
        if let Some(v) = self.status(infra) {
            return Ok(v);
        }
        let state = self.store.sync_state(infra).await?;
        let lease = self.store.lease(infra).await?;
        Ok(from_database(&state, lease.as_ref(), now()))
    }

    /// Waits until this replica holds the lease of `infra`; None when the sync stops first.
    pub(super) async fn acquire(&self, infra: &Infrastructure) -> Option<Lease> {
        let mut stop = self.shutdown.subscribe();
        loop {
            if *stop.borrow() {
                return None;
            }
            let t = now();
            let acquired = self
                .store
                .acquire_lease(infra.id, &self.replica, t, t + self.ttl_micros())
                .await;
            let wait = match acquired {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => self.until_lapse(infra.id, t).await,
                Err(e) => {
                    tracing::warn!(infrastructure = %infra.id, error = %e, "could not acquire the sync lease");
                    self.ttl() / 3
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return None,
            }
        }
    }

    /// How long until the lease held by another replica lapses (at most a third of the ttl).
    async fn until_lapse(&self, infra: Uuid, t: Micros) -> Duration {
        let third = self.ttl() / 3;
        match self.store.lease(infra).await {
            Ok(Some(l)) => Duration::from_micros(u64::try_from(l.expire_time - t).unwrap_or(0))
                .clamp(Duration::from_millis(5), third),
            _ => third,
        }
    }

    /// This replica now holds the lease of `infra`: its writes carry the lease's fence, its
    /// status starts from the database's (the previous holder's report), and what the worker
    /// kept from an earlier hold is dropped if another replica moved the records on since.
    pub(super) async fn took(
        &self,
        infra: &Infrastructure,
        lease: &Lease,
        kept: &mut Option<Followed>,
    ) {
        let held = self.fences.lock().map_or(0, |mut f| {
            f.insert(infra.id, lease.fence.clone());
            f.len()
        });
        self.count_held(held);
        let label = [("replica", self.replica.clone())];
        ::metrics::counter!(LEASE_ACQUISITIONS_TOTAL, &label).increment(1);
        let name = names::fmt::infrastructure(infra.company, infra.id);
        ::metrics::gauge!(LEASE_HELD, &[("infrastructure", name.clone())]).set(1.0);
        tracing::info!(infrastructure = %name, replica = %self.replica, token = lease.fence.token, "holding the sync lease");
        let stored = self.store.sync_state(infra.id).await;
        let previous = match (&stored, self.store.lease(infra.id).await) {
            (Ok(state), Ok(l)) => from_database(state, l.as_ref(), now()),
            _ => StatusView::default(),
        };
        if let Some(f) = kept.as_mut() {
            match &stored {
                // Nobody wrote since: resume, with the members read again.
                Ok(s) if s.cursor == f.cursor => f.reload = true,
                _ => *kept = None,
            }
        }
        self.update(infra.id, |s| {
            *s = StatusView {
                infrastructure: name,
                following: false,
                // Counted from the previous holder's last answer, or from now.
                last_answered: Some(previous.last_answered.unwrap_or_else(now)),
                holder: self.replica.clone(),
                lease_expire_time: Some(lease.expire_time),
                ..previous
            };
        });
    }

    /// Renews the lease every third of the ttl, storing this replica's [`Report`]; returns when
    /// the lease is lost.
    pub(super) async fn keep(&self, infra: &Infrastructure, lease: &Lease) -> Loss {
        let mut expire = lease.expire_time;
        let mut token = self.store.identity_token(infra.id).await.ok().flatten();
        loop {
            tokio::time::sleep(self.ttl() / 3).await;
            let t = now();
            let until = t + self.ttl_micros();
            let report = self
                .status(infra.id)
                .map(|s| {
                    serde_json::to_string(&Report::of(&lease.fence, &s, t)).unwrap_or_default()
                })
                .unwrap_or_default();
            match self
                .store
                .renew_lease(infra.id, &lease.fence, t, until, &report)
                .await
            {
                Ok(true) => {
                    expire = until;
                    self.update(infra.id, |s| s.lease_expire_time = Some(until));
                    self.changed_elsewhere(infra.id, &mut token).await;
                }
                Ok(false) => return Loss::RenewalRefused,
                Err(e) => {
                    tracing::warn!(infrastructure = %infra.id, error = %e, "could not renew the sync lease");
                    if now() >= expire {
                        return Loss::Expired;
                    }
                }
            }
        }
    }

    /// A resync or a new identity token asked for through another replica reaches this one
    /// through the database: wakes the workers (each checks its cursor and token). `token` is
    /// the identity token this check saw last.
    async fn changed_elsewhere(&self, infra: Uuid, token: &mut Option<String>) {
        let reset = self.status(infra).is_some_and(|v| v.cursor != 0)
            && matches!(self.store.sync_state(infra).await, Ok(s) if s.cursor == 0);
        let stored = self.store.identity_token(infra).await.ok().flatten();
        let replaced = *token != stored;
        *token = stored;
        if reset || replaced {
            self.wake.send_modify(|n| *n += 1);
        }
    }

    /// The lease of `infra` was lost: its sync stopped here (another replica runs it).
    pub(super) fn dropped(&self, infra: &Infrastructure, loss: Loss) {
        tracing::warn!(infrastructure = %infra.id, replica = %self.replica, reason = loss.label(), "lost the sync lease; the sync stopped here");
        let labels = [
            ("replica", self.replica.clone()),
            ("reason", loss.label().to_owned()),
        ];
        ::metrics::counter!(LEASE_LOSSES_TOTAL, &labels).increment(1);
        self.forget(infra.id);
    }

    /// Releases the lease of `infra` (shutdown): another replica may take it at its next try.
    pub(super) async fn release(&self, infra: &Infrastructure, lease: &Lease) {
        if let Err(e) = self.store.release_lease(infra.id, &lease.fence).await {
            tracing::warn!(infrastructure = %infra.id, error = %e, "could not release the sync lease; it lapses by itself");
        }
        self.forget(infra.id);
    }

    /// Releases every lease this replica holds (shutdown).
    pub(super) async fn release_all(&self) {
        let held: Vec<(Uuid, Fence)> = self
            .fences
            .lock()
            .map(|f| f.iter().map(|(i, f)| (*i, f.clone())).collect())
            .unwrap_or_default();
        for (infra, fence) in held {
            if let Err(e) = self.store.release_lease(infra, &fence).await {
                tracing::warn!(infrastructure = %infra, error = %e, "could not release the sync lease; it lapses by itself");
            }
            self.forget(infra);
        }
    }

    /// Stops writing `infra`'s records and reporting its sync from this replica.
    fn forget(&self, infra: Uuid) {
        if let Some(held) = self
            .fences
            .lock()
            .ok()
            .and_then(|mut f| f.remove(&infra).map(|_| f.len()))
        {
            self.count_held(held);
        }
        let view = self.status.lock().ok().and_then(|mut m| m.remove(&infra));
        if let Some(name) = view.map(|v| v.infrastructure).filter(|n| !n.is_empty()) {
            let label = [("infrastructure", name)];
            ::metrics::gauge!(LEASE_HELD, &label).set(0.0);
            // The holder reports these now.
            ::metrics::gauge!(super::STALENESS_SECONDS, &label).set(f64::NAN);
            ::metrics::gauge!(super::LAG_EVENTS, &label).set(f64::NAN);
        }
    }

    pub(super) fn count_held(&self, held: usize) {
        #[allow(clippy::cast_precision_loss)] // a few thousand leases at most
        ::metrics::gauge!(LEASES_HELD, &[("replica", self.replica.clone())]).set(held as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_status_shows_the_holder_and_its_report_or_that_nobody_holds_it() {
        let state = SyncState {
            cursor: 7,
            snapshot_time: Some(3),
        };
        assert_eq!(from_database(&state, None, 100).cursor, 7);
        let fence = Fence {
            holder: "replica-a".into(),
            token: 3,
        };
        let view = StatusView {
            identity_sequence: 9,
            health: SyncHealth::Syncing,
            following: true,
            last_sync_time: Some(50),
            ..StatusView::default()
        };
        let mut lease = LeaseView {
            holder: "replica-a".into(),
            token: 3,
            expire_time: 200,
            report: Some(serde_json::to_string(&Report::of(&fence, &view, 90)).unwrap()),
        };
        let held = from_database(&state, Some(&lease), 100);
        // A new holder that has not reported yet: its feed is not known to be open.
        let taken = LeaseView {
            holder: "replica-b".into(),
            token: 4,
            ..lease.clone()
        };
        assert_eq!(from_database(&state, Some(&taken), 100).lag(), None);
        assert_eq!(
            (held.holder.as_str(), held.lease_expire_time),
            ("replica-a", Some(200))
        );
        assert_eq!(
            (held.cursor, held.identity_sequence, held.lag()),
            (7, 9, Some(2))
        );
        assert_eq!(
            (held.health, held.last_answered, held.last_snapshot_time),
            (SyncHealth::Syncing, Some(90), Some(3))
        );
        assert!(held.last_error.is_empty());
        lease.expire_time = 0;
        let free = from_database(&state, Some(&lease), 100);
        assert_eq!(
            (free.holder.as_str(), free.health, free.lag()),
            ("", SyncHealth::Unknown, None)
        );
        assert!(
            free.last_error.contains("replica-a released its lease"),
            "{}",
            free.last_error
        );
        // Stale since the holder's last report.
        assert_eq!(free.staleness(100), Some(Duration::from_micros(10)));
    }
}
