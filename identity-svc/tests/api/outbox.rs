//! The invitation mail outbox against a real SMTP relay (aiosmtpd, see `smtp_relay.rs`) that is
//! down for a while: InviteUser answers OK and the invitation shows its delivery pending with
//! the failed attempts and why; once the relay is back every message arrives, none twice
//! (counted by Message-ID at the relay), and the delivery says SENT. Also across a restart of
//! identity, and with two replicas on one database draining the same outbox.

use std::collections::BTreeSet;
use std::time::Duration;

use identity_svc::config::{MailSettings, Settings, SmtpSettings, SmtpTls};
use shared::proto::identity::v1 as pb;
use shared::proto::identity::v1::invitation_delivery::State;

use crate::helpers::*;
use crate::smtp_relay::{self, Relay};

crate::api_tests!(
    mail_queued_while_the_relay_is_down_is_delivered_once_when_it_is_back,
    pending_mail_is_delivered_after_a_restart,
    two_replicas_deliver_each_pending_message_exactly_once,
    a_message_whose_replica_hangs_mid_delivery_is_taken_over_once_its_claim_expires,
);

const RELAY_PASSWORD: &str = "outbox-relay-pass";

/// Identity's settings for `relay` (STARTTLS, AUTH), with fast retries.
fn through(relay: &Relay) -> impl Fn(&mut Settings) + Send + Sync + 'static {
    through_port(relay, relay.port(), 60_000)
}

/// [`through`], but to `port` (with the relay's CA and password) and claims of `lease_ms`.
fn through_port(
    relay: &Relay,
    port: u16,
    lease_ms: u64,
) -> impl Fn(&mut Settings) + Send + Sync + 'static {
    let smtp = SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        from: "noreply@odc.example".into(),
        tls: SmtpTls::Starttls,
        ca_file: Some(relay.ca_file.clone()),
        username: Some(smtp_relay::USER.into()),
        password: Some(shared::auth::Secret::new(RELAY_PASSWORD)),
        password_file: None,
    };
    move |s: &mut Settings| {
        s.smtp = Some(smtp.clone());
        s.mail = MailSettings {
            poll_interval_ms: 20,
            retry_base_ms: 50,
            retry_max_ms: 200,
            lease_ms,
        };
    }
}

/// An organization with a signed-in administrator (its invitation through the mailbox), then
/// the server restarted with mail through `relay`, which is down. `None` without aiosmtpd.
async fn admin_with_relay_down(b: Backend, test: &str) -> Option<(TestApp, Session, Relay)> {
    let mut relay = Relay::start(test, RELAY_PASSWORD, false).await?;
    relay.stop();
    let mut app = spawn_app(b).await;
    let admin = app.admin("Outbox").await;
    app.stop().await;
    app.tweak = Some(Box::new(through(&relay)));
    app.start().await;
    Some((app, admin, relay))
}

/// Invites `email`; the invited user's resource name.
async fn invite(app: &TestApp, admin: &Session, email: &str) -> String {
    app.users(Some(&admin.token))
        .invite_user(pb::InviteUserRequest {
            parent: admin.org.clone(),
            email: email.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// The delivery of `user`'s invitation message, as GetUser shows it.
async fn delivery(app: &TestApp, admin: &Session, user: &str) -> pb::InvitationDelivery {
    app.users(Some(&admin.token))
        .get_user(pb::GetUserRequest { name: user.into() })
        .await
        .unwrap()
        .into_inner()
        .invitation_delivery
        .unwrap_or_else(|| panic!("{user} shows no invitation delivery"))
}

/// Waits (with a deadline) until every one of `users` shows its delivery SENT (each asked of
/// the replica that invited it); their Message-IDs.
async fn wait_all_sent(admin: &Session, users: &[(&TestApp, String)]) -> BTreeSet<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut ids = BTreeSet::new();
        for (app, user) in users {
            let d = delivery(app, admin, user).await;
            if d.state() == State::Sent {
                assert!(d.sent_time.is_some() && d.last_error.is_empty(), "{d:?}");
                ids.insert(d.message_id);
            }
        }
        if ids.len() == users.len() {
            return ids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} deliveries are SENT",
            ids.len(),
            users.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the relay holds once every delivery is SENT: one message per Message-ID, exactly
/// the `expected` ones.
fn assert_delivered_once(relay: &Relay, expected: &BTreeSet<String>) {
    let ids = relay.message_ids();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        distinct.len(),
        "a message arrived twice: {ids:?}"
    );
    assert_eq!(&distinct, expected);
}

async fn mail_queued_while_the_relay_is_down_is_delivered_once_when_it_is_back(b: Backend) {
    let test = "outbox::mail_queued_while_the_relay_is_down_is_delivered_once_when_it_is_back";
    let Some((app, admin, mut relay)) = admin_with_relay_down(b, test).await else {
        return;
    };
    let mut users = Vec::new();
    for n in 0..3 {
        users.push(invite(&app, &admin, &format!("down{n}@outbox.example")).await);
    }
    // Each InviteUser answered OK after its first attempt failed.
    for user in &users {
        let d = delivery(&app, &admin, user).await;
        assert_eq!(d.state(), State::FailedRetrying, "{d:?}");
        assert!(d.attempts >= 1, "{d:?}");
        assert!(
            d.last_error.contains("SMTP relay 127.0.0.1:"),
            "not an operator's sentence: {}",
            d.last_error
        );
        assert!(
            d.next_attempt_time.is_some() && d.sent_time.is_none(),
            "{d:?}"
        );
    }
    // The worker keeps trying while the relay is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while delivery(&app, &admin, &users[0]).await.attempts < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no retry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    relay.restart().await;
    let on_app: Vec<_> = users.iter().map(|u| (&app, u.clone())).collect();
    let ids = wait_all_sent(&admin, &on_app).await;
    assert_delivered_once(&relay, &ids);
    // What arrived is the invitation: its token works.
    let message = &relay.messages()[0];
    let token = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("invitation_token: "))
        .unwrap();
    app.users(None)
        .accept_invitation(pb::AcceptInvitationRequest {
            invitation_token: token.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap();
}

async fn pending_mail_is_delivered_after_a_restart(b: Backend) {
    let test = "outbox::pending_mail_is_delivered_after_a_restart";
    let Some((mut app, admin, mut relay)) = admin_with_relay_down(b, test).await else {
        return;
    };
    let users = [
        invite(&app, &admin, "restart0@outbox.example").await,
        invite(&app, &admin, "restart1@outbox.example").await,
    ];
    app.stop().await;
    relay.restart().await;
    assert!(relay.messages().is_empty());
    // The same data directory or database: the outbox survived the restart.
    app.start().await;
    let on_app: Vec<_> = users.iter().map(|u| (&app, u.clone())).collect();
    let ids = wait_all_sent(&admin, &on_app).await;
    assert_delivered_once(&relay, &ids);
}

async fn two_replicas_deliver_each_pending_message_exactly_once(b: Backend) {
    let test = "outbox::two_replicas_deliver_each_pending_message_exactly_once";
    let Some((app, admin, mut relay)) = admin_with_relay_down(b, test).await else {
        return;
    };
    let replica = app.replica(through(&relay)).await;
    let mut users = Vec::new();
    for n in 0..8 {
        let on = if n % 2 == 0 { &app } else { &replica };
        users.push((
            on,
            invite(on, &admin, &format!("replica{n}@outbox.example")).await,
        ));
    }
    // Both replicas' workers retry the whole outbox while the relay is down, then race for it.
    relay.restart().await;
    let ids = wait_all_sent(&admin, &users).await;
    assert_eq!(ids.len(), users.len());
    assert_delivered_once(&relay, &ids);
}

/// A "relay" that accepts connections and never says a word: an attempt to it hangs (until the
/// SMTP client's 30 s timeout), as if its replica had died mid-delivery. Returns its port.
async fn silent_relay() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

async fn a_message_whose_replica_hangs_mid_delivery_is_taken_over_once_its_claim_expires(
    b: Backend,
) {
    let test =
        "outbox::a_message_whose_replica_hangs_mid_delivery_is_taken_over_once_its_claim_expires";
    let Some((mut app, admin, mut relay)) = admin_with_relay_down(b, test).await else {
        return;
    };
    relay.restart().await;
    // This replica's attempts hang, holding their claim for one second.
    app.stop().await;
    app.tweak = Some(Box::new(through_port(&relay, silent_relay().await, 1000)));
    app.start().await;
    // The other replica reaches the relay.
    let replica = app.replica(through_port(&relay, relay.port(), 1000)).await;
    let user = invite(&app, &admin, "hung@outbox.example").await;
    // InviteUser answered while its attempt still hangs; once the claim expired, the other
    // replica took the message over and delivered it.
    let ids = wait_all_sent(&admin, &[(&replica, user)]).await;
    assert_delivered_once(&relay, &ids);
}
