//! Propagation of single mutations, one at a time: AssignRole acknowledged until the record's
//! `odc_access.changed` event is visible through the portal API.

use std::time::{Instant, SystemTime};

use identity_svc::domain::names::fmt;
use serde_json::{Value, json};
use shared::proto::identity::v1 as pb;
use shared::proto::portal::v1 as portal;
use uuid::Uuid;

use super::identity_side::{Identity, org_scope};
use super::portal_side::{Portal, event_micros, unix_micros};
use super::{CATCH_UP_DEADLINE, PROPAGATION_DEADLINE};
use crate::report::{Output, extra, round};
use crate::stats::quantile_us;

/// Propagation of single mutations, one at a time.
pub(super) async fn propagation(
    out: &Output,
    identity: &Identity,
    p: &Portal,
    users: &[Uuid],
    base: &Value,
) -> anyhow::Result<()> {
    let member = identity
        .create_role("Bench support member", &["support.open_cases"])
        .await?;
    let admin = identity
        .create_role("Bench support admin", &["support.view_all_cases"])
        .await?;
    // Every user starts as infrastructure member.
    let seq = identity.assign_all(users, &member).await?;
    p.wait_cursor(seq, CATCH_UP_DEADLINE).await?;
    let (_, after) = p.all_events_after(0).await?;

    let samples = measure(identity, p, users, &admin, after).await?;
    report(out, p, users.len(), base, samples).await
}

/// What [`measure`] saw, per mutation that propagated.
#[derive(Debug)]
struct Samples {
    /// From the RPC's acknowledgment until the event was visible (ns).
    latencies: Vec<u64>,
    /// The AssignRole calls (ns).
    rpcs: Vec<u64>,
    /// From the request sent until the sync started reconciling (µs, one clock).
    to_sync: Vec<i64>,
    polls: u64,
    seen: Vec<portal::PortalEvent>,
    /// Mutations whose change never became visible.
    missed: usize,
}

/// One AssignRole at a time, each followed by polling the portal's events until the user's
/// `odc_access.changed` appears.
async fn measure(
    identity: &Identity,
    p: &Portal,
    users: &[Uuid],
    admin: &str,
    mut after: i64,
) -> anyhow::Result<Samples> {
    let mut access = identity.access.clone();
    let (mut latencies, mut rpcs, mut to_sync, mut polls) = (
        Vec::with_capacity(users.len()),
        Vec::with_capacity(users.len()),
        Vec::with_capacity(users.len()),
        0_u64,
    );
    let mut seen: Vec<portal::PortalEvent> = Vec::with_capacity(users.len());
    let mut missed = 0;
    for user in users {
        let sent = Instant::now();
        let sent_wall = SystemTime::now();
        access
            .assign_role(pb::AssignRoleRequest {
                parent: identity.parent.clone(),
                principal: fmt::user(identity.org, *user),
                role: admin.to_owned(),
                scope: Some(org_scope()),
                grant_period: None,
            })
            .await?;
        let ack = Instant::now();
        let wanted = user.to_string();
        let found = loop {
            let page = p.events_after(after, 100).await?;
            polls += 1;
            let now = Instant::now();
            if let Some(last) = page.last() {
                after = last.sequence;
            }
            if let Some(e) = page
                .into_iter()
                .find(|e| e.action == "odc_access.changed" && e.detail.contains(&wanted))
            {
                break Some((now, e));
            }
            if now - ack > PROPAGATION_DEADLINE {
                break None;
            }
            tokio::task::yield_now().await;
        };
        let Some((visible, event)) = found else {
            missed += 1;
            continue;
        };
        rpcs.push((ack - sent).as_nanos() as u64);
        latencies.push((visible - ack).as_nanos() as u64);
        // When the sync started reconciling, after the request was sent (one clock).
        to_sync.push(event_micros(&event) - unix_micros(sent_wall));
        seen.push(event);
    }
    Ok(Samples {
        latencies,
        rpcs,
        to_sync,
        polls,
        seen,
        missed,
    })
}

/// The checks and the figures of [`propagation`].
async fn report(
    out: &Output,
    p: &Portal,
    n: usize,
    base: &Value,
    samples: Samples,
) -> anyhow::Result<()> {
    let Samples {
        mut latencies,
        mut rpcs,
        mut to_sync,
        polls,
        seen,
        missed,
    } = samples;
    out.check(
        missed == 0,
        format!("{missed} of {n} identity mutations never changed the portal record"),
    );
    let refs: Vec<&portal::PortalEvent> = seen.iter().collect();
    let (read, good) = p
        .sample_at(&refs, portal::InfrastructurePermission::InfrastructureAdmin)
        .await?;
    out.check(
        read > 0 && good == read,
        format!("{good} of {read} sampled records show the propagated change"),
    );
    latencies.sort_unstable();
    rpcs.sort_unstable();
    to_sync.sort_unstable();
    let ms = |v: &[u64], q: f64| round(quantile_us(v, q) / 1000.0);
    let (p50, p99) = (ms(&latencies, 0.5), ms(&latencies, 0.99));
    let to_sync_ms = |q: f64| {
        to_sync
            .get(((to_sync.len() as f64 * q) as usize).min(to_sync.len().saturating_sub(1)))
            .map_or(0.0, |v| round(*v as f64 / 1000.0))
    };
    let detail = extra(
        base,
        &json!({
            "samples": latencies.len(),
            "p50_ms": p50, "p99_ms": p99, "max_ms": ms(&latencies, 1.0),
            "rpc": "AssignRole (org scope: a member-level role replaced by an admin-level one)",
            "observed_by": "Sync/ListPortalEvents polled without pause after the last event seen (event and record commit together)",
            "polls_per_change": round(polls as f64 / n.max(1) as f64),
            "assign_role_p50_ms": ms(&rpcs, 0.5), "assign_role_p99_ms": ms(&rpcs, 0.99),
            "request_sent_to_sync_reconcile_p50_ms": to_sync_ms(0.5),
            "request_sent_to_sync_reconcile_p99_ms": to_sync_ms(0.99),
            "records_verified": read,
        }),
    );
    out.target(
        "portal_propagation_p50_ms",
        p50,
        "ms",
        "<= 20",
        p50 <= 20.0,
        &detail,
    );
    out.target(
        "portal_propagation_p99_ms",
        p99,
        "ms",
        "<= 200",
        p99 <= 200.0,
        &detail,
    );
    Ok(())
}
