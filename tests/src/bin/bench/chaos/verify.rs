//! The chaos suite's end checks, once every process is back and the load has stopped: nothing
//! acknowledged lost, the audit trail gap-free and equal to the feed, every identity replica
//! equal to a freshly started one, the portal records equal to a fresh derivation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use shared::proto::identity::v1 as pb;
use shared::proto::portal::v1 as portal;
use tonic::transport::Channel;

use super::load::{Tally, create_user};
use crate::identity_child::Bearer;
use crate::portal_child::{Acting, PortalChild};

/// Longest wait for replicas and syncs to reach the last sequence.
const SETTLE: Duration = Duration::from_mins(3);

/// The failed creations sent again with their request ids (each must now succeed, once).
pub(crate) async fn retry_failed_creations(
    identity: &Channel,
    bearer: &Bearer,
    parent: &str,
    tally: &Tally,
) -> anyhow::Result<()> {
    let mut users =
        pb::users_client::UsersClient::with_interceptor(identity.clone(), bearer.clone());
    for n in &tally.create_failed {
        let deadline = Instant::now() + SETTLE;
        loop {
            match users.create_user(create_user(parent, *n)).await {
                Ok(_) => break,
                Err(s) if Instant::now() < deadline && super::load::retryable(&s) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => anyhow::bail!("retrying creation {n}: {s:?}"),
            }
        }
    }
    Ok(())
}

/// A snapshot of `channel` once it has applied `sequence`, in a canonical order.
async fn snapshot_at(
    channel: &Channel,
    bearer: &Bearer,
    parent: &str,
    sequence: i64,
) -> anyhow::Result<pb::Snapshot> {
    let mut audit =
        pb::audit_client::AuditClient::with_interceptor(channel.clone(), bearer.clone());
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut s = audit
            .get_snapshot(pb::GetSnapshotRequest {
                parent: parent.to_owned(),
            })
            .await?
            .into_inner();
        if s.sequence >= sequence {
            anyhow::ensure!(s.sequence == sequence, "a write after the load stopped");
            s.users.sort_by(|a, b| a.name.cmp(&b.name));
            s.roles.sort_by(|a, b| a.name.cmp(&b.name));
            s.role_assignments.sort_by_key(|a| {
                (
                    a.principal.clone(),
                    a.role.clone(),
                    format!("{:?}", a.scope),
                )
            });
            return Ok(s);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "a replica stayed at {}",
            s.sequence
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every replica's state equals the fresh one's at `sequence`; every acknowledged write is in
/// it and nothing is there twice.
pub(crate) async fn replicas_equal_fresh(
    replicas: &[Channel],
    fresh: &Channel,
    bearer: &Bearer,
    parent: &str,
    sequence: i64,
    tally: &Tally,
) -> anyhow::Result<u64> {
    let truth = snapshot_at(fresh, bearer, parent, sequence).await?;
    for (i, r) in replicas.iter().enumerate() {
        let s = snapshot_at(r, bearer, parent, sequence).await?;
        anyhow::ensure!(s == truth, "identity replica {i} differs from a fresh load");
    }
    let names: BTreeSet<&str> = truth.users.iter().map(|u| u.name.as_str()).collect();
    let emails: BTreeSet<&str> = truth.users.iter().map(|u| u.email.as_str()).collect();
    anyhow::ensure!(
        emails.len() == truth.users.len(),
        "two users share an email"
    );
    let mut lost = 0u64;
    lost += tally
        .created
        .values()
        .filter(|n| !names.contains(n.as_str()))
        .count() as u64;
    let org_roles: BTreeMap<&str, &str> = truth
        .role_assignments
        .iter()
        .filter(|a| {
            matches!(
                a.scope.as_ref().and_then(|s| s.kind.as_ref()),
                Some(pb::scope::Kind::Organization(true))
            )
        })
        .map(|a| (a.principal.as_str(), a.role.as_str()))
        .collect();
    for (user, (acked, unknown)) in &tally.roles {
        let Some(acked) = acked else { continue };
        let principal = identity_svc::domain::names::fmt::user(parent_org(parent)?, *user);
        let now = org_roles.get(principal.as_str()).copied();
        let fine = now == Some(acked.as_str()) || (unknown.is_some() && now == unknown.as_deref());
        if !fine {
            lost += 1;
        }
    }
    Ok(lost)
}

fn parent_org(parent: &str) -> anyhow::Result<uuid::Uuid> {
    Ok(parent
        .strip_prefix("organizations/")
        .ok_or_else(|| anyhow::anyhow!("bad parent {parent}"))?
        .parse()?)
}

/// A portal replica's sync reached `sequence`.
pub(crate) async fn portal_caught_up(
    portal: &Channel,
    operator: &str,
    infra: &str,
    sequence: i64,
) -> anyhow::Result<()> {
    let acting = PortalChild::acting(operator, None)?;
    let mut sync = portal::sync_client::SyncClient::with_interceptor(portal.clone(), acting);
    let deadline = Instant::now() + SETTLE;
    loop {
        let status = sync
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: infra.to_owned(),
            })
            .await;
        match status {
            Ok(s) if s.get_ref().cursor >= sequence => return Ok(()),
            Ok(s) => anyhow::ensure!(
                Instant::now() < deadline,
                "the portal's sync stayed at {} (last error {:?})",
                s.get_ref().cursor,
                s.get_ref().last_error
            ),
            Err(s) => anyhow::ensure!(Instant::now() < deadline, "GetSyncStatus: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The company's members as (email → status, company permission, ODC permissions), without
/// names, times and etags (which differ between two portal databases).
pub(crate) async fn records(
    portal: &Channel,
    service: &str,
    admin: &str,
    company: &str,
) -> anyhow::Result<BTreeMap<String, (i32, i32, Vec<i32>)>> {
    let acting: Acting = PortalChild::acting(service, Some(admin))?;
    let mut members =
        portal::team_members_client::TeamMembersClient::with_interceptor(portal.clone(), acting);
    let mut out = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = members
            .list_team_members(portal::ListTeamMembersRequest {
                parent: company.to_owned(),
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        for m in page.members {
            let mut odc: Vec<i32> = m
                .infrastructure_access
                .iter()
                .map(|a| a.permission)
                .collect();
            odc.sort_unstable();
            out.insert(m.email, (m.status, m.company_permission, odc));
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        page_token = page.next_page_token;
    }
}
