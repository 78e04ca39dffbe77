//! The change feed: the audit listing, and WatchChanges' replay from a cursor then follow.
//!
//! A watch is resumable and gap-free: it subscribes to the live feed *before* reading anything,
//! replays the stored events after the cursor, then forwards live events, skipping those already
//! sent. Whenever the live feed cannot be trusted to continue the sequence (an event ahead of
//! the next expected one, a lagging receiver, or a quiet period, during which another replica
//! may have committed events this one never published) it re-reads the store from the last
//! event sent. The gRPC layer only parses the request and encodes the events.
//!
//! The watcher's access is re-checked for the life of the watch
//! ([`stream_access`](super::stream_access)): before every event, on every change of the
//! organization, when its token is revoked and on a short tick for its expiry. The error that
//! ends a watch overtakes the events still buffered for the client ([`ChangeFeed`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use uuid::Uuid;

use super::store::{EventFilter, EventRecord};
use super::stream_access::StreamAccess;
use super::{Core, OrgHandle, Storage};
use crate::auth::{Authorized, Entry, Need};
use crate::domain::permissions::catalog::keys;
use crate::error::{Error, Own};

/// Events read from the store at a time while replaying.
const REPLAY_BATCH: usize = 500;
/// Events buffered between the feeding task and the client's stream.
const STREAM_BUFFER: usize = 64;
/// After this long without a live event, a watcher re-reads the store (events committed by
/// other replicas reach this replica's live feed only when it writes itself).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// One item of a watch: the next event in sequence, or the error that ends the watch.
pub type FeedItem = Result<Arc<EventRecord>, Error>;

/// The items of one watch: the events in sequence, and the error that ends the watch, which
/// comes as soon as it happens (the events buffered before it are dropped: the client resumes
/// from the last event it received). Dropping it ends the watch.
#[derive(Debug)]
pub struct ChangeFeed {
    events: mpsc::Receiver<Arc<EventRecord>>,
    /// The error that ends the watch; `None` once taken (or the watch ended without one).
    end: Option<oneshot::Receiver<Error>>,
}

impl Stream for ChangeFeed {
    type Item = FeedItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FeedItem>> {
        if let Some(end) = &mut self.end
            && let Poll::Ready(r) = Pin::new(end).poll(cx)
        {
            self.end = None;
            if let Ok(error) = r {
                self.events.close();
                return Poll::Ready(Some(Err(error)));
            }
        }
        self.events.poll_recv(cx).map(|e| e.map(Ok))
    }
}

fn cursor_expired(after: u64) -> Error {
    Error::precondition(
        "CURSOR_EXPIRED",
        format!(
            "the events after sequence {after} are no longer retained: resync from a snapshot and \
             watch from its cursor"
        ),
    )
}

impl Core {
    /// Events of `org` matching `filter` with sequence greater than `after`, ascending, at most
    /// `limit` (ListChangeEvents).
    pub async fn list_events(
        &self,
        _auth: &Authorized,
        org: Uuid,
        filter: &EventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, Error> {
        Ok(self
            .storage
            .store
            .list_events(org, filter, after, limit)
            .await?)
    }

    /// Starts a watch of `org` after sequence `after` for the admitted caller of `entry`, who
    /// must stay an ACTIVE principal holding `org.view_audit_trail`, with a token neither
    /// revoked nor expired: once not, the watch ends with UNAUTHENTICATED or PERMISSION_DENIED
    /// and a reason naming the cause (see [`stream_access`](super::stream_access)). A cursor
    /// ahead of the organization's last event (OUT_OF_RANGE) or no longer retained
    /// (FAILED_PRECONDITION) fails the call itself; later errors end the stream. The stream
    /// also ends when it is dropped or the server shuts down.
    pub async fn watch(
        &self,
        entry: Entry,
        handle: Arc<OrgHandle>,
        org: Uuid,
        after: u64,
    ) -> Result<ChangeFeed, Error> {
        entry.authorized()?;
        // Held from now on: a revocation while the watch starts is not missed.
        let access = StreamAccess::new(
            entry,
            Need::Perm(keys::ORG_VIEW_AUDIT_TRAIL, None, None),
            Arc::clone(&handle),
            Arc::clone(&self.clock),
            self.storage.tokens.held(),
        )?;
        access.check()?;
        let store = &self.storage.store;
        // Subscribe first: every event committed from now on reaches `live`, and everything
        // before is in the store.
        let live = handle.subscribe();
        let current = handle.read().seq;
        if after > current {
            // This replica may be behind the store: ahead only if the store has no such event.
            let known = store
                .events_after(org, after - 1, 1)
                .await?
                .first()
                .is_some_and(|e| e.seq == after);
            if !known {
                return Err(Error::Own(Own::OutOfRange(format!(
                    "after_sequence {after} is ahead of the organization's last event ({current})"
                ))));
            }
        }
        // The first batch is read here so that an expired cursor fails the call itself.
        let first = store.events_after(org, after, REPLAY_BATCH).await?;
        if first.first().is_some_and(|e| e.seq != after + 1) {
            return Err(cursor_expired(after));
        }
        let (tx, events) = mpsc::channel(STREAM_BUFFER);
        let (end, ended) = oneshot::channel();
        let watch = Watch {
            storage: Arc::clone(&self.storage),
            org,
            closing: self.closing(),
            access,
            tx,
            last: after,
        };
        tokio::spawn(watch.run(first, live, end));
        Ok(ChangeFeed {
            events,
            end: Some(ended),
        })
    }
}

/// One watch: the feeding task's state.
struct Watch {
    storage: Arc<Storage>,
    org: Uuid,
    /// The watcher's access, re-checked for the life of the watch.
    access: StreamAccess,
    tx: mpsc::Sender<Arc<EventRecord>>,
    /// The sequence of the last event sent.
    last: u64,
    /// The server is shutting down.
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Watch {
    /// Feeds the stream until the client goes away or an error ends it (sent on `end`).
    async fn run(
        mut self,
        first: Vec<EventRecord>,
        mut live: broadcast::Receiver<Arc<EventRecord>>,
        end: oneshot::Sender<Error>,
    ) {
        if let Err(error) = self.serve(first, &mut live).await {
            // The client may be gone already; nothing else to do then.
            let _ = end.send(error);
        }
    }

    /// `Ok(())` when the client went away.
    async fn serve(
        &mut self,
        first: Vec<EventRecord>,
        live: &mut broadcast::Receiver<Arc<EventRecord>>,
    ) -> Result<(), Error> {
        if !self.send_all(first).await? || !self.catch_up().await? {
            return Ok(());
        }
        loop {
            let next = tokio::select! {
                () = self.tx.closed() => return Ok(()),
                _ = self.closing.wait_for(|c| *c) => {
                    return Err(Error::Own(Own::Interrupted(
                        "the server is shutting down; watch again from the last sequence received"
                            .into(),
                    )));
                }
                r = live.recv() => Some(r),
                () = tokio::time::sleep(IDLE_POLL) => None,
                // The token may have been revoked or expired.
                () = self.access.changed() => {
                    self.access.check()?;
                    continue;
                }
            };
            let open = match next {
                Some(Ok(e)) if e.seq <= self.last => true,
                Some(Ok(e)) if e.seq == self.last + 1 => self.send(e).await?,
                // Ahead of the next expected event: the store has everything up to it (events
                // are published after their commit).
                Some(Ok(_)) => self.catch_up().await?,
                Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(org = %self.org, missed, "change watcher lagged; re-reading the store");
                    self.catch_up().await?
                }
                Some(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(Error::Own(Own::Interrupted(
                        "the change feed closed; watch again from the last sequence received"
                            .into(),
                    )));
                }
                None => {
                    self.access.check()?;
                    self.catch_up().await?
                }
            };
            if !open {
                return Ok(());
            }
        }
    }

    /// Sends every stored event after the last one sent. `Ok(false)`: the client went away.
    async fn catch_up(&mut self) -> Result<bool, Error> {
        loop {
            let batch = self
                .storage
                .store
                .events_after(self.org, self.last, REPLAY_BATCH)
                .await?;
            let full = batch.len() >= REPLAY_BATCH;
            if !self.send_all(batch).await? {
                return Ok(false);
            }
            if !full {
                return Ok(true);
            }
        }
    }

    /// Sends the events of a batch that follow the last one sent, refusing a hole.
    async fn send_all(&mut self, batch: Vec<EventRecord>) -> Result<bool, Error> {
        for e in batch {
            if e.seq <= self.last {
                continue;
            }
            if e.seq != self.last + 1 {
                return Err(cursor_expired(self.last));
            }
            if !self.send(Arc::new(e)).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends one event (the next in sequence) once the client has room for it, if the watcher
    /// is still allowed to see it. `Ok(false)`: the client went away.
    async fn send(&mut self, e: Arc<EventRecord>) -> Result<bool, Error> {
        self.access.check()?;
        let permit = loop {
            tokio::select! {
                permit = self.tx.reserve() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => return Ok(false),
                },
                // A client not reading does not keep an ended access alive.
                () = self.access.changed() => self.access.check()?,
            }
        };
        self.last = e.seq;
        permit.send(e);
        Ok(true)
    }
}
