//! The invitation message's delivery on a user: attempted right after the commit that queued it,
//! and shown as `User.invitation_delivery` (read from the outbox in the database).

use shared::proto::identity::v1 as pb;
use uuid::Uuid;

use super::super::{Api, ts};
use crate::core::{Delivery, DeliveryState};

/// The longest a call that queued a message waits for its first attempt before answering.
const INLINE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Api {
    /// Attempts the message `mail` the caller's commit queued (see
    /// [`crate::core::outbox::Outbox::deliver`]) before the call answers, waiting at most
    /// [`INLINE_WAIT`] for it (a relay that does not answer does not hold the call). On its own
    /// task: neither that wait nor a caller that hangs up cuts an attempt short.
    pub(in crate::grpc) async fn deliver_now(&self, mail: Uuid) {
        let outbox = self.core.outbox();
        let attempt = tokio::spawn(async move { outbox.deliver(mail).await });
        match tokio::time::timeout(INLINE_WAIT, attempt).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the delivery of an invitation message stopped");
            }
            Err(_) => tracing::info!(%mail, "an invitation message is still being delivered"),
        }
    }

    /// `user` with the delivery of its invitation message when it has an open invitation. The
    /// user is answered without it when the database does not answer (logged): the rest of the
    /// answer is from memory.
    pub(super) async fn with_delivery(
        &self,
        org: Uuid,
        id: Uuid,
        invited: bool,
        mut user: pb::User,
    ) -> pb::User {
        if !invited {
            return user;
        }
        match self.core.invitation_delivery(org, id).await {
            Ok(delivery) => user.invitation_delivery = delivery.as_ref().map(delivery_pb),
            Err(e) => tracing::warn!(error = %e, "cannot read an invitation's delivery"),
        }
        user
    }
}

/// A delivery as the API shows it: pending with a failed attempt is FAILED_RETRYING.
fn delivery_pb(d: &Delivery) -> pb::InvitationDelivery {
    use pb::invitation_delivery::State;
    let state = match d.state {
        DeliveryState::Pending if d.attempts > 0 => State::FailedRetrying,
        DeliveryState::Pending => State::Pending,
        DeliveryState::Sent => State::Sent,
        DeliveryState::Expired => State::Expired,
    };
    pb::InvitationDelivery {
        state: state.into(),
        attempts: i32::try_from(d.attempts).unwrap_or(i32::MAX),
        last_error: d.last_error.clone().unwrap_or_default(),
        sent_time: d.sent_time.and_then(ts),
        next_attempt_time: d.next_attempt_time.and_then(ts),
        message_id: d.message_id.clone(),
    }
}
