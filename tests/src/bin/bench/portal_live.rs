//! Propagation identity → portal through both real servers, each a child process: the
//! identity server on the seeded dataset and portal-sync following it with an ODC
//! infrastructure set up as an operator would (README, "Use the portal with grpcurl").
//!
//! * Propagation: one AssignRole at a time that changes one user's portal record (a role
//!   mapped to infrastructure member replaced by one mapped to infrastructure admin); from
//!   the RPC's acknowledgment until the record's change is visible through the portal API.
//!   The portal has no change stream: the bench polls `Sync/ListPortalEvents` after the
//!   last event it saw, without pausing, until the sync's `odc_access.changed` event for
//!   that user appears. The event is written in the same transaction as the record, so it
//!   is visible exactly when the record is; a sample of records is then read back with
//!   `TeamMembers/GetTeamMember`.
//! * Role edit: a custom role held at organization scope by 10k users (a tenth of the users
//!   when fewer) gains `support.view_all_cases`, which makes each holder's record go from
//!   infrastructure member to infrastructure admin; from UpdateRole's acknowledgment until
//!   `Sync/GetSyncStatus` reports a cursor at or past the edit's consistency token. Then
//!   every holder's `odc_access.changed` event is counted and a sample of records read.

mod identity_side;
mod portal_side;
mod propagation;
mod role_edit;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::proto::portal::v1 as portal;
use shared::secrets::{TokenEncoding, new_token};

use crate::Cli;
use crate::backend::Backend;
use crate::dataset::{Dataset, seeded};
use crate::durable::consistency_seq;
use crate::identity_child::Server;
use crate::portal_child::PortalChild;
use crate::report::{Output, extra};
use identity_side::Identity;
use portal_side::Portal;
use propagation::propagation;
use role_edit::role_edit;

/// The company admin the portal calls act for.
const COMPANY_ADMIN: &str = "carla@bench.example";
/// Longest wait for one propagation.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(10);
/// Longest wait for the sync to catch up after a setup step (100k-user snapshot included).
const CATCH_UP_DEADLINE: Duration = Duration::from_mins(10);
/// Records read back with GetTeamMember after each measurement.
const SAMPLE: usize = 10;
/// AssignRole calls in flight while setting up.
const SETUP_IN_FLIGHT: usize = 16;

pub(crate) async fn suite(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    let n = cli.users;
    let (identity_backend, data) = seeded(cli, out, n).await?;
    let identity_server = Server::spawn(&identity_backend, &data).await?;
    let backend = Backend::new(cli.pg.as_deref(), "portal_sync").await?;
    let operator = new_token("bench_portal_op_", TokenEncoding::Base64Url);
    let service = new_token("bench_portal_svc_", TokenEncoding::Base64Url);
    let portal_child =
        PortalChild::spawn(&backend, &identity_server.addr, &operator, &service).await?;
    let base = json!({ "users": n, "backend": backend.name() });
    let identity = Identity::connect(&identity_server, &data).await?;

    let p = initial_sync(
        out,
        &base,
        &identity,
        &data,
        &portal_child,
        (&operator, &service),
    )
    .await?;

    let propagations = if cli.smoke { 50 } else { 200 };
    let holders = (n / 10).min(10_000);
    let users = identity
        .active_non_admins(&data, propagations + holders)
        .await?;
    anyhow::ensure!(
        users.len() == propagations + holders,
        "only {} active non-administrator users",
        users.len()
    );
    let (one_by_one, many) = users.split_at(propagations);
    propagation(out, &identity, &p, one_by_one, &base).await?;
    role_edit(out, &identity, &p, many, &base).await?;
    drop(portal_child);
    Ok(())
}

/// The set-up as in README (the reader token, a company, the ODC infrastructure), and the
/// initial sync it starts, measured.
async fn initial_sync(
    out: &Output,
    base: &Value,
    identity: &Identity,
    data: &Dataset,
    portal_child: &PortalChild,
    (operator, service): (&str, &str),
) -> anyhow::Result<Portal> {
    let sync_token = identity.portal_reader_token().await?;
    let companies = portal_child.companies(operator, None).await?;
    let company = companies
        .clone()
        .create_company(portal::CreateCompanyRequest {
            company: Some(portal::Company {
                display_name: "Bench".into(),
                ..Default::default()
            }),
            first_admin_email: COMPANY_ADMIN.into(),
            first_admin_display_name: "Carla".into(),
        })
        .await?
        .into_inner()
        .name;
    let seq = consistency_seq(identity.access.clone(), data).await?;
    let t = Instant::now();
    let infra = companies
        .clone()
        .create_infrastructure(portal::CreateInfrastructureRequest {
            parent: company.clone(),
            infrastructure: Some(portal::Infrastructure {
                display_name: "ODC".into(),
                kind: portal::InfrastructureKind::Odc.into(),
                identity_organization: identity.parent.clone(),
                ..Default::default()
            }),
            identity_token: sync_token,
        })
        .await?
        .into_inner()
        .name;
    let p = Portal {
        sync: portal_child.sync(operator).await?,
        members: portal_child.members(service, COMPANY_ADMIN).await?,
        company,
        infra,
    };
    let done = p.wait_cursor(seq, CATCH_UP_DEADLINE).await?;
    let (events, _) = p.all_events_after(0).await?;
    let granted = events
        .iter()
        .filter(|e| e.action == "odc_access.granted")
        .count();
    out.figure(
        "portal_initial_sync_seconds",
        (done - t).as_secs_f64(),
        "s",
        &extra(
            base,
            &json!({
                "what": "CreateInfrastructure acknowledged → GetSyncStatus cursor at identity's sequence (snapshot over gRPC, derivation, one apply)",
                "records": granted,
            }),
        ),
    );
    out.check(granted > 0, "the initial sync created no record");
    Ok(p)
}
