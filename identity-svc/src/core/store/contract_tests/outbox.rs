//! The contract of the mail outbox: a message queued by its invitation's commit, claimed by one
//! holder at a time under a lease, taken again once the lease expired (the old holder then
//! changes nothing), retried at its next attempt time, given up, cancelled by a resend, and
//! claimed by concurrent claimers without overlap.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::fixtures::{SECOND, T0, commit, seed_org};
use crate::core::store::{Commit, DeliveryState, OutboxMail, OutboxStats, Retry, SecretOp, Store};

fn mail(user: Uuid, n: usize) -> OutboxMail {
    let id = Uuid::now_v7();
    OutboxMail {
        id,
        invitation: Uuid::now_v7(),
        user,
        message_id: format!("<{id}@test>"),
        to: format!("user{n}@x.example"),
        subject: "Invitation".to_owned(),
        body: format!("invitation_token: secret-{n}"),
        create_time: T0,
        expire_time: T0 + 100 * SECOND,
        first_attempt_time: T0,
    }
}

/// Queues `mails` for `org` (at sequence 3) in one commit.
async fn queue(store: &dyn Store, org: Uuid, ops: &[SecretOp]) {
    store
        .commit(Commit {
            secrets: ops,
            ..commit(org, 3, &[])
        })
        .await
        .unwrap();
}

pub(super) async fn a_queued_message_is_claimed_by_one_holder_until_sent(store: &dyn Store) {
    let seed = seed_org(store).await;
    let m = mail(seed.user, 1);
    queue(store, seed.org, &[SecretOp::QueueMail(m.clone())]).await;
    assert_eq!(
        store.outbox_stats().await.unwrap(),
        OutboxStats {
            pending: 1,
            oldest_create_time: Some(T0)
        }
    );
    let d = store
        .mail_delivery(seed.org, seed.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.state, d.attempts, d.next_attempt_time),
        (DeliveryState::Pending, 0, None)
    );
    assert_eq!(d.message_id, m.message_id);

    let claimed = store
        .claim_mail("a", T0, T0 + 10 * SECOND, 16, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].id, claimed[0].body.as_str()),
        (m.id, m.body.as_str())
    );
    assert_eq!(claimed[0].message_id, m.message_id);
    // Held: nobody else gets it, nor can record its outcome.
    assert!(
        store
            .claim_mail("b", T0, T0 + 10 * SECOND, 16, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!store.mail_sent(m.id, "b", T0).await.unwrap());
    assert!(store.mail_sent(m.id, "a", T0 + SECOND).await.unwrap());
    let d = store
        .mail_delivery(seed.org, seed.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, DeliveryState::Sent);
    assert_eq!(d.sent_time, Some(T0 + SECOND));
    // Sent is final: not claimed again, not counted as pending.
    assert!(
        store
            .claim_mail("a", T0 + 60 * SECOND, T0 + 70 * SECOND, 16, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.outbox_stats().await.unwrap().pending, 0);
}

pub(super) async fn an_expired_lease_is_claimed_again_and_retries_wait(store: &dyn Store) {
    let seed = seed_org(store).await;
    let m = mail(seed.user, 1);
    queue(store, seed.org, &[SecretOp::QueueMail(m.clone())]).await;
    assert_eq!(
        store
            .claim_mail("dead", T0, T0 + 10 * SECOND, 16, None)
            .await
            .unwrap()
            .len(),
        1
    );
    // The holder died: once its lease expired another replica takes the message over...
    assert!(
        store
            .claim_mail("b", T0 + 9 * SECOND, T0 + 20 * SECOND, 16, None)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_mail("b", T0 + 10 * SECOND, T0 + 20 * SECOND, 16, None)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    // ...and the old holder, back, changes nothing.
    assert!(
        !store
            .mail_sent(m.id, "dead", T0 + 11 * SECOND)
            .await
            .unwrap()
    );
    let retry_at = T0 + 30 * SECOND;
    assert!(
        store
            .mail_failed(m.id, "b", "the relay is down", Retry::At(retry_at))
            .await
            .unwrap()
    );
    let d = store
        .mail_delivery(seed.org, seed.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!((d.attempts, d.next_attempt_time), (1, Some(retry_at)));
    assert_eq!(d.last_error.as_deref(), Some("the relay is down"));
    // Not due before its next attempt time, only that one when asked for it.
    assert!(
        store
            .claim_mail("b", retry_at - 1, retry_at + SECOND, 16, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .claim_mail("b", retry_at, retry_at + SECOND, 16, Some(Uuid::now_v7()))
            .await
            .unwrap()
            .is_empty()
    );
    let third = store
        .claim_mail("b", retry_at, retry_at + SECOND, 16, Some(m.id))
        .await
        .unwrap();
    assert_eq!(third[0].attempts, 1);
    assert!(
        store
            .mail_failed(m.id, "b", "still down", Retry::GiveUp)
            .await
            .unwrap()
    );
    let d = store
        .mail_delivery(seed.org, seed.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.state, d.attempts), (DeliveryState::Expired, 2));
    assert_eq!(store.outbox_stats().await.unwrap().pending, 0);
}

pub(super) async fn a_new_message_is_left_to_its_caller_until_its_first_attempt_time(
    store: &dyn Store,
) {
    let seed = seed_org(store).await;
    let m = OutboxMail {
        first_attempt_time: T0 + 5 * SECOND,
        ..mail(seed.user, 1)
    };
    queue(store, seed.org, &[SecretOp::QueueMail(m.clone())]).await;
    // The workers do not take it yet; the call that queued it does.
    assert!(
        store
            .claim_mail("worker", T0, T0 + SECOND, 16, None)
            .await
            .unwrap()
            .is_empty()
    );
    let mine = store
        .claim_mail("caller", T0, T0 + SECOND, 16, Some(m.id))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert!(
        store
            .mail_failed(m.id, "caller", "down", Retry::At(T0 + 2 * SECOND))
            .await
            .unwrap()
    );
    // A retry is the workers'.
    let retried = store
        .claim_mail("worker", T0 + 2 * SECOND, T0 + 3 * SECOND, 16, None)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
}

pub(super) async fn a_resend_cancels_the_undelivered_message(store: &dyn Store) {
    let seed = seed_org(store).await;
    let (old, new) = (mail(seed.user, 1), mail(seed.user, 2));
    queue(store, seed.org, &[SecretOp::QueueMail(old)]).await;
    store
        .commit(Commit {
            secrets: &[
                SecretOp::CancelMail { user: seed.user },
                SecretOp::QueueMail(new.clone()),
            ],
            ..commit(seed.org, 3, &[])
        })
        .await
        .unwrap();
    let claimed = store
        .claim_mail("a", T0, T0 + SECOND, 16, None)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [new.id]);
    let d = store
        .mail_delivery(seed.org, seed.user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.message_id, new.message_id);
}

pub(super) async fn concurrent_claimers_never_share_a_message(store: &dyn Store) {
    let seed = seed_org(store).await;
    let ops: Vec<SecretOp> = (0..40)
        .map(|n| SecretOp::QueueMail(mail(seed.user, n)))
        .collect();
    queue(store, seed.org, &ops).await;
    let claim = |c: usize| async move {
        let owner = format!("replica-{c}");
        let mut mine = Vec::new();
        loop {
            let got = store
                .claim_mail(&owner, T0, T0 + SECOND, 3, None)
                .await
                .unwrap();
            if got.is_empty() {
                return mine;
            }
            mine.extend(got.into_iter().map(|m| m.id));
        }
    };
    let (a, b, c, d) = tokio::join!(claim(0), claim(1), claim(2), claim(3));
    let all: Vec<Uuid> = [a, b, c, d].into_iter().flatten().collect();
    let distinct: BTreeSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "a message was claimed twice or never");
    assert_eq!(distinct.len(), 40);
}
