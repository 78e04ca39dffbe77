//! `identity.v1.Audit`: the audit trail (ListChangeEvents) and the change feed (WatchChanges).
//!
//! Both read the organization's gap-free event sequence from the store. WatchChanges is
//! resumable and gap-free: it subscribes to the live feed *before* reading anything, replays
//! the stored events after the cursor, then forwards live events, skipping those already sent.
//! Whenever the live feed cannot be trusted to continue the sequence (an event ahead of the
//! next expected one, a lagging receiver, or a quiet period, during which another replica may
//! have committed events this one never published) it re-reads the store from the last event
//! sent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::proto::identity::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, convert, micros, page_cursor, page_size, respond, to_status};
use crate::domain::model::{Micros, Principal};
use crate::domain::names;
use crate::domain::permissions::catalog::keys;
use crate::method;
use crate::service::auth::{Entry, Need};
use crate::service::core::OrgHandle;
use crate::service::error::{Error, Violations};
use crate::store::{EventFilter, EventRecord, Store, StoreError};

/// Events read from the store at a time while replaying.
const REPLAY_BATCH: usize = 500;
/// Events buffered between the feeding task and the gRPC stream.
const STREAM_BUFFER: usize = 64;
/// After this long without a live event, a watcher re-reads the store (events committed by
/// other replicas reach this replica's live feed only when it writes itself).
const IDLE_POLL: Duration = Duration::from_secs(5);

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

/// A timestamp filter in microseconds.
fn time_filter(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<Micros> {
    let t = t?;
    if (0..1_000_000_000).contains(&t.nanos) {
        Some(micros(t))
    } else {
        v.add(field, "is not a valid timestamp (nanos out of range)");
        None
    }
}

fn store_status(e: StoreError) -> Status {
    to_status(Error::Store(e))
}

fn cursor_expired(after: u64) -> Status {
    to_status(Error::precondition(
        "CURSOR_EXPIRED",
        format!(
            "the events after sequence {after} are no longer retained: resync from a snapshot and \
             watch from its cursor"
        ),
    ))
}

/// One WatchChanges call: the feeding task's state.
struct Watch {
    store: Arc<dyn Store>,
    org: Uuid,
    handle: Arc<OrgHandle>,
    entry: Entry,
    principal: Principal,
    tx: mpsc::Sender<Result<pb::ChangeEvent, Status>>,
    /// The sequence of the last event sent.
    last: u64,
    /// The server is shutting down.
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Watch {
    /// Feeds the stream until the client goes away or an error ends it (sent as the last item).
    async fn run(
        mut self,
        first: Vec<EventRecord>,
        mut live: broadcast::Receiver<Arc<EventRecord>>,
    ) {
        if let Err(status) = self.serve(first, &mut live).await {
            // The client may be gone already; nothing else to do then.
            let _ = self.tx.send(Err(status)).await;
        }
    }

    /// `Ok(())` when the client went away.
    async fn serve(
        &mut self,
        first: Vec<EventRecord>,
        live: &mut broadcast::Receiver<Arc<EventRecord>>,
    ) -> Result<(), Status> {
        if !self.send_all(&first).await? || !self.catch_up().await? {
            return Ok(());
        }
        loop {
            let next = tokio::select! {
                () = self.tx.closed() => return Ok(()),
                _ = self.closing.wait_for(|c| *c) => {
                    return Err(Status::unavailable(
                        "the server is shutting down; watch again from the last sequence received",
                    ));
                }
                r = live.recv() => Some(r),
                () = tokio::time::sleep(IDLE_POLL) => None,
            };
            let open = match next {
                Some(Ok(e)) if e.seq <= self.last => true,
                Some(Ok(e)) if e.seq == self.last + 1 => self.send(&e).await?,
                // Ahead of the next expected event: the store has everything up to it (events
                // are published after their commit).
                Some(Ok(_)) => self.catch_up().await?,
                Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(org = %self.org, missed, "change watcher lagged; re-reading the store");
                    self.catch_up().await?
                }
                Some(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(Status::unavailable(
                        "the change feed closed; watch again from the last sequence received",
                    ));
                }
                None => {
                    self.still_allowed()?;
                    self.catch_up().await?
                }
            };
            if !open {
                return Ok(());
            }
        }
    }

    /// Sends every stored event after the last one sent. `Ok(false)`: the client went away.
    async fn catch_up(&mut self) -> Result<bool, Status> {
        loop {
            let batch = self
                .store
                .events_after(self.org, self.last, REPLAY_BATCH)
                .await
                .map_err(store_status)?;
            if !self.send_all(&batch).await? {
                return Ok(false);
            }
            if batch.len() < REPLAY_BATCH {
                return Ok(true);
            }
        }
    }

    /// Sends the events of a batch that follow the last one sent, refusing a hole.
    async fn send_all(&mut self, batch: &[EventRecord]) -> Result<bool, Status> {
        for e in batch {
            if e.seq <= self.last {
                continue;
            }
            if e.seq != self.last + 1 {
                return Err(cursor_expired(self.last));
            }
            if !self.send(e).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends one event (the next in sequence). `Ok(false)`: the client went away.
    async fn send(&mut self, e: &EventRecord) -> Result<bool, Status> {
        self.still_allowed()?;
        if self.tx.send(Ok(convert::event(e))).await.is_err() {
            return Ok(false);
        }
        self.last = e.seq;
        Ok(true)
    }

    /// The watcher must still be an ACTIVE principal holding `org.view_audit_trail`.
    fn still_allowed(&self) -> Result<(), Status> {
        let st = self.handle.read();
        if !st.is_active(self.principal) {
            return Err(to_status(Error::Unauthenticated(
                "the watching principal is no longer active".into(),
            )));
        }
        if !self
            .entry
            .would(&st, &Need::Perm(keys::ORG_VIEW_AUDIT_TRAIL, None, None))
        {
            return Err(to_status(Error::PermissionDenied(format!(
                "the watching principal no longer has {}",
                keys::ORG_VIEW_AUDIT_TRAIL
            ))));
        }
        Ok(())
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
        let mut users: Vec<_> = st
            .users_by_email
            .values()
            .filter_map(|id| st.users.get(id))
            .collect();
        users.sort_by(|x, y| x.email.cmp(&y.email));
        let mut roles: Vec<_> = st.roles.values().collect();
        roles.sort_by(|x, y| x.id.cmp(&y.id));
        Ok(Response::new(pb::Snapshot {
            organization: crate::domain::names::fmt::org(a.org),
            sequence: i64::try_from(st.seq).unwrap_or(i64::MAX),
            users: users.into_iter().map(|u| convert::user(&st, u)).collect(),
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
        a.entry.authorized().map_err(to_status)?;
        let mut v = Violations::new();
        if names::org(&a.req.parent).is_none() {
            v.add("parent", "must be organizations/{organization}");
        }
        let filter = EventFilter {
            actor: text_filter(&a.req.actor),
            target: text_filter(&a.req.target),
            action: text_filter(&a.req.action),
            start_time: time_filter(&mut v, "start_time", a.req.start_time.as_ref()),
            end_time: time_filter(&mut v, "end_time", a.req.end_time.as_ref()),
        };
        if let (Some(start), Some(end)) = (filter.start_time, filter.end_time)
            && start >= end
        {
            v.add("end_time", "must be after start_time");
        }
        let size = page_size(&mut v, "page_size", a.req.page_size);
        let cursor: Option<EventCursor> = page_cursor(&mut v, "page_token", &a.req.page_token);
        let print = fingerprint(&filter);
        if cursor.as_ref().is_some_and(|c| c.filter != print) {
            v.add("page_token", "was made for different filters");
        }
        v.finish().map_err(to_status)?;
        let after = cursor.map_or(0, |c| c.after);
        let mut events = self
            .core
            .store
            .list_events(a.org, &filter, after, size + 1)
            .await
            .map_err(store_status)?;
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
        a.entry.authorized().map_err(to_status)?;
        let mut v = Violations::new();
        if names::org(&a.req.parent).is_none() {
            v.add("parent", "must be organizations/{organization}");
        }
        let after = v.check(
            "after_sequence",
            u64::try_from(a.req.after_sequence).map_err(|_| "must not be negative"),
        );
        v.finish().map_err(to_status)?;
        let (Some(after), Some(principal)) = (after, a.entry.principal()) else {
            // The table rule admits only principals.
            return Err(Status::internal("unreachable"));
        };
        let store = Arc::clone(&self.core.store);
        // Subscribe first: every event committed from now on reaches `live`, and everything
        // before is in the store.
        let live = a.handle.subscribe();
        let current = a.handle.read().seq;
        if after > current {
            // This replica may be behind the store: ahead only if the store has no such event.
            let known = store
                .events_after(a.org, after - 1, 1)
                .await
                .map_err(store_status)?
                .first()
                .is_some_and(|e| e.seq == after);
            if !known {
                return Err(to_status(Error::OutOfRange(format!(
                    "after_sequence {after} is ahead of the organization's last event ({current})"
                ))));
            }
        }
        // The first batch is read here so that an expired cursor fails the call itself.
        let first = store
            .events_after(a.org, after, REPLAY_BATCH)
            .await
            .map_err(store_status)?;
        if first.first().is_some_and(|e| e.seq != after + 1) {
            return Err(cursor_expired(after));
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let watch = Watch {
            store,
            org: a.org,
            closing: self.core.closing(),
            handle: a.handle,
            entry: a.entry,
            principal,
            tx,
            last: after,
        };
        tokio::spawn(watch.run(first, live));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
