//! The `abuse` suite (issue 11): the identity server (child process, default settings) under a
//! password-guessing flood. One client address (127.0.0.2) sends `--abuse-rate` wrong-password
//! logins a second, open loop, for `--abuse-secs`, against the account of a user who logs in
//! correctly once a second from another address (127.0.0.1, where they had logged in before).
//! Reported: the server's peak RSS (VmHWM, and the highest VmRSS sampled every 100 ms), the
//! legitimate logins' successes and latency (p50, p99), and the attacker's answers by code and
//! `ErrorInfo.reason`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::proto::identity::v1 as pb;
use shared::testkit::server::channel_from;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::Cli;
use crate::dataset::seeded;
use crate::identity_child::{Bearer, Server};
use crate::report::{Output, round};
use crate::stats::quantile_us;

type Users = pb::users_client::UsersClient<InterceptedService<Channel, Bearer>>;
type Anonymous = pb::users_client::UsersClient<Channel>;

const PASSWORD: &str = "Legit-Password-42";
const EMAIL: &str = "victim@bench.example";
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const LEGIT: [u8; 4] = [127, 0, 0, 1];
/// Attacker requests in flight at most (beyond, a tick's requests are counted as not sent).
const MAX_IN_FLIGHT: usize = 4096;

pub(crate) async fn suite(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    let (backend, data) = seeded(cli, out, cli.users.min(1000)).await?;
    let server = Server::spawn(&backend, &data).await?;
    let addr: std::net::SocketAddr = server.addr.parse()?;
    let loaded_rss = server.rss_mb().0;
    let bearer = Bearer(format!("Bearer {}", data.token).parse()?);
    let mut admin: Users = pb::users_client::UsersClient::with_interceptor(
        channel_from(addr, IpAddr::from(LEGIT)),
        bearer,
    );
    admin
        .create_user(pb::CreateUserRequest {
            parent: data.parent(),
            user: Some(pb::User {
                email: EMAIL.into(),
                display_name: "Victim".into(),
                ..Default::default()
            }),
            initial_password: PASSWORD.into(),
            active: Some(true),
            request_id: String::new(),
        })
        .await?;
    let login = |password: &str| pb::LoginRequest {
        organization: data.parent(),
        email: EMAIL.into(),
        password: password.into(),
    };
    // The user has logged in from their address before the attack.
    let mut legit = Anonymous::new(channel_from(addr, IpAddr::from(LEGIT)));
    legit.login(login(PASSWORD)).await?;
    let before_rss = server.rss_mb().0;
    eprintln!("bench: identity RSS {loaded_rss:.1} MB loaded, {before_rss:.1} MB before the flood");

    let secs = Duration::from_secs_f64(cli.abuse_secs);
    let attack = tokio::spawn(flood(addr, login("Wrong-Password-1"), cli.abuse_rate, secs));
    let rss = tokio::spawn(sample_rss(server.pid(), secs));
    let (latencies, failures) = legit_logins(&mut legit, login(PASSWORD), secs).await;
    let (answers, sent) = attack.await?;
    let peak_rss = rss.await?;
    let (_, hwm) = server.rss_mb();
    report(
        out,
        cli,
        &latencies,
        &failures,
        &answers,
        sent,
        (peak_rss, hwm),
    );
    Ok(())
}

/// `rate` wrong-password logins a second from [`ATTACKER`] for `secs`, on 4 connections, open
/// loop (every 10 ms, a tenth of a hundredth of the rate). Returns the answers by code and
/// reason, and how many were sent.
async fn flood(
    addr: std::net::SocketAddr,
    request: pb::LoginRequest,
    rate: u32,
    secs: Duration,
) -> (BTreeMap<String, u64>, u64) {
    let clients: Vec<Anonymous> = (0..4)
        .map(|_| Anonymous::new(channel_from(addr, IpAddr::from(ATTACKER))))
        .collect();
    let answers = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_tick = (rate / 100).max(1);
    let end = Instant::now() + secs;
    let mut sent = 0_u64;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..per_tick {
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                *lock(&answers).entry("not_sent".into()).or_default() += 1;
                continue;
            };
            let mut client = clients[(sent % 4) as usize].clone();
            let (req, answers) = (request.clone(), Arc::clone(&answers));
            sent += 1;
            tasks.spawn(async move {
                let key = match client.login(req).await {
                    Ok(_) => "OK".to_owned(),
                    Err(s) => {
                        let reason = s.get_details_error_info().map(|i| i.reason);
                        format!("{:?}/{}", s.code(), reason.unwrap_or_default())
                    }
                };
                *lock(&answers).entry(key).or_default() += 1;
                drop(permit);
            });
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let answers = lock(&answers).clone();
    (answers, sent)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One correct login a second for `secs`: the latencies of the successes (ns) and the errors.
async fn legit_logins(
    client: &mut Anonymous,
    request: pb::LoginRequest,
    secs: Duration,
) -> (Vec<u64>, Vec<String>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + secs;
    let (mut latencies, mut failures) = (Vec::new(), Vec::new());
    loop {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let t = Instant::now();
        match client.login(request.clone()).await {
            Ok(_) => latencies.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)),
            Err(s) => failures.push(format!("{:?}: {}", s.code(), s.message())),
        }
    }
    latencies.sort_unstable();
    (latencies, failures)
}

/// The highest VmRSS (MB) of process `pid`, sampled every 100 ms for `secs`.
async fn sample_rss(pid: u32, secs: Duration) -> f64 {
    let end = Instant::now() + secs;
    let mut peak = 0.0_f64;
    while Instant::now() < end {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        peak = peak.max(kb / 1024.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

fn report(
    out: &Output,
    cli: &Cli,
    latencies: &[u64],
    failures: &[String],
    answers: &BTreeMap<String, u64>,
    sent: u64,
    (peak_rss, hwm): (f64, f64),
) {
    let base = json!({
        "secs": cli.abuse_secs, "attack_rate": cli.abuse_rate, "attack_sent": sent,
        "backend": crate::report::backend_name(cli),
    });
    let extra = |more: serde_json::Value| crate::report::extra(&base, &more);
    out.target(
        "abuse_identity_peak_rss_mb",
        hwm.max(peak_rss),
        "MB",
        "< 300",
        hwm.max(peak_rss) < 300.0,
        &extra(json!({ "vm_hwm_mb": round(hwm), "max_vm_rss_sampled_mb": round(peak_rss) })),
    );
    let total = latencies.len() + failures.len();
    out.target(
        "abuse_legit_logins_ok",
        latencies.len() as f64,
        "logins",
        "all",
        failures.is_empty() && total > 0,
        &extra(json!({ "attempted": total, "failures": failures })),
    );
    let p99 = quantile_us(latencies, 0.99) / 1000.0;
    out.figure(
        "abuse_legit_login_p50_ms",
        quantile_us(latencies, 0.5) / 1000.0,
        "ms",
        &extra(json!({})),
    );
    out.target(
        "abuse_legit_login_p99_ms",
        p99,
        "ms",
        "<= 500",
        p99 <= 500.0,
        &extra(json!({ "max_ms": round(latencies.last().copied().unwrap_or(0) as f64 / 1e6) })),
    );
    let exhausted: u64 = answers
        .iter()
        .filter(|(k, _)| k.starts_with("ResourceExhausted/"))
        .map(|(_, v)| v)
        .sum();
    out.target(
        "abuse_attacker_resource_exhausted",
        exhausted as f64,
        "answers",
        "most of the attacker's calls",
        exhausted * 10 >= sent * 9,
        &extra(json!({ "answers": answers })),
    );
    out.check(total > 0, "abuse: no legitimate login was attempted");
    out.check(
        failures.is_empty(),
        format!("abuse: legitimate logins failed: {failures:?}"),
    );
    out.check(
        exhausted > 0 && !answers.contains_key("OK"),
        format!("abuse: the attacker was not refused: {answers:?}"),
    );
}
