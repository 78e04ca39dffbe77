//! The performance benchmark of issue 4: one JSON line per figure on stdout, progress on stderr.
//!
//! ```text
//! cargo run --release -p tests --bin bench -- --smoke                 # seconds; CI
//! cargo run --release -p tests --bin bench -- identity --users 100000 # Noop vs Check, holders, RSS, writes
//! cargo run --release -p tests --bin bench -- rss --sizes 1000,10000,100000
//! cargo run --release -p tests --bin bench -- portal --users 100000
//! cargo run --release -p tests --bin bench -- abuse --abuse-secs 30 # login flood vs one user
//! cargo run --release -p tests --bin bench -- chaos --minutes 10 --pg postgres://…  # faults
//! cargo run --release -p tests --bin bench -- all --pg postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! How it measures (BENCHMARKS.md has the whole method):
//!
//! * The identity server runs in a **child process** (this same binary, `__serve-identity`),
//!   started exactly as `identity-svc` starts it (`identity_svc::serve`, multi-thread tokio
//!   runtime, default settings), so its RSS and CPU time are its own. The dataset is seeded
//!   before the child starts, by one `Store::commit` of every entity through the real store.
//! * Every throughput and latency figure is a same-run comparison with the `Noop` RPC, which
//!   goes through the same stack (transport, middleware, authentication, admission): runs of
//!   Noop and CheckPermission alternate A B A B, and the median of the per-pair ratios is
//!   reported, with the spread between pairs.
//! * Propagation identity → portal runs portal-sync in a child process too (`__serve-portal`,
//!   `portal_sync_svc::serve` as its `main` calls it), following the identity child through
//!   an ODC infrastructure set up as README describes.
//! * Durable writes are compared with a raw commit loop (single-row INSERT commits through
//!   sqlx with the store's own settings) on the same backend, raw and API runs alternating
//!   A B A B; the median of the per-pair ratios is reported.
//! * `--smoke` runs everything small and short, checks the answers, and exits non-zero when
//!   the harness breaks (an RPC error, an empty figure, a wrong count).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Statistics over counts and durations: the conversions are of small, positive numbers.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

mod abuse;
mod backend;
mod chaos;
mod commit_rates;
mod dataset;
mod durable;
mod identity;
mod identity_child;
mod instructions;
mod load;
mod noop_vs_check;
mod portal;
mod portal_child;
mod portal_live;
mod report;
mod rng;
mod rss;
mod stats;

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::identity_child::{CHILD_MODE, serve_child};
use crate::portal_child::{PORTAL_CHILD_MODE, serve_portal_child};
use crate::report::Output;

// ------------------------------------------------------------------------------- command line

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// Noop vs CheckPermission (throughput, latency), ListPermissionHolders, RSS, durable writes.
    Identity,
    /// Identity RSS at each of `--sizes`.
    Rss,
    /// Portal full derivation vs a null derivation, and an unchanged re-run; then both servers
    /// as child processes: propagation identity → portal record (p50, p99) and a role edit
    /// that changes the records of 10k holders.
    Portal,
    /// Instructions per Noop and per CheckPermission (callgrind) at each of `--ir-sizes`.
    /// Not part of `all`: it runs the server under valgrind (minutes at 100k users).
    Instructions,
    /// Only the durable writes of `identity` (store commit, raw calibration, AssignRole
    /// sequential and 16 in flight), on a dataset of `--users`, then a SIGKILL of the server
    /// and a restart that must come back at the last acknowledged sequence.
    Durable,
    /// A password-guessing flood (`--abuse-rate` wrong-password logins a second from
    /// 127.0.0.2 for `--abuse-secs`) while a user logs in correctly once a second from
    /// 127.0.0.1: identity's peak RSS, the user's successes and latency, the attacker's answers.
    Abuse,
    /// Two identity and two portal-sync replicas under a mixed load while each is killed with
    /// SIGKILL in turn and the database restarts (PostgreSQL), for `--minutes`; then nothing
    /// acknowledged lost, feed = audit trail, replicas = a fresh load, portal = a fresh
    /// derivation, every error retryable. Not part of `all`.
    Chaos,
    /// Everything but `instructions` and `chaos`.
    All,
}

/// Performance benchmark of identity and portal-sync (issue 4). JSON lines on stdout.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    /// What to run (default: all).
    suites: Vec<Suite>,
    /// Users in the dataset of `identity` and `portal`.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Dataset sizes of `rss`.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// PostgreSQL server (admin URL) instead of SQLite; a fresh database is created and dropped.
    #[arg(long)]
    pg: Option<String>,
    /// Seconds measured per run (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Warm-up seconds before each run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// A/B pairs of Noop and CheckPermission runs.
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// HTTP/2 connections of the load generator.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Dataset sizes of `instructions`.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    ir_sizes: Vec<usize>,
    /// Sequential calls of each RPC counted by `instructions`.
    #[arg(long, default_value_t = 2000)]
    ir_calls: usize,
    /// Seconds of the `abuse` flood.
    #[arg(long, default_value_t = 30.0)]
    abuse_secs: f64,
    /// Wrong-password logins a second of the `abuse` attacker.
    #[arg(long, default_value_t = 1000)]
    abuse_rate: u32,
    /// Minutes of the `chaos` run.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds between two faults of `chaos`.
    #[arg(long, default_value_t = 10.0)]
    chaos_fault_secs: f64,
    /// Seconds a killed process (or the database) of `chaos` stays down.
    #[arg(long, default_value_t = 2.0)]
    chaos_down_secs: f64,
    /// Small data, short runs, answers checked; exits non-zero if the harness breaks.
    #[arg(long)]
    smoke: bool,
}

impl Cli {
    fn secs(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD_MODE) {
        serve_child(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some(PORTAL_CHILD_MODE) {
        serve_portal_child(&args[2..]);
        return;
    }
    let mut cli = Cli::parse();
    if cli.smoke {
        cli.users = 1000;
        cli.sizes = vec![1000, 2000];
        cli.secs = 0.4;
        cli.warmup = 0.1;
        cli.pairs = 1;
        cli.conns = 2;
        cli.streams = 4;
        cli.abuse_secs = cli.abuse_secs.min(3.0);
    }
    if cli.suites.is_empty() || cli.suites.contains(&Suite::All) {
        cli.suites = vec![Suite::Identity, Suite::Rss, Suite::Portal, Suite::Abuse];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let out = Output::default();
    let result = rt.block_on(run(&cli, &out));
    let failures = out.failures();
    match result {
        Ok(()) if failures.is_empty() => eprintln!("bench: done"),
        Ok(()) => {
            eprintln!("bench: FAILED: {}", failures.join("; "));
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("bench: FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Where a child process listens: `BENCH_LISTEN` (the chaos suite restarts a killed child on
/// the port it had, so its peers find it again), else any free port of 127.0.0.1.
pub(crate) fn listen_addr() -> String {
    std::env::var(LISTEN_ENV).unwrap_or_else(|_| "127.0.0.1:0".to_owned())
}

/// The environment variable of [`listen_addr`].
pub(crate) const LISTEN_ENV: &str = "BENCH_LISTEN";

async fn run(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    out.machine(cli);
    for suite in &cli.suites {
        match suite {
            Suite::Identity => identity::suite(cli, out).await?,
            Suite::Rss => rss::suite(cli, out).await?,
            Suite::Portal => {
                portal::suite(cli, out).await?;
                portal_live::suite(cli, out).await?;
            }
            Suite::Instructions => instructions::suite(cli, out).await?,
            Suite::Durable => durable::suite(cli, out).await?,
            Suite::Abuse => abuse::suite(cli, out).await?,
            Suite::Chaos => chaos::suite(cli, out).await?,
            Suite::All => {}
        }
    }
    Ok(())
}
