//! `identity.v1.Audit`: the audit trail (ListChangeEvents), the change feed (WatchChanges) and
//! the snapshot to resync from.
//!
//! Both read the organization's gap-free event sequence through the core; the replay-then-follow
//! logic of a watch is the core's ([`crate::core::feed`]). This file parses the requests and
//! encodes the events.

use std::pin::Pin;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::{Api, DEFAULT_PAGE, MAX_PAGE, command, convert, micros, respond, to_status};
use crate::core::EventFilter;
use crate::domain::model::Micros;
use crate::domain::names;
use crate::method;

/// The stream of WatchChanges.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::ChangeEvent, Status>> + Send>>;

/// Position in ListChangeEvents: the last sequence of the previous page, and a fingerprint of
/// the filters it was made for (a token may not be reused with other filters, AIP-158).
#[derive(Debug, Serialize, Deserialize)]
struct EventCursor {
    after: u64,
    filter: String,
}

/// A short, stable fingerprint of a filter.
fn fingerprint(f: &EventFilter) -> String {
    let mut h = Sha256::new();
    for part in [&f.actor, &f.target, &f.action] {
        h.update(part.as_deref().unwrap_or_default().as_bytes());
        h.update([0]);
    }
    for t in [f.start_time, f.end_time] {
        h.update(t.map(|x| x.to_string()).unwrap_or_default().as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// `None` for an empty text filter.
fn text_filter(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A timestamp field in microseconds (unset: `None`; bad: `None`, recorded).
pub(super) fn time_filter(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<Micros> {
    // The range of `google.protobuf.Timestamp`: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
    const SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;
    let t = t?;
    if !(0..1_000_000_000).contains(&t.nanos) {
        v.add(field, "is not a valid timestamp (nanos out of range)");
        None
    } else if !SECONDS.contains(&t.seconds) {
        v.add(field, "is not a valid timestamp (outside years 1 to 9999)");
        None
    } else {
        Some(micros(t))
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for Api {
    async fn get_snapshot(
        &self,
        request: Request<pb::GetSnapshotRequest>,
    ) -> Result<Response<pb::Snapshot>, Status> {
        let a = self
            .enter(request, method!("Audit/GetSnapshot"), "parent", |r| {
                &r.parent
            })
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let st = a.handle.read();
        let mut roles: Vec<_> = st.roles.values().collect();
        roles.sort_by(|x, y| x.id.cmp(&y.id));
        Ok(Response::new(pb::Snapshot {
            organization: crate::domain::names::fmt::org(a.org),
            sequence: i64::try_from(st.seq).unwrap_or(i64::MAX),
            users: st
                .users_in_email_order("", None)
                .map(|u| convert::user(&st, u))
                .collect(),
            roles: roles.into_iter().map(|r| convert::role(&st, r)).collect(),
            role_assignments: st
                .assignments
                .values()
                .flat_map(|m| m.values())
                .map(|x| convert::assignment(a.org, x))
                .collect(),
        }))
    }

    type WatchChangesStream = ChangeStream;

    async fn list_change_events(
        &self,
        request: Request<pb::ListChangeEventsRequest>,
    ) -> Result<Response<pb::ListChangeEventsResponse>, Status> {
        let a = self
            .enter(request, method!("Audit/ListChangeEvents"), "parent", |r| {
                &r.parent
            })
            .await?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let (filter, size, cursor) = command(|v| {
            if names::org(&a.req.parent).is_none() {
                v.add("parent", "must be organizations/{organization}");
            }
            let filter = EventFilter {
                actor: text_filter(&a.req.actor),
                target: text_filter(&a.req.target),
                action: text_filter(&a.req.action),
                start_time: time_filter(v, "start_time", a.req.start_time.as_ref()),
                end_time: time_filter(v, "end_time", a.req.end_time.as_ref()),
            };
            if let (Some(start), Some(end)) = (filter.start_time, filter.end_time)
                && start >= end
            {
                v.add("end_time", "must be after start_time");
            }
            let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let cursor: Option<EventCursor> = v.page_cursor("page_token", &a.req.page_token);
            if cursor
                .as_ref()
                .is_some_and(|c| c.filter != fingerprint(&filter))
            {
                v.add("page_token", "was made for different filters");
            }
            Some((filter, size, cursor))
        })?;
        let print = fingerprint(&filter);
        let after = cursor.map_or(0, |c| c.after);
        let mut events = self
            .core
            .list_events(&auth, a.org, &filter, after, size + 1)
            .await
            .map_err(to_status)?;
        let next_page_token = if events.len() > size {
            events.truncate(size);
            events
                .last()
                .map(|e| {
                    shared::page_token::encode(&EventCursor {
                        after: e.seq,
                        filter: print.clone(),
                    })
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        let seq = a.handle.read().seq;
        Ok(respond(
            pb::ListChangeEventsResponse {
                events: events.iter().map(convert::event).collect(),
                next_page_token,
            },
            seq,
        ))
    }

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let a = self
            .enter(request, method!("Audit/WatchChanges"), "parent", |r| {
                &r.parent
            })
            .await?;
        let after = command(|v| {
            if names::org(&a.req.parent).is_none() {
                v.add("parent", "must be organizations/{organization}");
            }
            v.check(
                "after_sequence",
                u64::try_from(a.req.after_sequence).map_err(|_| "must not be negative"),
            )
        })?;
        // The organization's last sequence as the watch starts, in the response headers: the
        // watcher can tell how far behind its cursor is before the replay ends.
        let head = a.handle.read().seq;
        let feed = self
            .core
            .watch(a.entry, a.handle, a.org, after)
            .await
            .map_err(to_status)?;
        let events = feed.map(|item| match item {
            Ok(e) => Ok(convert::event(&e)),
            Err(e) => Err(to_status(e)),
        });
        Ok(respond(Box::pin(events), head))
    }
}
