//! `portal.v1.Sync`: the sync state of ODC infrastructures, resync, and the portal's audit
//! trail. The rules are [`crate::rules::odc_sync`].

use serde::{Deserialize, Serialize};
use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use super::parse::{check_company_name, infrastructure_id, page_token};
use super::{DEFAULT_PAGE, MAX_PAGE};
use crate::convert::{self, ts};
use crate::domain::names;
use crate::error::{Error, Violations};
use crate::sync::{StatusView, SyncHealth};

/// Cursor of `ListPortalEvents`: the last sequence returned.
#[derive(Debug, Serialize, Deserialize)]
struct EventCursor {
    after: u64,
}

/// The sync status of an infrastructure, as answered.
fn status(company: Uuid, infrastructure: Uuid, view: StatusView) -> pb::SyncStatus {
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let staleness = view
        .staleness(crate::sync::now())
        .map(|d| prost_types::Duration {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        });
    pb::SyncStatus {
        infrastructure: names::fmt::infrastructure(company, infrastructure),
        cursor: as_i64(view.cursor),
        identity_sequence: as_i64(view.identity_sequence),
        lag: as_i64(view.lag().unwrap_or_else(|| view.last_lag())),
        lag_known: view.lag().is_some(),
        staleness,
        last_snapshot_time: view.last_snapshot_time.and_then(ts),
        last_error: view.last_error,
        last_sync_time: view.last_sync_time.and_then(ts),
        health: match view.health {
            SyncHealth::Unknown => pb::SyncHealth::Unspecified,
            SyncHealth::Syncing => pb::SyncHealth::Syncing,
            SyncHealth::Retrying => pb::SyncHealth::Retrying,
            SyncHealth::Refused => pb::SyncHealth::Refused,
        }
        .into(),
        sync_replica: view.holder,
        lease_expire_time: view.lease_expire_time.and_then(ts),
    }
}

#[tonic::async_trait]
impl pb::sync_server::Sync for Api {
    async fn get_sync_status(
        &self,
        request: Request<pb::GetSyncStatusRequest>,
    ) -> Result<Response<pb::SyncStatus>, Status> {
        let a = self
            .enter(
                request,
                method!("Sync/GetSyncStatus"),
                "infrastructure",
                |r| &r.infrastructure,
            )
            .await?;
        let company = a.company.id;
        let id = infrastructure_id("infrastructure", company, &a.req.infrastructure)?;
        let infra = self.rules.odc_infrastructure(company, id).await?;
        a.entry.authorized()?;
        let view = self.rules.sync_status(&infra).await?;
        Ok(Response::new(status(company, id, view)))
    }

    async fn resync(
        &self,
        request: Request<pb::ResyncRequest>,
    ) -> Result<Response<pb::SyncStatus>, Status> {
        let a = self
            .enter(request, method!("Sync/Resync"), "infrastructure", |r| {
                &r.infrastructure
            })
            .await?;
        let company = a.company.id;
        let id = infrastructure_id("infrastructure", company, &a.req.infrastructure)?;
        let infra = self.rules.odc_infrastructure(company, id).await?;
        let auth = a.entry.authorized()?;
        self.rules.resync(&auth, &infra).await?;
        let view = self.rules.sync_status(&infra).await?;
        Ok(Response::new(status(company, id, view)))
    }

    async fn list_portal_events(
        &self,
        request: Request<pb::ListPortalEventsRequest>,
    ) -> Result<Response<pb::ListPortalEventsResponse>, Status> {
        let a = self
            .enter(request, method!("Sync/ListPortalEvents"), "parent", |r| {
                &r.parent
            })
            .await?;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &a.req.parent, a.company.id);
        let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
        let cursor: Option<EventCursor> = v.page_cursor("page_token", &a.req.page_token);
        v.finish().map_err(Error::from)?;
        a.entry.authorized()?;
        let after = cursor.map_or(0, |c| c.after);
        let mut events = self
            .rules
            .read()
            .events(a.company.id, after, size + 1)
            .await?;
        let more = events.len() > size;
        events.truncate(size);
        let next_page_token = match (more, events.last()) {
            (true, Some(last)) => page_token(&EventCursor { after: last.seq })?,
            _ => String::new(),
        };
        Ok(Response::new(pb::ListPortalEventsResponse {
            events: events.iter().map(convert::event).collect(),
            next_page_token,
        }))
    }
}
