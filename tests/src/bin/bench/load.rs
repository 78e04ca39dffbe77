//! The closed-loop load generator: `streams` callers per connection for a warm-up and a
//! measured window; what one run measured ([`Run`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::identity_child::{Access, Server, cpu_secs};
use crate::stats::quantile_us;

/// One closed-loop run.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// Completed calls in the measured window.
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) secs: f64,
    /// Latencies (ns) of the calls completed in the window, sorted.
    pub(crate) latencies: Vec<u64>,
    /// Server CPU seconds used during the window.
    server_cpu: f64,
    /// CPU seconds of this process (the load generator) during the window.
    client_cpu: f64,
}

impl Run {
    pub(crate) fn rps(&self) -> f64 {
        self.calls as f64 / self.secs.max(1e-9)
    }
    pub(crate) fn p(&self, q: f64) -> f64 {
        quantile_us(&self.latencies, q)
    }
    pub(crate) fn cpu_us_per_call(&self) -> f64 {
        self.server_cpu * 1e6 / (self.calls.max(1) as f64)
    }
    pub(crate) fn client_cpu_us_per_call(&self) -> f64 {
        self.client_cpu * 1e6 / (self.calls.max(1) as f64)
    }
}

/// Runs `call(client, i)` from `streams` tasks per client, closed loop, for `warmup` then
/// `secs`; only calls that complete inside the measured window count.
pub(crate) async fn closed_loop<F, Fut>(
    server: &Server,
    clients: &[Access],
    streams: usize,
    warmup: Duration,
    secs: Duration,
    call: F,
) -> Run
where
    F: Fn(Access, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let start = Instant::now() + warmup;
    let end = start + secs;
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..streams {
            let (client, call, errors, next) =
                (client.clone(), call.clone(), errors.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t0 = Instant::now();
                    let r = call(client.clone(), i).await;
                    let t1 = Instant::now();
                    if r.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if errors.load(Ordering::Relaxed) < 3 {
                            eprintln!("bench: call failed: {:?}", r.err());
                        }
                    } else if t0 >= start && t1 <= end {
                        lat.push((t1 - t0).as_nanos() as u64);
                    }
                    if t1 >= end {
                        return lat;
                    }
                }
            }));
        }
    }
    tokio::time::sleep_until(start.into()).await;
    let (cpu0, own0) = (server.cpu_secs(), cpu_secs("/proc/self/stat"));
    tokio::time::sleep_until(end.into()).await;
    let (cpu1, own1) = (server.cpu_secs(), cpu_secs("/proc/self/stat"));
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    latencies.sort_unstable();
    Run {
        calls: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        secs: secs.as_secs_f64(),
        latencies,
        server_cpu: cpu1 - cpu0,
        client_cpu: own1 - own0,
    }
}
