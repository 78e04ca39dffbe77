//! What the fault tests (`tests/e2e/faults.rs`) and the chaos soak (`bench chaos`) both check
//! after a fault: the audit trail of an organization is gap-free from sequence 1 and the change
//! feed replayed from the start carries the same events; and the numbered user creations both
//! send, each with a request id of its own so that a retry is recognised.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use shared::proto::identity::v1 as pb;
use shared::testkit::clients::Credentials;
use tonic::transport::Channel;

/// Longest wait for the feed's next event.
const FEED_WAIT: Duration = Duration::from_mins(1);

/// CreateUser number `n` of `parent`: `{prefix}{n}@{domain}`, active, with request id `n`.
pub fn numbered_user(parent: &str, n: u64, prefix: &str, domain: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        parent: parent.to_owned(),
        user: Some(pb::User {
            email: format!("{prefix}{n}@{domain}"),
            display_name: format!("{prefix} {n}"),
            ..Default::default()
        }),
        active: Some(true),
        initial_password: String::new(),
        request_id: format!("00000000-0000-4000-8000-{n:012}"),
    }
}

/// Every event of `parent`'s audit trail, by sequence, read on `channel` with `token`.
///
/// # Errors
/// A refused call.
pub async fn audit_trail(
    channel: &Channel,
    token: &str,
    parent: &str,
) -> anyhow::Result<Vec<pb::ChangeEvent>> {
    let mut audit = pb::audit_client::AuditClient::with_interceptor(
        channel.clone(),
        Credentials::bearer(Some(token)),
    );
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = audit
            .list_change_events(pb::ListChangeEventsRequest {
                parent: parent.to_owned(),
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    events.sort_by_key(|e| e.sequence);
    Ok(events)
}

/// The audit trail, once checked gap-free from 1 and equal (sequence, action, target) to the
/// feed replayed from the start.
///
/// # Errors
/// A gap, a feed that differs or stops short, or a refused call.
pub async fn trail_equal_to_feed(
    channel: &Channel,
    token: &str,
    parent: &str,
) -> anyhow::Result<Vec<pb::ChangeEvent>> {
    let trail = audit_trail(channel, token, parent).await?;
    for (expected, e) in (1i64..).zip(&trail) {
        ensure!(
            e.sequence == expected,
            "the audit trail has a gap before sequence {}",
            e.sequence
        );
    }
    let mut audit = pb::audit_client::AuditClient::with_interceptor(
        channel.clone(),
        Credentials::bearer(Some(token)),
    );
    let mut feed = audit
        .watch_changes(pb::WatchChangesRequest {
            parent: parent.to_owned(),
            after_sequence: 0,
        })
        .await?
        .into_inner();
    for expected in &trail {
        let e = tokio::time::timeout(FEED_WAIT, feed.message())
            .await
            .with_context(|| format!("the feed stopped before {}", expected.sequence))??
            .with_context(|| format!("the feed ended before {}", expected.sequence))?;
        ensure!(
            (e.sequence, &e.action, &e.target)
                == (expected.sequence, &expected.action, &expected.target),
            "the feed's event {} differs from the audit trail's",
            expected.sequence
        );
    }
    Ok(trail)
}
