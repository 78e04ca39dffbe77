//! `portal.v1.Sync`: the sync state of ODC infrastructures, resync, and the portal's audit
//! trail.

use serde::{Deserialize, Serialize};
use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    Admitted, Api, Error, Violations, check_company_name, convert, names, page_cursor, page_size,
    page_token, ts,
};
use crate::domain::model::InfraKind;

/// Cursor of `ListPortalEvents`: the last sequence returned.
#[derive(Debug, Serialize, Deserialize)]
struct EventCursor {
    after: u64,
}

impl Api {
    /// The ODC infrastructure named by the request (NOT_FOUND; FAILED_PRECONDITION `NOT_ODC`).
    async fn odc_infrastructure<T>(&self, a: &Admitted<T>, name: &str) -> Result<Uuid, Error> {
        let (c, id) = names::infrastructure(name)
            .filter(|(c, _)| *c == a.company.id)
            .ok_or_else(|| {
                Error::field(
                    "infrastructure",
                    "must be companies/{company}/infrastructures/{infrastructure}",
                )
            })?;
        let infra = self
            .data
            .read()
            .infrastructures(c)
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::NotFound(names::fmt::infrastructure(c, id)))?;
        if infra.kind != InfraKind::Odc {
            return Err(Error::precondition(
                "NOT_ODC",
                "only ODC infrastructures are synchronized",
            ));
        }
        Ok(id)
    }

    /// The sync status of an infrastructure: the worker's live view, or the stored state when
    /// it has no worker yet.
    async fn sync_status(
        &self,
        company: Uuid,
        infrastructure: Uuid,
    ) -> Result<pb::SyncStatus, Error> {
        let read = self.data.read();
        let view = if let Some(v) = read.sync_status(infrastructure) {
            v
        } else {
            let s = read.sync_state(infrastructure).await?;
            crate::sync::StatusView {
                cursor: s.cursor,
                identity_sequence: s.cursor,
                last_snapshot_time: s.snapshot_time,
                ..Default::default()
            }
        };
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(pb::SyncStatus {
            infrastructure: names::fmt::infrastructure(company, infrastructure),
            cursor: as_i64(view.cursor),
            identity_sequence: as_i64(view.identity_sequence),
            lag: as_i64(view.identity_sequence.saturating_sub(view.cursor)),
            last_snapshot_time: view.last_snapshot_time.and_then(ts),
            last_error: view.last_error,
            last_sync_time: view.last_sync_time.and_then(ts),
        })
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
        let id = self.odc_infrastructure(&a, &a.req.infrastructure).await?;
        a.entry.authorized()?;
        Ok(Response::new(self.sync_status(a.company.id, id).await?))
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
        let id = self.odc_infrastructure(&a, &a.req.infrastructure).await?;
        let auth = a.entry.authorized()?;
        self.data.write(&auth).syncer().resync(id).await?;
        Ok(Response::new(self.sync_status(a.company.id, id).await?))
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
        let size = page_size(&mut v, "page_size", a.req.page_size);
        let cursor: Option<EventCursor> = page_cursor(&mut v, "page_token", &a.req.page_token);
        v.finish()?;
        a.entry.authorized()?;
        let after = cursor.map_or(0, |c| c.after);
        let mut events = self
            .data
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
