//! (a) and (b) of `identity`: Noop vs CheckPermission, throughput and latency at
//! `conns x streams` in flight and at 1 in flight, runs alternating A B A B.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use identity_svc::domain::names::fmt;
use identity_svc::domain::permissions::catalog;
use serde_json::{Value, json};
use shared::proto::identity::v1 as pb;

use crate::Cli;
use crate::dataset::{Dataset, STAGES};
use crate::identity_child::{Access, Server};
use crate::load::{Run, closed_loop};
use crate::report::{Output, extra, round};
use crate::rng::Rng;
use crate::stats::median;

/// CheckPermission requests: 20k distinct (principal, permission, stage, app) tuples over
/// the whole user population, stage when the permission needs one, an app a third of the time
/// when it is app-scopable.
pub(crate) fn check_requests(data: &Dataset, rng: &mut Rng) -> Vec<pb::CheckPermissionRequest> {
    let parent = data.parent();
    (0..20_000)
        .map(|_| {
            let def = &catalog::CATALOG[rng.below(catalog::CATALOG.len())];
            let stage = if def.stage_scopable {
                fmt::stage(data.org, STAGES[rng.below(3)])
            } else {
                String::new()
            };
            let app = if def.app_scopable && rng.chance(0.33) {
                fmt::app(data.org, data.apps[rng.below(data.apps.len())])
            } else {
                String::new()
            };
            pb::CheckPermissionRequest {
                parent: parent.clone(),
                principal: fmt::user(data.org, data.users[rng.below(data.users.len())]),
                permission: def.key.to_owned(),
                stage,
                app,
            }
        })
        .collect()
}

/// The CheckPermission answers of (a): (allowed, denied).
type Answers = Arc<(AtomicU64, AtomicU64)>;

/// (a) Noop vs CheckPermission at `conns × streams` in flight, interleaved A B A B.
pub(crate) async fn throughput(
    cli: &Cli,
    out: &Output,
    server: &Server,
    data: &Dataset,
    base: &Value,
) -> anyhow::Result<()> {
    let clients = server.access(data, cli.conns).await?;
    let mut rng = Rng(42);
    let requests = Arc::new(check_requests(data, &mut rng));
    let allowed = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let parent = data.parent();
    let in_flight = cli.conns * cli.streams;
    let mut ratios = Vec::new();
    let (mut noops, mut checks) = (Vec::new(), Vec::new());
    for pair in 0..cli.pairs {
        let (noop, check) = pair_runs(cli, server, &clients, &parent, &requests, &allowed).await;
        out.check(
            noop.errors == 0 && check.errors == 0,
            format!(
                "pair {pair}: RPC errors (noop {}, check {})",
                noop.errors, check.errors
            ),
        );
        out.check(
            noop.calls > 0 && check.calls > 0,
            format!("pair {pair}: no calls completed"),
        );
        let ratio = check.rps() / noop.rps().max(1e-9);
        for (name, r) in [("noop", &noop), ("check", &check)] {
            out.figure(
                &format!("{name}_rps"),
                r.rps(),
                "req/s",
                &extra(
                    base,
                    &json!({
                        "pair": pair, "in_flight": in_flight,
                        "p50_us": round(r.p(0.5)), "p99_us": round(r.p(0.99)),
                        "server_cpu_us_per_call": round(r.cpu_us_per_call()),
                        "client_cpu_us_per_call": round(r.client_cpu_us_per_call()),
                    }),
                ),
            );
        }
        eprintln!(
            "bench: pair {pair}: noop {:.0}/s (p99 {:.0} µs), check {:.0}/s (p99 {:.0} µs), ratio {ratio:.3}",
            noop.rps(),
            noop.p(0.99),
            check.rps(),
            check.p(0.99)
        );
        ratios.push(ratio);
        noops.push(noop);
        checks.push(check);
    }
    summary(cli, out, base, ratios, &noops, &checks, &allowed);
    Ok(())
}

/// One pair of (a): a Noop run, then a CheckPermission run counting the answers.
async fn pair_runs(
    cli: &Cli,
    server: &Server,
    clients: &[Access],
    parent: &str,
    requests: &Arc<Vec<pb::CheckPermissionRequest>>,
    allowed: &Answers,
) -> (Run, Run) {
    let p = parent.to_owned();
    let noop = closed_loop(
        server,
        clients,
        cli.streams,
        cli.warmup(),
        cli.secs(),
        move |mut c, _| {
            let req = pb::NoopRequest { parent: p.clone() };
            async move { c.noop(req).await.map(|_| ()) }
        },
    )
    .await;
    let (reqs, allowed2) = (requests.clone(), allowed.clone());
    let check = closed_loop(
        server,
        clients,
        cli.streams,
        cli.warmup(),
        cli.secs(),
        move |mut c, i| {
            let req = reqs[i % reqs.len()].clone();
            let allowed = allowed2.clone();
            async move {
                let r = c.check_permission(req).await?.into_inner();
                if r.allowed {
                    allowed.0.fetch_add(1, Ordering::Relaxed);
                } else {
                    allowed.1.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        },
    )
    .await;
    (noop, check)
}

/// The target of (a), the medians over the pairs, and the allowed fraction of the checks.
fn summary(
    cli: &Cli,
    out: &Output,
    base: &Value,
    mut ratios: Vec<f64>,
    noops: &[Run],
    checks: &[Run],
    allowed: &Answers,
) {
    let in_flight = cli.conns * cli.streams;
    let spread = {
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let m = median(&mut ratios.clone());
        (hi - lo) / m.max(1e-9)
    };
    let ratio = median(&mut ratios);
    out.target(
        "check_vs_noop_throughput_ratio",
        ratio,
        "ratio",
        ">= 0.80",
        ratio >= 0.80,
        &extra(base, &json!({
            "in_flight": in_flight, "pairs": cli.pairs, "pair_spread": round(spread),
            "valid": spread <= 0.15,
            "noop_rps_median": round(median(&mut noops.iter().map(Run::rps).collect::<Vec<_>>())),
            "check_rps_median": round(median(&mut checks.iter().map(Run::rps).collect::<Vec<_>>())),
            "noop_p50_us": round(median(&mut noops.iter().map(|r| r.p(0.5)).collect::<Vec<_>>())),
            "noop_p99_us": round(median(&mut noops.iter().map(|r| r.p(0.99)).collect::<Vec<_>>())),
            "check_p50_us": round(median(&mut checks.iter().map(|r| r.p(0.5)).collect::<Vec<_>>())),
            "check_p99_us": round(median(&mut checks.iter().map(|r| r.p(0.99)).collect::<Vec<_>>())),
            "noop_server_cpu_us_per_call": round(median(&mut noops.iter().map(Run::cpu_us_per_call).collect::<Vec<_>>())),
            "check_server_cpu_us_per_call": round(median(&mut checks.iter().map(Run::cpu_us_per_call).collect::<Vec<_>>())),
            "noop_client_cpu_us_per_call": round(median(&mut noops.iter().map(Run::client_cpu_us_per_call).collect::<Vec<_>>())),
            "check_client_cpu_us_per_call": round(median(&mut checks.iter().map(Run::client_cpu_us_per_call).collect::<Vec<_>>())),
        })),
    );
    let (yes, no) = (
        allowed.0.load(Ordering::Relaxed),
        allowed.1.load(Ordering::Relaxed),
    );
    out.figure(
        "check_allowed_fraction",
        yes as f64 / (yes + no).max(1) as f64,
        "ratio",
        &extra(base, &json!({ "allowed": yes, "denied": no })),
    );
    out.check(
        yes > 0 && no > 0,
        format!("checks should be both allowed and denied ({yes}/{no})"),
    );
}

/// (b) p99 at 1 request in flight: Noop and CheckPermission, A B A B.
pub(crate) async fn one_in_flight(
    cli: &Cli,
    out: &Output,
    server: &Server,
    data: &Dataset,
    base: &Value,
) -> anyhow::Result<()> {
    let clients = server.access(data, 1).await?;
    let mut rng = Rng(7);
    let requests = Arc::new(check_requests(data, &mut rng));
    let parent = data.parent();
    let (mut diffs, mut noop_p99, mut check_p99, mut noop_p50, mut check_p50) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cli.pairs {
        let p = parent.clone();
        let noop = closed_loop(
            server,
            &clients,
            1,
            cli.warmup(),
            cli.secs(),
            move |mut c, _| {
                let req = pb::NoopRequest { parent: p.clone() };
                async move { c.noop(req).await.map(|_| ()) }
            },
        )
        .await;
        let reqs = requests.clone();
        let check = closed_loop(
            server,
            &clients,
            1,
            cli.warmup(),
            cli.secs(),
            move |mut c, i| {
                let req = reqs[i % reqs.len()].clone();
                async move { c.check_permission(req).await.map(|_| ()) }
            },
        )
        .await;
        out.check(
            noop.errors == 0 && check.errors == 0,
            "1-in-flight: RPC errors",
        );
        diffs.push(check.p(0.99) - noop.p(0.99));
        noop_p99.push(noop.p(0.99));
        check_p99.push(check.p(0.99));
        noop_p50.push(noop.p(0.5));
        check_p50.push(check.p(0.5));
    }
    let diff = median(&mut diffs);
    out.target(
        "check_minus_noop_p99_1_in_flight_us",
        diff,
        "us",
        "<= 100",
        diff <= 100.0,
        &extra(base, &json!({
            "noop_p50_us": round(median(&mut noop_p50)), "noop_p99_us": round(median(&mut noop_p99)),
            "check_p50_us": round(median(&mut check_p50)), "check_p99_us": round(median(&mut check_p99)),
            "pairs": cli.pairs,
        })),
    );
    Ok(())
}
