//! The sync's spans: one per snapshot, per opening of the change feed and per batch of
//! events. A snapshot that a `Resync` call asked for is a child of that call, so the caller's
//! trace follows the work into identity (its calls carry the context, see [`super::endpoint`]);
//! the rest are roots of portal-sync's own traces.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::traces::{SpanParent, Traces};
use uuid::Uuid;

/// The traces of the sync, and the Resync calls waiting for their snapshot.
#[derive(Debug, Default)]
pub(super) struct SyncTraces {
    traces: Traces,
    /// The trace of a Resync call per infrastructure, until its snapshot starts.
    asked_by: Mutex<HashMap<Uuid, SpanParent>>,
}

impl SyncTraces {
    pub(super) fn new(traces: Traces) -> Self {
        Self {
            traces,
            asked_by: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers the current span (a Resync call) as the parent of `infra`'s next snapshot.
    pub(super) fn resync_asked(&self, infra: Uuid) {
        let parent = SpanParent::current();
        if parent.is_traced()
            && let Ok(mut asked_by) = self.asked_by.lock()
        {
            asked_by.insert(infra, parent);
        }
    }

    /// The span of a snapshot of `infra`: the child of the Resync call that asked for it, if
    /// one did.
    pub(super) fn snapshot(&self, infra: Uuid) -> tracing::Span {
        let span = tracing::info_span!("sync_snapshot", infrastructure = %infra);
        let asked_by = self
            .asked_by
            .lock()
            .ok()
            .and_then(|mut asked_by| asked_by.remove(&infra));
        match asked_by {
            Some(parent) => parent.adopt(&span),
            None => self.traces.root(&span),
        }
        span
    }

    /// `span` (just created) as a root span of the sync's traces.
    pub(super) fn root(&self, span: tracing::Span) -> tracing::Span {
        self.traces.root(&span);
        span
    }
}
