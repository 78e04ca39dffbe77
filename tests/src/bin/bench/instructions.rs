//! The `instructions` suite: instructions per Noop and per CheckPermission, server side,
//! counted by callgrind (valgrind).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::proto::identity::v1 as pb;

use crate::Cli;
use crate::dataset::seeded;
use crate::identity_child::Server;
use crate::noop_vs_check::check_requests;
use crate::report::{Output, backend_name, extra, round};
use crate::rng::Rng;

/// Instructions per RPC, server side, counted by callgrind: the server runs under
/// `valgrind --tool=callgrind`; after a warm-up the counters are zeroed, `--ir-calls` sequential
/// Noops run and the counters are dumped, then as many CheckPermissions and a second dump.
/// Deterministic (no wall clock), so comparable across data sizes and machines.
pub(crate) async fn suite(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    let mut per_size = Vec::new();
    for &n in &cli.ir_sizes {
        let (backend, data) = seeded(cli, out, n).await?;
        let cg_out = backend.dir.path().join("callgrind.out");
        let wrapper = vec![
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            "-q".to_owned(),
            format!("--callgrind-out-file={}", cg_out.display()),
        ];
        let server = Server::spawn_with(&backend, &data, &wrapper).await?;
        let base = json!({ "users": n, "backend": backend.name(), "calls": cli.ir_calls });
        out.figure(
            "identity_startup_seconds_under_callgrind",
            server.startup_secs,
            "s",
            &base,
        );
        let mut c = server.access(&data, 1).await?.remove(0);
        let mut rng = Rng(11);
        let requests = check_requests(&data, &mut rng);
        let noop = pb::NoopRequest {
            parent: data.parent(),
        };
        // Warm-up: connections, the token cache, lazily built tables.
        for r in requests.iter().take(200) {
            c.noop(noop.clone()).await?;
            c.check_permission(r.clone()).await?;
        }
        callgrind_control(&["-z"], server.pid())?;
        for _ in 0..cli.ir_calls {
            c.noop(noop.clone()).await?;
        }
        let ir_noop = callgrind_dump(&cg_out, server.pid(), 1)? as f64 / cli.ir_calls as f64;
        for r in requests.iter().cycle().take(cli.ir_calls) {
            c.check_permission(r.clone()).await?;
        }
        let ir_check = callgrind_dump(&cg_out, server.pid(), 2)? as f64 / cli.ir_calls as f64;
        out.figure("ir_per_noop", ir_noop, "instructions", &base);
        out.figure(
            "ir_per_check",
            ir_check,
            "instructions",
            &extra(
                &base,
                &json!({ "vs_noop": round(ir_check / ir_noop.max(1.0)) }),
            ),
        );
        out.check(
            ir_noop > 1000.0 && ir_check > 1000.0,
            "callgrind counts look empty",
        );
        per_size.push((n, ir_check, ir_noop));
    }
    if let (Some(&(n0, c0, z0)), Some(&(n1, c1, z1))) = (per_size.first(), per_size.last())
        && n1 > n0
    {
        let ratio = c1 / c0.max(1.0);
        out.target(
            "ir_per_check_ratio_across_sizes",
            ratio,
            "ratio",
            "<= 1.5 (100k vs 1k)",
            ratio <= 1.5,
            &json!({
                "from_users": n0, "to_users": n1, "backend": backend_name(cli),
                "check_minus_noop_from": round(c0 - z0), "check_minus_noop_to": round(c1 - z1),
            }),
        );
    }
    Ok(())
}

fn callgrind_control(args: &[&str], pid: u32) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "callgrind_control {args:?} failed: {status}"
    );
    Ok(())
}

/// Dumps the counters (which zeroes them) and reads the total instructions of dump `n`.
fn callgrind_dump(cg_out: &std::path::Path, pid: u32, n: usize) -> anyhow::Result<u64> {
    callgrind_control(&["-d"], pid)?;
    let file = PathBuf::from(format!("{}.{n}", cg_out.display()));
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let total = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse().ok());
        if let Some(t) = total {
            return Ok(t);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no callgrind dump at {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
