//! The `identity` suite: startup, RSS, the token lookup the cache replaced, Noop vs
//! CheckPermission, ListPermissionHolders, then the durable writes and the crash check.

use std::time::{Duration, Instant};

use identity_svc::domain::names::fmt;
use serde_json::{Value, json};
use shared::proto::identity::v1 as pb;
use shared::secrets::hash_token;

use crate::Cli;
use crate::backend::Backend;
use crate::dataset::{Dataset, seeded};
use crate::durable::{crash_check, durable};
use crate::identity_child::{Access, Server};
use crate::noop_vs_check::{one_in_flight, throughput};
use crate::report::{Output, extra, round};
use crate::stats::quantile_us;

pub(crate) async fn suite(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    let n = cli.users;
    let (backend, data) = seeded(cli, out, n).await?;
    let server = Server::spawn(&backend, &data).await?;
    let base = json!({ "users": n, "backend": backend.name() });
    out.figure("identity_startup_seconds", server.startup_secs, "s", &base);
    // Let the allocator settle, then read the memory of the loaded server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss, hwm) = server.rss_mb();
    out.target(
        "identity_rss_mb",
        rss,
        "MB",
        "<= 150 at 100k users",
        n < 100_000 || rss <= 150.0,
        &json!({ "users": n, "backend": backend.name(), "phase": "loaded", "vm_hwm_mb": hwm }),
    );
    out.check(rss > 0.0, "identity RSS could not be read");

    token_lookup(cli, out, &backend, &data, &base).await?;
    throughput(cli, out, &server, &data, &base).await?;
    one_in_flight(cli, out, &server, &data, &base).await?;
    holders(cli, out, &server, &data, &base).await?;

    let (rss, hwm) = server.rss_mb();
    out.figure(
        "identity_rss_mb",
        rss,
        "MB",
        &json!({ "users": n, "backend": backend.name(), "phase": "after_reads", "vm_hwm_mb": hwm }),
    );

    let seq = durable(cli, out, &backend, &server, &data, &base).await?;
    let (rss, hwm) = server.rss_mb();
    out.figure(
        "identity_rss_mb",
        rss,
        "MB",
        &json!({ "users": n, "backend": backend.name(), "phase": "after_writes", "vm_hwm_mb": hwm }),
    );
    crash_check(out, &backend, server, &data, seq, &base).await
}

/// What authenticating a request cost before the token cache: one `Store::find_token` on the
/// same database, sequential (the server now answers it from memory).
async fn token_lookup(
    cli: &Cli,
    out: &Output,
    backend: &Backend,
    data: &Dataset,
    base: &Value,
) -> anyhow::Result<()> {
    let store = backend.identity_store().await?;
    let hash = hash_token(&data.token);
    let mut lat = Vec::new();
    let t = Instant::now();
    while t.elapsed() < cli.secs().min(Duration::from_secs(2)) || lat.len() < 100 {
        let t0 = Instant::now();
        let found = store.find_token(&hash).await?;
        lat.push(t0.elapsed().as_nanos() as u64);
        out.check(found.is_some(), "the seeded token is not in the store");
        if found.is_none() {
            break;
        }
    }
    lat.sort_unstable();
    out.figure(
        "store_token_lookup_us",
        quantile_us(&lat, 0.5),
        "us",
        &extra(base, &json!({ "p99_us": round(quantile_us(&lat, 0.99)), "calls": lat.len(), "what": "Store::find_token, which every authenticated request ran before the token cache" })),
    );
    Ok(())
}

/// (c) ListPermissionHolders, first page of 100, one request in flight, per permission shape.
pub(crate) async fn holders(
    cli: &Cli,
    out: &Output,
    server: &Server,
    data: &Dataset,
    base: &Value,
) -> anyhow::Result<()> {
    let mut client = server.access(data, 1).await?.remove(0);
    let org = data.org;
    let app = fmt::app(org, data.apps[0]);
    // (label, permission, stage, app): dense (most users), medium, and sparse (only the 1 % of
    // administrators: the page needs about 10k principals examined at 100k users).
    let cases = [
        ("dense", "asset.open", "production", ""),
        ("medium", "support.view_all_cases", "", ""),
        ("app_scope", "config.edit_asset", "production", app.as_str()),
        ("sparse", "org.manage", "", ""),
    ];
    let mut all = Vec::new();
    let per_case = cli.secs().max(Duration::from_millis(200));
    for (label, permission, stage, app) in cases {
        let req = pb::ListPermissionHoldersRequest {
            parent: data.parent(),
            permission: permission.into(),
            stage: if stage.is_empty() {
                String::new()
            } else {
                fmt::stage(org, stage)
            },
            app: app.into(),
            page_size: 100,
            page_token: String::new(),
        };
        let lat = holders_case(&mut client, out, base, (label, permission), &req, per_case).await?;
        all.extend(lat);
    }
    all.sort_unstable();
    let p99 = quantile_us(&all, 0.99) / 1000.0;
    let worst = p99;
    out.target(
        "holders_first_page_p99_ms",
        worst,
        "ms",
        "<= 5 at 100k users",
        worst <= 5.0 || cli.users < 100_000,
        &extra(base, &json!({ "case": "all", "calls": all.len(), "p50_ms": round(quantile_us(&all, 0.5) / 1000.0) })),
    );
    Ok(())
}

/// One case of (c): a warm-up call that checks the first page, then calls for `per_case` (at
/// least 20, at most 5000); reports its p99 and returns the latencies.
async fn holders_case(
    client: &mut Access,
    out: &Output,
    base: &Value,
    (label, permission): (&str, &str),
    req: &pb::ListPermissionHoldersRequest,
    per_case: Duration,
) -> anyhow::Result<Vec<u64>> {
    // Warm-up call, which also checks the answer.
    let first = client
        .list_permission_holders(req.clone())
        .await?
        .into_inner();
    // Only the sparse case may have fewer than a page (1 % of 1k users are administrators).
    let n = first.holders.len();
    out.check(
        n == 100 || (label == "sparse" && n > 0),
        format!("holders {label}: {} on the first page", first.holders.len()),
    );
    let mut lat = Vec::new();
    let t = Instant::now();
    while t.elapsed() < per_case || lat.len() < 20 {
        let t0 = Instant::now();
        client.list_permission_holders(req.clone()).await?;
        lat.push(t0.elapsed().as_nanos() as u64);
        if lat.len() >= 5000 {
            break;
        }
    }
    lat.sort_unstable();
    out.figure(
        "holders_first_page_p99_ms",
        quantile_us(&lat, 0.99) / 1000.0,
        "ms",
        &extra(
            base,
            &json!({
                "case": label, "permission": permission, "calls": lat.len(),
                "p50_ms": round(quantile_us(&lat, 0.5) / 1000.0),
            }),
        ),
    );
    Ok(lat)
}
