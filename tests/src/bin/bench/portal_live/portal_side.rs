//! The portal side of the propagation suite: the operator's clients, events after a sequence,
//! the sync cursor, and records read back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use shared::proto::portal::v1 as portal;

use super::SAMPLE;
use crate::portal_child::{SyncApi, TeamMembers};

pub(super) fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub(super) fn event_micros(e: &portal::PortalEvent) -> i64 {
    e.create_time
        .as_ref()
        .map_or(0, |t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000)
}

/// The portal side: the operator's clients and the company and infrastructure.
pub(super) struct Portal {
    pub(super) sync: SyncApi,
    /// Acting for the company admin.
    pub(super) members: TeamMembers,
    pub(super) company: String,
    pub(super) infra: String,
}

impl Portal {
    /// Up to `page_size` events of the company after sequence `after`. The page token of
    /// ListPortalEvents is the cursor `{"after": <sequence>}` (see `shared::page_token`);
    /// the bench builds it to resume after the last event it saw, as a client keeping
    /// the last `next_page_token` would.
    pub(super) async fn events_after(
        &self,
        after: i64,
        page_size: i32,
    ) -> anyhow::Result<Vec<portal::PortalEvent>> {
        let page_token = if after == 0 {
            String::new()
        } else {
            shared::page_token::encode(&json!({ "after": after }))
        };
        Ok(self
            .sync
            .clone()
            .list_portal_events(portal::ListPortalEventsRequest {
                parent: self.company.clone(),
                page_size,
                page_token,
            })
            .await?
            .into_inner()
            .events)
    }

    /// Every event after `after`; returns them and the last sequence.
    pub(super) async fn all_events_after(
        &self,
        mut after: i64,
    ) -> anyhow::Result<(Vec<portal::PortalEvent>, i64)> {
        let mut all = Vec::new();
        loop {
            let page = self.events_after(after, 1000).await?;
            let Some(last) = page.last() else {
                return Ok((all, after));
            };
            after = last.sequence;
            all.extend(page);
        }
    }

    async fn cursor(&self) -> anyhow::Result<portal::SyncStatus> {
        Ok(self
            .sync
            .clone()
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: self.infra.clone(),
            })
            .await?
            .into_inner())
    }

    /// Polls GetSyncStatus, without pausing, until the cursor reaches `seq`; returns when
    /// it was seen.
    pub(super) async fn wait_cursor(
        &self,
        seq: u64,
        deadline: Duration,
    ) -> anyhow::Result<Instant> {
        let seq = i64::try_from(seq)?;
        let until = Instant::now() + deadline;
        loop {
            let s = self.cursor().await?;
            if s.cursor >= seq {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "the sync did not reach sequence {seq} in {deadline:?} (cursor {}, last error {:?})",
                s.cursor,
                s.last_error
            );
            // Not a pause: lets the runtime's other tasks in between two calls.
            tokio::task::yield_now().await;
        }
    }

    /// Reads the members named by `events` (at most `SAMPLE`, spread over them) and
    /// counts those whose ODC access on the infrastructure is at `level`.
    pub(super) async fn sample_at(
        &self,
        events: &[&portal::PortalEvent],
        level: portal::InfrastructurePermission,
    ) -> anyhow::Result<(usize, usize)> {
        let step = (events.len() / SAMPLE).max(1);
        let (mut read, mut good) = (0, 0);
        for e in events.iter().step_by(step).take(SAMPLE) {
            let m = self
                .members
                .clone()
                .get_team_member(portal::GetTeamMemberRequest {
                    name: e.target.clone(),
                })
                .await?
                .into_inner();
            read += 1;
            let ok = m.infrastructure_access.iter().any(|a| {
                a.infrastructure == self.infra
                    && a.permission == i32::from(level)
                    && a.source == i32::from(portal::PermissionSource::SourceOdc)
                    && e.detail
                        .contains(a.identity_user.rsplit('/').next().unwrap_or("-"))
            });
            good += usize::from(ok);
        }
        Ok((read, good))
    }
}
