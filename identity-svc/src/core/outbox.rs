//! The delivery worker of the invitation mail outbox.
//!
//! A mutation that issues an invitation queues its message with [`invitation_mail`]: a
//! [`SecretOp::QueueMail`] committed in the invitation's own transaction, so there is no
//! invitation without its message and no message without its invitation. This worker sends
//! what is queued, on every replica at once:
//!
//! - **Claim with a lease.** A replica claims due messages for [`MailSettings::lease_ms`]
//!   (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two replicas never claim the same row; SQLite:
//!   one writer). Every outcome is written only while the claim holds, so a replica that lost
//!   its lease changes nothing. A claim whose lease expired — its replica died mid-delivery — is
//!   taken again by any replica, after a restart too: claims live in the database.
//! - **Once.** A message is sent, then marked sent. It goes out twice only if a replica dies
//!   between the relay's acceptance and the mark; every attempt carries the same `Message-ID`,
//!   so the repeat is recognisable.
//! - **Retry with back-off.** A failed attempt is recorded (attempts, the error as a sentence)
//!   and retried after `retry_base_ms · 2^(attempts−1)`, at most `retry_max_ms`, until the
//!   invitation expires; then the message is given up (`expired`).
//! - **At once when possible.** The handler that queued a message attempts it right after the
//!   commit ([`Outbox::deliver`]), so a working relay delivers before the call answers; the
//!   workers leave a new message to it for [`FIRST_ATTEMPT_GRACE`], then the poll
//!   ([`MailSettings::poll_interval_ms`]) picks up the rest.
//!
//! Times here are the system clock's (leases and back-off are shared with other replicas
//! through the database), not the core's injectable clock.

use std::sync::Arc;
use std::time::Duration;

use shared::traces::Traces;
use tracing::Instrument as _;

use uuid::Uuid;

use super::SystemClock;
use super::mailer::{Mail, Mailer};
use super::store::{ClaimedMail, OutboxMail, Retry, SecretOp, Store, StoreError};
use crate::config::MailSettings;
use crate::domain::model::Micros;

/// Gauge: messages not delivered yet (all replicas' outbox: the database's count).
pub const OUTBOX_PENDING: &str = "identity_outbox_pending";
/// Gauge: seconds since the oldest undelivered message was queued (0 when none is).
pub const OUTBOX_OLDEST_PENDING_SECONDS: &str = "identity_outbox_oldest_pending_seconds";
/// Counter: delivery attempts by `outcome`: `sent`, `failed` (retried later), `expired`.
pub const OUTBOX_DELIVERIES_TOTAL: &str = "identity_outbox_deliveries_total";

/// Messages claimed at a time.
const CLAIM_BATCH: usize = 16;

/// How long the workers leave a new message to the call that queued it (which attempts it
/// right after its commit, before it answers): so the answer comes after the attempt, and a
/// worker takes over only if that call's replica died.
const FIRST_ATTEMPT_GRACE: Duration = Duration::from_secs(5);

/// The right-hand side of every `Message-ID`.
const MESSAGE_ID_DOMAIN: &str = "invitations.identity-svc";

/// The message announcing invitation `invitation` of `user` (address `to`) to organization
/// `org_name`, carrying its `secret`: the message's id and the commit's [`SecretOp::QueueMail`].
#[must_use]
pub fn invitation_mail(
    to: &str,
    org_name: &str,
    user: Uuid,
    invitation: Uuid,
    secret: &str,
    (now, expire_time): (Micros, Micros),
) -> (Uuid, SecretOp) {
    let id = Uuid::now_v7();
    let mail = SecretOp::QueueMail(OutboxMail {
        id,
        invitation,
        user,
        message_id: format!("<{id}@{MESSAGE_ID_DOMAIN}>"),
        to: to.to_owned(),
        subject: format!("You are invited to {org_name} on OutSystems Developer Cloud"),
        body: format!(
            "You have been invited to the organization {org_name}.\n\n\
             Accept the invitation within 7 days with Users.AcceptInvitation and this token:\n\n\
             invitation_token: {secret}\n"
        ),
        create_time: now,
        expire_time,
        first_attempt_time: SystemClock
            .now_micros()
            .saturating_add(micros(FIRST_ATTEMPT_GRACE)),
    });
    (id, mail)
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Failed,
    Expired,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Failed => "failed",
            Outcome::Expired => "expired",
        }
    }
}

/// The delivery worker of one replica (see the module documentation).
#[derive(Debug)]
pub struct Outbox {
    store: Arc<dyn Store>,
    mailer: Mailer,
    settings: MailSettings,
    /// This replica's name in `lease_owner`: unique per process.
    owner: String,
    /// Wakes the worker before its next poll.
    wake: tokio::sync::Notify,
}

impl Outbox {
    pub(super) fn new(store: Arc<dyn Store>, mailer: Mailer, settings: MailSettings) -> Self {
        Self {
            store,
            mailer,
            settings,
            owner: format!("identity-{}", Uuid::new_v4()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The same worker with other settings.
    pub(super) fn with_settings(&self, settings: MailSettings) -> Self {
        Self::new(Arc::clone(&self.store), self.mailer.clone(), settings)
    }

    /// Sends the messages that are due until `closing` turns true: at every poll, and when
    /// woken. Errors of the database are retried at the next poll, logged when they start and
    /// when they end ([`Outage`]), not at every poll. Each attempt is
    /// a `mail_delivery` span of its own trace in `traces` (the worker serves no request).
    pub async fn run(
        self: Arc<Self>,
        mut closing: tokio::sync::watch::Receiver<bool>,
        traces: Traces,
    ) {
        let every = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        let mut outage = Outage::default();
        loop {
            let polled = self.deliver_due_traced(&traces).await;
            outage.log(polled.as_ref().map(|_| ()));
            self.record_gauges().await;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.wake.notified() => {}
                _ = closing.wait_for(|c| *c) => return,
            }
        }
    }

    /// Attempts message `id` now unless someone holds it (the handler that queued it, right
    /// after the commit: the workers leave it alone for [`FIRST_ATTEMPT_GRACE`]); a failure is
    /// recorded and retried by the workers like any other.
    pub async fn deliver(&self, id: Uuid) {
        match self.claim(Some(id)).await {
            Ok(claimed) => {
                for mail in claimed {
                    self.attempt(mail).await;
                }
            }
            Err(e) => {
                let error = shared::health::with_causes(&e);
                tracing::warn!(%error, "cannot claim a queued message; a worker will");
                self.wake.notify_one();
            }
        }
    }

    /// Attempts every message that is due, a claim of [`CLAIM_BATCH`] at a time; how many.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        self.deliver_due_traced(&Traces::off()).await
    }

    async fn deliver_due_traced(&self, traces: &Traces) -> Result<usize, StoreError> {
        let mut attempted = 0;
        loop {
            let claimed = self.claim(None).await?;
            let n = claimed.len();
            for mail in claimed {
                let span = tracing::info_span!(
                    "mail_delivery",
                    message = %mail.id,
                    attempt = mail.attempts + 1
                );
                traces.root(&span);
                self.attempt(mail).instrument(span).await;
            }
            attempted += n;
            if n < CLAIM_BATCH {
                return Ok(attempted);
            }
        }
    }

    async fn claim(&self, only: Option<Uuid>) -> Result<Vec<ClaimedMail>, StoreError> {
        let now = SystemClock.now_micros();
        let lease = micros(Duration::from_millis(self.settings.lease_ms));
        self.store
            .claim_mail(
                &self.owner,
                now,
                now.saturating_add(lease),
                CLAIM_BATCH,
                only,
            )
            .await
    }

    /// Sends one claimed message and records the outcome (while the claim holds).
    async fn attempt(&self, claimed: ClaimedMail) {
        let id = claimed.id;
        let attempts = claimed.attempts;
        let expire_time = claimed.expire_time;
        let mail = Mail {
            to: claimed.to,
            subject: claimed.subject,
            body: claimed.body,
            message_id: Some(claimed.message_id),
        };
        let sent = self.mailer.send(mail).await;
        let now = SystemClock.now_micros();
        let (outcome, recorded) = match sent {
            Ok(()) => (
                Outcome::Sent,
                self.store.mail_sent(id, &self.owner, now).await,
            ),
            Err(e) => {
                let error = shared::health::with_causes(&e);
                let next = now.saturating_add(micros(backoff(&self.settings, attempts + 1)));
                let (outcome, retry) = if next >= expire_time {
                    (Outcome::Expired, Retry::GiveUp)
                } else {
                    (Outcome::Failed, Retry::At(next))
                };
                tracing::warn!(
                    %id,
                    attempts = attempts + 1,
                    %error,
                    outcome = outcome.label(),
                    "an invitation message was not delivered"
                );
                let recorded = self.store.mail_failed(id, &self.owner, &error, retry).await;
                (outcome, recorded)
            }
        };
        metrics::counter!(OUTBOX_DELIVERIES_TOTAL, "outcome" => outcome.label()).increment(1);
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                let lost = "the claim on a message expired before its outcome was recorded";
                tracing::warn!(%id, "{lost}");
            }
            Err(e) => {
                let error = shared::health::with_causes(&e);
                tracing::warn!(
                    %id,
                    %error,
                    "cannot record a delivery's outcome; attempted again once the claim expires"
                );
            }
        }
    }

    /// Sets the depth and age gauges from the database.
    async fn record_gauges(&self) {
        match self.store.outbox_stats().await {
            Ok(stats) => {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!(OUTBOX_PENDING).set(stats.pending as f64);
                let age = stats.oldest_create_time.map_or(0.0, |t| {
                    #[allow(clippy::cast_precision_loss)]
                    let micros = SystemClock.now_micros().saturating_sub(t).max(0) as f64;
                    micros / 1e6
                });
                metrics::gauge!(OUTBOX_OLDEST_PENDING_SECONDS).set(age);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the outbox's depth"),
        }
    }
}

/// Whether the worker's polls fail (the database out of reach, as a rule), so that an outage
/// is logged twice, a warning when it starts and a line when it ends, instead of a warning at
/// every poll (once a second by default); the polls in between log at debug level.
#[derive(Debug, Default)]
struct Outage {
    /// Since when, and how many polls failed in a row; `None` while polls succeed.
    failing: Option<(std::time::Instant, u64)>,
}

/// What a poll's outcome changes about an [`Outage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutageChange {
    /// The first failed poll after a success (or at start).
    Started,
    /// Another failed poll.
    Continues,
    /// The first successful poll after `failed_polls` failed ones.
    Ended { failed_polls: u64 },
    /// Another successful poll.
    None,
}

impl Outage {
    /// Records a poll's outcome; what it changes.
    fn record(&mut self, failed: bool) -> OutageChange {
        match (failed, &mut self.failing) {
            (true, None) => {
                self.failing = Some((std::time::Instant::now(), 1));
                OutageChange::Started
            }
            (true, Some((_, polls))) => {
                *polls += 1;
                OutageChange::Continues
            }
            (false, Some((_, polls))) => {
                let failed_polls = *polls;
                self.failing = None;
                OutageChange::Ended { failed_polls }
            }
            (false, None) => OutageChange::None,
        }
    }

    /// Records a poll's outcome and logs what it changes.
    fn log(&mut self, polled: Result<(), &StoreError>) {
        let since = self.failing.map(|(since, _)| since.elapsed());
        match (self.record(polled.is_err()), polled) {
            (OutageChange::Started, Err(e)) => {
                let error = shared::health::with_causes(e);
                tracing::warn!(
                    %error,
                    "cannot drain the mail outbox; retrying at every poll (logged again once it drains)"
                );
            }
            (OutageChange::Continues, Err(e)) => {
                let error = shared::health::with_causes(e);
                tracing::debug!(%error, "the mail outbox still cannot be drained");
            }
            (OutageChange::Ended { failed_polls }, _) => tracing::info!(
                failed_polls,
                seconds = since.unwrap_or_default().as_secs(),
                "the mail outbox drains again"
            ),
            _ => {}
        }
    }
}

/// The wait after failed attempt number `attempt` (from 1): `retry_base_ms · 2^(attempt−1)`,
/// at most `retry_max_ms`.
fn backoff(settings: &MailSettings, attempt: u32) -> Duration {
    let base = settings.retry_base_ms.max(1);
    let factor = 1u64 << attempt.saturating_sub(1).min(32);
    Duration::from_millis(
        base.saturating_mul(factor)
            .min(settings.retry_max_ms.max(base)),
    )
}

fn micros(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

#[cfg(test)]
mod tests;
