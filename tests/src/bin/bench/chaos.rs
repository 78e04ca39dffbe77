//! `bench chaos --minutes N`: two identity replicas and two portal-sync replicas (child
//! processes of this binary) on one database, under a mixed load (`chaos/load.rs`), while a
//! fault schedule kills each process with SIGKILL in turn (it comes back on its port after
//! `--chaos-down-secs`) and, on PostgreSQL, stops and starts the database. Then the load stops
//! and `chaos/verify.rs` checks: zero acknowledged writes lost, the feed gap-free and equal to
//! the audit trail, every identity replica equal to a fresh load, the portal records equal to a
//! fresh derivation, no INTERNAL and every error a client saw retryable.
//!
//! On PostgreSQL the suite runs a cluster of its own (`initdb` in a temporary directory, on a
//! free port) so that it can stop it: `--pg` only selects the backend. On SQLite both replicas
//! of a service share the database file and there is no database fault.

mod load;
mod procs;
mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::proto::identity::v1 as pb;
use shared::proto::portal::v1 as portal;
use shared::secrets::{TokenEncoding, new_token};
use shared::testkit::pg_cluster::{ClusterOptions, PgCluster};
use tonic::transport::Channel;

use crate::Cli;
use crate::backend::Backend;
use crate::dataset::{Dataset, seed};
use crate::identity_child::{Bearer, CHILD_MODE};
use crate::portal_child::{
    PORTAL_CHILD_MODE, PORTAL_OPERATOR_ENV, PORTAL_REPLICA_ENV, PORTAL_SERVICE_ENV, PortalChild,
};
use crate::report::Output;
use load::{Load, Tally};
use procs::{Proc, addr_file};

/// Users seeded into the organization the load works on.
const USERS: usize = 1000;
/// Role-changing tasks (20 users each).
const WRITERS: usize = 4;
/// The person the portal calls act for (the company's first admin).
const COMPANY_ADMIN: &str = "carla@chaos.example";

/// Where the suite's processes keep their data, and the database they share.
struct Stores {
    cluster: Option<PgCluster>,
    identity: Backend,
    portal: Backend,
}

impl Stores {
    async fn new(pg: bool) -> anyhow::Result<Self> {
        let cluster = if pg {
            let started =
                tokio::task::spawn_blocking(|| PgCluster::start(&ClusterOptions::default()));
            Some(started.await?.map_err(|e| anyhow::anyhow!(e))?)
        } else {
            None
        };
        let admin = cluster.as_ref().map(|c| c.url("127.0.0.1", "postgres", ""));
        Ok(Self {
            identity: Backend::new(admin.as_deref(), "chaos_identity").await?,
            portal: Backend::new(admin.as_deref(), "chaos_portal").await?,
            cluster,
        })
    }

    fn database(backend: &Backend) -> String {
        backend
            .pg
            .as_ref()
            .map_or("-".to_owned(), |p| p.url().to_owned())
    }

    /// Stops the database (a crash: `-m immediate`), waits `down`, starts it again.
    async fn restart_database(&mut self, down: Duration) -> anyhow::Result<bool> {
        let Some(mut cluster) = self.cluster.take() else {
            return Ok(false);
        };
        cluster = tokio::task::spawn_blocking(move || {
            cluster.stop();
            cluster
        })
        .await?;
        tokio::time::sleep(down).await;
        let cluster = tokio::task::spawn_blocking(move || cluster.restart().map(|()| cluster));
        self.cluster = Some(cluster.await?.map_err(|e| anyhow::anyhow!(e))?);
        Ok(true)
    }
}

/// The tokens of the run.
struct Tokens {
    identity_operator: String,
    portal_operator: String,
    portal_service: String,
}

fn identity_proc(label: &'static str, stores: &Stores, t: &Tokens) -> anyhow::Result<Proc> {
    let dir = stores.identity.dir.path();
    Proc::new(
        label,
        vec![
            CHILD_MODE.into(),
            dir.display().to_string(),
            Stores::database(&stores.identity),
            addr_file(dir, label).display().to_string(),
        ],
        vec![(
            "IDENTITY_OPERATOR_TOKEN".into(),
            t.identity_operator.clone(),
        )],
    )
}

fn portal_proc(
    label: &'static str,
    backend: &Backend,
    identity: &Proc,
    t: &Tokens,
) -> anyhow::Result<Proc> {
    let dir = backend.dir.path();
    Proc::new(
        label,
        vec![
            PORTAL_CHILD_MODE.into(),
            dir.display().to_string(),
            Stores::database(backend),
            addr_file(dir, label).display().to_string(),
            format!("http://{}", identity.addr()),
        ],
        vec![
            (PORTAL_OPERATOR_ENV.into(), t.portal_operator.clone()),
            (PORTAL_SERVICE_ENV.into(), t.portal_service.clone()),
            // Its label, kept across restarts: a restarted replica takes the leases held in its
            // name back at once, each with a new fencing token.
            (PORTAL_REPLICA_ENV.into(), label.into()),
        ],
    )
}

pub(crate) async fn suite(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    let mut stores = Stores::new(cli.pg.is_some()).await?;
    let base = json!({ "backend": stores.identity.name(), "minutes": cli.minutes });
    let data = seed(&stores.identity, USERS).await?;
    let tokens = Tokens {
        identity_operator: new_token("chaos_op_", TokenEncoding::Base64Url),
        portal_operator: new_token("chaos_portal_op_", TokenEncoding::Base64Url),
        portal_service: new_token("chaos_portal_svc_", TokenEncoding::Base64Url),
    };
    let mut procs = vec![
        identity_proc("identity-a", &stores, &tokens)?,
        identity_proc("identity-b", &stores, &tokens)?,
    ];
    let p1 = portal_proc("portal-1", &stores.portal, &procs[0], &tokens)?;
    let p2 = portal_proc("portal-2", &stores.portal, &procs[1], &tokens)?;
    procs.extend([p1, p2]);
    for p in &mut procs {
        p.start().await?;
    }
    let bearer = Bearer(format!("Bearer {}", data.token).parse()?);
    let identity = vec![procs[0].channel()?, procs[1].channel()?];
    let setup = set_up(&identity[0], &bearer, &data, &procs[2].channel()?, &tokens).await?;
    let load = Load {
        identity: identity.clone(),
        portal: vec![
            (procs[2].channel()?, setup.infra.clone()),
            (procs[3].channel()?, setup.infra.clone()),
        ],
        bearer: bearer.clone(),
        portal_operator: tokens.portal_operator.clone(),
        parent: data.parent(),
        org: data.org,
        mutation_roles: [
            identity_svc::domain::names::fmt::role(data.org, &data.mutation_roles[0]),
            identity_svc::domain::names::fmt::role(data.org, &data.mutation_roles[1]),
        ],
        login: setup.login.clone(),
        tally: Arc::new(Mutex::new(Tally::default())),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let started = Instant::now();
    let mut tasks = load.spawn(&data, WRITERS);
    let faults = run_faults(cli, &mut procs, &mut stores).await?;
    load.stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let secs = started.elapsed().as_secs_f64();
    let tally = std::mem::take(
        &mut *load
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let ended = check(
        out, &base, &stores, &procs, &tokens, &bearer, &data, &setup, &tally,
    )
    .await?;
    report(out, &base, secs, &faults, &tally, ended);
    Ok(())
}

/// What the set-up made: the portal's company and ODC infrastructure, the reader token, and a
/// person who logs in.
struct Setup {
    company: String,
    infra: String,
    reader_token: String,
    login: (String, String),
}

async fn set_up(
    identity: &Channel,
    bearer: &Bearer,
    data: &Dataset,
    portal_channel: &Channel,
    tokens: &Tokens,
) -> anyhow::Result<Setup> {
    let parent = data.parent();
    let mut users =
        pb::users_client::UsersClient::with_interceptor(identity.clone(), bearer.clone());
    let login = (
        "login@chaos.example".to_owned(),
        "Chaos-Login-42".to_owned(),
    );
    users
        .create_user(pb::CreateUserRequest {
            parent: parent.clone(),
            user: Some(pb::User {
                email: login.0.clone(),
                display_name: "Login".into(),
                ..Default::default()
            }),
            active: Some(true),
            initial_password: login.1.clone(),
            request_id: String::new(),
        })
        .await?;
    let reader_token = reader_token(identity, bearer, &parent).await?;
    let acting = PortalChild::acting(&tokens.portal_operator, None)?;
    let mut companies =
        portal::companies_client::CompaniesClient::with_interceptor(portal_channel.clone(), acting);
    let (company, infra) =
        company_and_infrastructure(&mut companies, &parent, &reader_token).await?;
    Ok(Setup {
        company,
        infra,
        reader_token,
        login,
    })
}

/// A company whose first admin is [`COMPANY_ADMIN`] and its ODC infrastructure following the
/// organization with `reader_token`.
async fn company_and_infrastructure(
    companies: &mut portal::companies_client::CompaniesClient<
        tonic::service::interceptor::InterceptedService<Channel, crate::portal_child::Acting>,
    >,
    parent: &str,
    reader_token: &str,
) -> anyhow::Result<(String, String)> {
    let company = companies
        .create_company(portal::CreateCompanyRequest {
            company: Some(portal::Company {
                display_name: "Chaos".into(),
                ..Default::default()
            }),
            first_admin_email: COMPANY_ADMIN.into(),
            first_admin_display_name: "Carla".into(),
        })
        .await?
        .into_inner()
        .name;
    let infra = companies
        .create_infrastructure(portal::CreateInfrastructureRequest {
            parent: company.clone(),
            infrastructure: Some(portal::Infrastructure {
                display_name: "ODC".into(),
                kind: portal::InfrastructureKind::Odc.into(),
                identity_organization: parent.to_owned(),
                ..Default::default()
            }),
            identity_token: reader_token.to_owned(),
        })
        .await?
        .into_inner()
        .name;
    Ok((company, infra))
}

/// README's reader for portal-sync: a role with `org.view_audit_trail`, a service account
/// holding it at organization scope, and a token of that account.
async fn reader_token(identity: &Channel, bearer: &Bearer, parent: &str) -> anyhow::Result<String> {
    let mut roles =
        pb::roles_client::RolesClient::with_interceptor(identity.clone(), bearer.clone());
    let mut access =
        pb::access_client::AccessClient::with_interceptor(identity.clone(), bearer.clone());
    let mut accounts = pb::service_accounts_client::ServiceAccountsClient::with_interceptor(
        identity.clone(),
        bearer.clone(),
    );
    let role = roles
        .create_role(pb::CreateRoleRequest {
            parent: parent.to_owned(),
            role: Some(pb::Role {
                display_name: "Portal sync".into(),
                grants: vec![pb::PermissionGrant {
                    permission: "org.view_audit_trail".into(),
                    stages: Vec::new(),
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .name;
    let account = accounts
        .create_service_account(pb::CreateServiceAccountRequest {
            parent: parent.to_owned(),
            service_account: Some(pb::ServiceAccount {
                display_name: "portal-sync".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .name;
    access
        .assign_role(pb::AssignRoleRequest {
            parent: parent.to_owned(),
            principal: account.clone(),
            role,
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::Organization(true)),
            }),
            grant_period: None,
        })
        .await?;
    Ok(accounts
        .create_service_account_token(pb::CreateServiceAccountTokenRequest {
            parent: account,
            ttl_seconds: 0,
        })
        .await?
        .into_inner()
        .secret)
}

/// The faults injected, by target.
type Faults = std::collections::BTreeMap<&'static str, u32>;

/// Every `--chaos-fault-secs`, the next fault in turn: SIGKILL of identity-a, portal-1,
/// identity-b, portal-2 (each back after `--chaos-down-secs`), then the database (PostgreSQL).
async fn run_faults(cli: &Cli, procs: &mut [Proc], stores: &mut Stores) -> anyhow::Result<Faults> {
    let end = Instant::now() + Duration::from_secs_f64(cli.minutes * 60.0);
    let every = Duration::from_secs_f64(cli.chaos_fault_secs);
    let down = Duration::from_secs_f64(cli.chaos_down_secs);
    let mut faults = Faults::new();
    let mut turn = 0usize;
    loop {
        let next = Instant::now() + every;
        if next + down > end {
            tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
            return Ok(faults);
        }
        tokio::time::sleep_until(next.into()).await;
        let slot = turn % (procs.len() + 1);
        turn += 1;
        if let Some(p) = procs.get_mut(slot) {
            eprintln!("bench: chaos: SIGKILL {}", p.label);
            p.kill();
            tokio::time::sleep(down).await;
            p.start().await?;
            *faults.entry(p.label).or_default() += 1;
        } else if stores.restart_database(down).await? {
            eprintln!("bench: chaos: database stopped and started");
            *faults.entry("database").or_default() += 1;
        }
    }
}

/// The end checks (`verify.rs`) with a fresh identity replica and a fresh portal-sync on a
/// database of its own; returns the acknowledged writes lost.
#[allow(clippy::too_many_arguments)]
async fn check(
    out: &Output,
    base: &Value,
    stores: &Stores,
    procs: &[Proc],
    tokens: &Tokens,
    bearer: &Bearer,
    data: &Dataset,
    setup: &Setup,
    tally: &Tally,
) -> anyhow::Result<u64> {
    let parent = data.parent();
    let identity = [procs[0].channel()?, procs[1].channel()?];
    verify::retry_failed_creations(&identity[0], bearer, &parent, tally).await?;
    let mut fresh = identity_proc("identity-fresh", stores, tokens)?;
    fresh.start().await?;
    // The audit trail is gap-free and the feed equals it.
    let trail =
        tests::feed_checks::trail_equal_to_feed(&fresh.channel()?, &data.token, &parent).await?;
    let sequence = trail.last().map_or(0, |e| e.sequence);
    let lost = verify::replicas_equal_fresh(
        &identity,
        &fresh.channel()?,
        bearer,
        &parent,
        sequence,
        tally,
    )
    .await?;
    // The sync of one of the two portal replicas (the one holding the infrastructure) is there.
    verify::portal_caught_up(
        &procs[2].channel()?,
        &tokens.portal_operator,
        &setup.infra,
        sequence,
    )
    .await?;
    let fresh_portal_store = Backend::new(
        stores
            .cluster
            .as_ref()
            .map(|c| c.url("127.0.0.1", "postgres", ""))
            .as_deref(),
        "chaos_portal_fresh",
    )
    .await?;
    let mut fresh_portal = portal_proc("portal-fresh", &fresh_portal_store, &fresh, tokens)?;
    fresh_portal.start().await?;
    let acting = PortalChild::acting(&tokens.portal_operator, None)?;
    let mut companies = portal::companies_client::CompaniesClient::with_interceptor(
        fresh_portal.channel()?,
        acting,
    );
    let (company, infra) =
        company_and_infrastructure(&mut companies, &parent, &setup.reader_token).await?;
    verify::portal_caught_up(
        &fresh_portal.channel()?,
        &tokens.portal_operator,
        &infra,
        sequence,
    )
    .await?;
    let service = &tokens.portal_service;
    for (i, p) in procs[2..].iter().enumerate() {
        let kept = verify::records(&p.channel()?, service, COMPANY_ADMIN, &setup.company).await?;
        let derived =
            verify::records(&fresh_portal.channel()?, service, COMPANY_ADMIN, &company).await?;
        out.check(
            kept == derived,
            format!("portal replica {i}'s records differ from a fresh derivation"),
        );
    }
    out.figure("chaos_final_sequence", sequence as f64, "events", base);
    Ok(lost)
}

fn report(out: &Output, base: &Value, secs: f64, faults: &Faults, tally: &Tally, lost: u64) {
    let with = |extra: Value| {
        let mut v = base.clone();
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    out.figure("chaos_duration_seconds", secs, "s", base);
    let calls: u64 = tally.ok.values().sum();
    out.figure(
        "chaos_operations",
        calls as f64,
        "calls",
        &with(json!({ "by_kind": tally.ok })),
    );
    let injected: u32 = faults.values().sum();
    out.figure(
        "chaos_faults_injected",
        f64::from(injected),
        "faults",
        &with(json!({ "by_target": faults })),
    );
    out.figure(
        "chaos_acknowledged_writes",
        tally.acknowledged_writes() as f64,
        "writes",
        base,
    );
    out.figure("chaos_lost_writes", lost as f64, "writes", base);
    let errors: std::collections::BTreeMap<String, u64> = tally
        .errors
        .iter()
        .map(|((kind, code), n)| (format!("{kind} {code}"), *n))
        .collect();
    let total: u64 = errors.values().sum();
    out.figure(
        "chaos_errors",
        total as f64,
        "calls",
        &with(json!({ "by_kind_and_code": errors })),
    );
    out.figure("chaos_watched_events", tally.watched as f64, "events", base);
    out.check(lost == 0, format!("{lost} acknowledged writes lost"));
    out.check(
        tally.not_retryable.is_empty(),
        format!(
            "errors a client may not retry: {:?}",
            tally.not_retryable.iter().take(5).collect::<Vec<_>>()
        ),
    );
    out.check(
        tally.watch_gaps.is_empty(),
        format!("gaps in the feed: {:?}", tally.watch_gaps),
    );
    out.check(injected > 0, "no fault was injected");
}
