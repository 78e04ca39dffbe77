//! The mail outbox's part of the store: the records of a queued message, a claimed one and a
//! delivery's state, and [`MailOutbox`], the statements the delivery worker (`core/outbox.rs`)
//! runs. A message is queued by a commit ([`SecretOp::QueueMail`](super::SecretOp::QueueMail)),
//! in the transaction of the invitation it announces; everything after is here.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::model::Micros;

/// A message written by a commit, to be delivered by the worker.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMail {
    /// The row's id.
    pub id: Uuid,
    /// The invitation it announces.
    pub invitation: Uuid,
    /// The invited user.
    pub user: Uuid,
    /// The `Message-ID` header (with its angle brackets), the same on every attempt.
    pub message_id: String,
    /// The recipient's address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body; carries the invitation secret (never logged, see `Debug`).
    pub body: String,
    /// When it was queued.
    pub create_time: Micros,
    /// When the invitation stops working: no attempt after it.
    pub expire_time: Micros,
    /// From when the workers may attempt it (system clock): until then it is left to the call
    /// that queued it, which attempts it right after the commit.
    pub first_attempt_time: Micros,
}

impl std::fmt::Debug for OutboxMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMail")
            .field("id", &self.id)
            .field("message_id", &self.message_id)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// A message a replica claimed: it alone attempts it until `lease_until`.
#[derive(Clone)]
pub struct ClaimedMail {
    /// The row's id.
    pub id: Uuid,
    /// The `Message-ID` header.
    pub message_id: String,
    /// The recipient's address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Body (carries a secret).
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the invitation stops working.
    pub expire_time: Micros,
}

impl std::fmt::Debug for ClaimedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMail")
            .field("id", &self.id)
            .field("message_id", &self.message_id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not delivered yet; attempted again at its next attempt time.
    Pending,
    /// Accepted by the relay (or written to the mailbox).
    Sent,
    /// Given up: the invitation expired before a delivery succeeded.
    Expired,
}

/// The delivery of a user's latest invitation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where it is.
    pub state: DeliveryState,
    /// Failed attempts.
    pub attempts: u32,
    /// Why the last attempt failed, a sentence for an operator.
    pub last_error: Option<String>,
    /// When the relay accepted it.
    pub sent_time: Option<Micros>,
    /// When the next attempt is due (pending only).
    pub next_attempt_time: Option<Micros>,
    /// The `Message-ID` header of the message.
    pub message_id: String,
}

/// The outbox at a glance (the gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Messages not delivered yet.
    pub pending: u64,
    /// When the oldest of them was queued.
    pub oldest_create_time: Option<Micros>,
}

/// What a failed attempt leaves.
#[derive(Debug, Clone)]
pub enum Retry {
    /// Attempt again at this time.
    At(Micros),
    /// Give up (the invitation expired).
    GiveUp,
}

/// The delivery worker's statements. Every write after the claim is conditioned on the claim
/// (`lease_owner`), so a replica whose lease expired and was taken over changes nothing.
#[async_trait]
pub trait MailOutbox: Send + Sync + std::fmt::Debug + 'static {
    /// Claims up to `limit` pending messages due at `now` whose lease is free or expired, for
    /// `owner` until `lease_until`; `only`: just that one, due or not (the call that queued it
    /// attempts it at once). On PostgreSQL the rows are
    /// picked `FOR UPDATE SKIP LOCKED`, so replicas claiming at once get different rows.
    async fn claim_mail(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        limit: usize,
        only: Option<Uuid>,
    ) -> Result<Vec<ClaimedMail>, StoreError>;
    /// Records the delivery of a message `owner` holds; false when it no longer holds it.
    async fn mail_sent(&self, id: Uuid, owner: &str, at: Micros) -> Result<bool, StoreError>;
    /// Records a failed attempt of a message `owner` holds and releases it; false when it no
    /// longer holds it.
    async fn mail_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        retry: Retry,
    ) -> Result<bool, StoreError>;
    /// The delivery of the newest message to `user` of `org`, if any.
    async fn mail_delivery(&self, org: Uuid, user: Uuid) -> Result<Option<Delivery>, StoreError>;
    /// How many messages are pending and since when.
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;
}
