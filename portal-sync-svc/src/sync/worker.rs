//! One infrastructure's worker. It runs the infrastructure's sync only while this replica holds
//! the infrastructure's lease ([`lease`](super::lease)): it acquires the lease (waiting while
//! another replica holds it), then runs the sync — retrying failed runs with back-off — while
//! the lease is renewed beside it. When the lease is lost (a renewal or a write refused: another
//! replica took it over) the sync stops at once and the worker goes back to acquiring; on
//! shutdown it releases the lease.

use std::sync::Arc;
use std::time::Duration;

use super::failure::{Backoff, Failure};
use super::lease::Loss;
use super::resume::Followed;
use super::{RunError, SyncHealth, Syncer};
use crate::domain::model::Infrastructure;
use crate::store::StoreError;

/// Why a worker stopped running the sync.
enum Ended {
    /// The sync is shutting down.
    Stopped,
    /// The lease was lost.
    Lost(Loss),
}

impl Syncer {
    /// One infrastructure's worker: acquire the lease, run the sync while it is held, until
    /// stopped.
    pub(super) async fn work(self: Arc<Self>, infra: Infrastructure, token: String) {
        let mut token = token;
        let mut kept = None;
        loop {
            let Some(lease) = self.acquire(&infra).await else {
                return;
            };
            self.took(&infra, &lease, &mut kept).await;
            let ended = tokio::select! {
                ended = self.hold(&infra, &mut token, &mut kept) => ended,
                loss = self.keep(&infra, &lease) => Ended::Lost(loss),
            };
            match ended {
                Ended::Stopped => {
                    self.release(&infra, &lease).await;
                    return;
                }
                Ended::Lost(loss) => self.dropped(&infra, loss),
            }
        }
    }

    /// Runs the sync of `infra` (this replica holds its lease) until stopped or until a write
    /// is refused for the lease, backing off with jitter on failure.
    async fn hold(
        &self,
        infra: &Infrastructure,
        token: &mut String,
        kept: &mut Option<Followed>,
    ) -> Ended {
        let mut backoff = Backoff::new(
            Duration::from_millis(self.settings.backoff_min_ms),
            Duration::from_millis(self.settings.backoff_max_ms),
        );
        let mut stop = self.shutdown.subscribe();
        let mut wake = self.wake.subscribe();
        loop {
            // The operator may have replaced the token (Companies.SetIdentityToken).
            match self.store.identity_token(infra.id).await {
                Ok(Some(stored)) => *token = stored,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(infrastructure = %infra.id, error = %e, "could not read the identity token; using the last one");
                }
            }
            wake.mark_unchanged();
            let synced = self.status(infra.id).and_then(|s| s.last_sync_time);
            let result = self.run(infra, token, kept).await;
            if *stop.borrow() {
                return Ended::Stopped;
            }
            if self.status(infra.id).and_then(|s| s.last_sync_time) != synced {
                // It made progress: a new failure is a new story.
                backoff.reset();
            }
            match result {
                Err(RunError::Resync | RunError::TokenReplaced) => {
                    backoff.reset();
                    continue;
                }
                Err(RunError::Stopped) => return Ended::Stopped,
                Err(RunError::LeaseLost | RunError::Store(StoreError::Fenced)) => {
                    return Ended::Lost(Loss::WriteRefused);
                }
                Err(e) => self.failed(infra.id, &e),
                Ok(()) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_wait()) => {}
                // A resync or a replaced token: try again now.
                _ = wake.changed() => backoff.reset(),
                _ = stop.changed() => return Ended::Stopped,
            }
        }
    }

    /// Reports a failed run: logged, and in the status as a sentence with the health.
    fn failed(&self, infra: uuid::Uuid, error: &RunError) {
        let f = match error {
            RunError::Identity(status) => match std::error::Error::source(status) {
                // The channel could not reach identity: no answer from it at all.
                Some(cause) if status.code() == tonic::Code::Unavailable => {
                    Failure::unreachable(&self.settings.identity_url, cause)
                }
                _ => Failure::from_status(status),
            },
            RunError::Connect(e) => Failure::unreachable(&self.settings.identity_url, e),
            RunError::Store(e) => Failure::store(e),
            other => Failure::other_run(&other.to_string()),
        };
        tracing::warn!(infrastructure = %infra, error = %f.text, "sync failed; retrying");
        self.contact.ended(error, &f.text);
        self.update(infra, |s| {
            // A refusal that does not say why keeps the cause an earlier one gave.
            if !(f.vague && s.health == SyncHealth::Refused) {
                s.last_error = f.text;
            }
            s.health = if f.refused {
                SyncHealth::Refused
            } else {
                SyncHealth::Retrying
            };
        });
    }
}
