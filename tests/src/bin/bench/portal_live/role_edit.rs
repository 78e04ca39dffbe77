//! A role edit that changes the record of every holder: UpdateRole acknowledged until the
//! sync's cursor reaches the edit's consistency token.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use shared::proto::identity::v1 as pb;
use shared::proto::portal::v1 as portal;
use uuid::Uuid;

use super::CATCH_UP_DEADLINE;
use super::identity_side::{Identity, consistency_token, grants};
use super::portal_side::{Portal, event_micros, unix_micros};
use crate::report::{Output, extra, round};

/// A role edit that changes the record of every holder.
pub(super) async fn role_edit(
    out: &Output,
    identity: &Identity,
    p: &Portal,
    holders: &[Uuid],
    base: &Value,
) -> anyhow::Result<()> {
    let (role, after) = hold(identity, p, holders).await?;

    let mut edit = pb::UpdateRoleRequest {
        role: Some(pb::Role {
            name: role.clone(),
            grants: grants(&["support.open_cases", "support.view_all_cases"]),
            ..Default::default()
        }),
        update_mask: None,
    };
    edit.update_mask
        .get_or_insert_default()
        .paths
        .push("grants".into());
    let sent = Instant::now();
    let sent_wall = SystemTime::now();
    let r = identity.roles.clone().update_role(edit).await?;
    let ack = Instant::now();
    let token = consistency_token(&r)?;
    let applied = p.wait_cursor(token, Duration::from_mins(5)).await?;
    let secs = (applied - ack).as_secs_f64();

    let (events, _) = p.all_events_after(after).await?;
    let changed: Vec<&portal::PortalEvent> = events
        .iter()
        .filter(|e| e.action == "odc_access.changed" && e.detail.contains("Admin"))
        .collect();
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for e in &changed {
        *per_user.entry(e.target.as_str()).or_default() += 1;
    }
    out.check(
        changed.len() == holders.len() && per_user.len() == holders.len(),
        format!(
            "the role edit changed {} records ({} members), expected {}",
            changed.len(),
            per_user.len(),
            holders.len()
        ),
    );
    let (read, good) = p
        .sample_at(
            &changed,
            portal::InfrastructurePermission::InfrastructureAdmin,
        )
        .await?;
    out.check(
        read > 0 && good == read,
        format!("{good} of {read} sampled holders' records show the role edit"),
    );
    let reconcile_start = changed.first().map_or(0, |e| event_micros(e));
    let to_sync_ms = (reconcile_start - unix_micros(sent_wall)) as f64 / 1000.0;
    out.target(
        "portal_role_edit_seconds",
        secs,
        "s",
        "<= 2 (10k holders)",
        secs <= 2.0,
        &extra(
            base,
            &json!({
                "holders": holders.len(),
                "records_changed": changed.len(),
                "records_verified": read,
                "what": "UpdateRole acknowledged → GetSyncStatus cursor at the edit's consistency token",
                "update_role_ms": round((ack - sent).as_secs_f64() * 1000.0),
                "request_sent_to_sync_reconcile_ms": round(to_sync_ms),
                "sync_reconcile_to_visible_ms": round((applied - sent).as_secs_f64() * 1000.0 - to_sync_ms),
            }),
        ),
    );
    Ok(())
}

/// A custom role assigned to every holder, synced; returns the role and the last event seen.
async fn hold(identity: &Identity, p: &Portal, holders: &[Uuid]) -> anyhow::Result<(String, i64)> {
    let role = identity
        .create_role("Bench many holders", &["support.open_cases"])
        .await?;
    let t = Instant::now();
    let seq = identity.assign_all(holders, &role).await?;
    p.wait_cursor(seq, CATCH_UP_DEADLINE).await?;
    eprintln!(
        "bench: {} holders assigned and synced in {:.1} s",
        holders.len(),
        t.elapsed().as_secs_f64()
    );
    let (_, after) = p.all_events_after(0).await?;
    Ok((role, after))
}
