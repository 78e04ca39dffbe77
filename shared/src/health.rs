//! Health that tells the truth: `grpc.health.v1.Health` statuses driven by probes of what each
//! service depends on, for an orchestrator and for load balancers.
//!
//! * **Readiness** is the whole server's status (service `""`) and each named service's: a
//!   [`Health::probe`] runs every [`HealthSettings::probe_interval_ms`] with a timeout, and
//!   while it fails the services it [gates](Gate) answer `NOT_SERVING`; once it passes again
//!   they answer `SERVING` again, without a restart. A probe that does not answer within
//!   [`HealthSettings::probe_timeout_ms`] counts as failed.
//! * **Liveness** is the service [`LIVENESS`]: `SERVING` for as long as the process and its
//!   runtime answer, whatever the dependencies do, so that an orchestrator does not restart a
//!   replica only because its database is down.
//!
//! On shutdown every service but [`LIVENESS`] turns `NOT_SERVING` before the server drains
//! (see [`crate::server::serve`]). Each probe's result is also the gauge [`DEPENDENCY_UP`]
//! (1 up, 0 down), labelled `dependency`, and every change is logged.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health service name an orchestrator's liveness probe asks for.
pub const LIVENESS: &str = "liveness";

/// Gauge of each probed dependency (1 up, 0 down), labelled `dependency`.
pub const DEPENDENCY_UP: &str = "service_dependency_up";

/// How dependencies are probed, meant to be embedded in a service's configuration as
/// `health`. Every field has a default, so an empty section is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthSettings {
    /// How often each dependency is probed, in milliseconds (default 1000).
    pub probe_interval_ms: u64,
    /// How long a probe may take before it counts as failed, in milliseconds (default 2000).
    pub probe_timeout_ms: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            probe_interval_ms: 1000,
            probe_timeout_ms: 2000,
        }
    }
}

impl HealthSettings {
    fn interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms.max(10))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.probe_timeout_ms.max(1))
    }
}

/// What a failing probe takes out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// The whole server: `""` and every named service (readiness).
    Everything,
    /// Only these services; `""` and the others keep their status.
    Services(Vec<&'static str>),
}

impl Gate {
    fn covers(&self, service: &str) -> bool {
        match self {
            Self::Everything => true,
            Self::Services(names) => names.contains(&service),
        }
    }
}

/// A probe's answer: `Err` says, as a sentence for the operator's log, why the dependency
/// cannot be used.
pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

struct Probe {
    dependency: &'static str,
    gate: Gate,
    check: Box<dyn Fn() -> ProbeFuture + Send + Sync>,
    /// Why it failed last time; `None` while it passes.
    failing: Option<String>,
}

/// The health of one server: its named services and the probes of its dependencies. Built
/// by the service, handed to [`crate::server::serve`].
pub struct Health {
    services: Vec<&'static str>,
    settings: HealthSettings,
    probes: Vec<Probe>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("services", &self.services)
            .field("settings", &self.settings)
            .field(
                "probes",
                &self
                    .probes
                    .iter()
                    .map(|p| (p.dependency, &p.gate))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Health {
    /// The health of a server running `services` (fully qualified names), without probes yet:
    /// everything `SERVING` until shutdown.
    pub fn new(services: &[&'static str], settings: &HealthSettings) -> Self {
        Self {
            services: services.to_vec(),
            settings: settings.clone(),
            probes: Vec::new(),
        }
    }

    /// Adds a probe of `dependency` (a short name for logs and the [`DEPENDENCY_UP`] gauge,
    /// e.g. `database`): while `check` fails or does not answer in time, the services of
    /// `gate` answer `NOT_SERVING`.
    #[must_use]
    pub fn probe<F, Fut>(mut self, dependency: &'static str, gate: Gate, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.probes.push(Probe {
            dependency,
            gate,
            check: Box::new(move || Box::pin(check())),
            failing: None,
        });
        self
    }

    /// The named services.
    pub fn service_names(&self) -> &[&'static str] {
        &self.services
    }

    /// Probes once and reports the statuses on `reporter`, then keeps probing on a task until
    /// [`Monitor::not_serving`].
    pub(crate) async fn start(self, reporter: HealthReporter) -> Monitor {
        ::metrics::describe_gauge!(
            DEPENDENCY_UP,
            "Whether a dependency of the service answers its health probe (1) or not (0), by \
             dependency."
        );
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let services = self.services.clone();
        let interval = self.settings.interval();
        let mut state = State {
            timeout: self.settings.timeout(),
            probes: self.probes,
            services: self.services,
            reported: HashMap::new(),
            reporter: reporter.clone(),
        };
        state.round().await;
        let task = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                state.round().await;
            }
        });
        Monitor {
            reporter,
            services,
            task,
        }
    }
}

/// The probing task of a running server.
#[derive(Debug)]
pub(crate) struct Monitor {
    reporter: HealthReporter,
    services: Vec<&'static str>,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Stops probing and reports every service and `""` `NOT_SERVING` (liveness stays
    /// `SERVING`: the process still answers while it drains).
    pub(crate) async fn not_serving(self) {
        self.task.abort();
        let _ = self.task.await;
        for name in self.services.iter().copied().chain([""]) {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    }
}

/// `error` and its causes, `outer: inner: …`: what a probe says when a dependency fails.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the probing task keeps between rounds.
struct State {
    timeout: Duration,
    probes: Vec<Probe>,
    services: Vec<&'static str>,
    /// The status last reported per service (only changes are reported: each report wakes
    /// every `Watch`).
    reported: HashMap<&'static str, ServingStatus>,
    reporter: HealthReporter,
}

impl State {
    /// Runs every probe, logs what changed, and reports the statuses that changed.
    async fn round(&mut self) {
        for probe in &mut self.probes {
            let result = match tokio::time::timeout(self.timeout, (probe.check)()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
            };
            let up = result.is_ok();
            ::metrics::gauge!(DEPENDENCY_UP, "dependency" => probe.dependency).set(if up {
                1.0
            } else {
                0.0
            });
            match (result, probe.failing.take()) {
                (Err(error), None) => {
                    tracing::warn!(
                        dependency = probe.dependency,
                        %error,
                        gate = ?probe.gate,
                        "dependency down: its services now answer NOT_SERVING"
                    );
                    probe.failing = Some(error);
                }
                (Err(error), Some(_)) => probe.failing = Some(error),
                (Ok(()), Some(_)) => tracing::info!(
                    dependency = probe.dependency,
                    "dependency back: its services answer SERVING again"
                ),
                (Ok(()), None) => {}
            }
        }
        for name in self.services.iter().copied().chain([""]) {
            let down = self
                .probes
                .iter()
                .any(|p| p.failing.is_some() && p.gate.covers(name));
            let status = if down {
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            };
            if self.reported.insert(name, status) != Some(status) {
                self.reporter.set_service_status(name, status).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tonic_health::pb::health_check_response::ServingStatus as Pb;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    use super::*;

    const A: &str = "test.v1.A";
    const SYNC: &str = "test.v1.Sync";

    /// Serves health with a `database` probe gating everything and an `upstream` probe gating
    /// [`SYNC`], each failing while its flag is set; returns the flags, a client and the stop.
    async fn start(
        settings: HealthSettings,
    ) -> (
        [Arc<AtomicBool>; 2],
        HealthClient<tonic::transport::Channel>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let flags = [
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        ];
        let check = |flag: &Arc<AtomicBool>, hang: bool| {
            let flag = Arc::clone(flag);
            move || {
                let down = flag.load(Ordering::SeqCst);
                async move {
                    if down && hang {
                        std::future::pending::<()>().await;
                    }
                    if down { Err("down".to_owned()) } else { Ok(()) }
                }
            }
        };
        let health = Health::new(&[A, SYNC], &settings)
            .probe("database", Gate::Everything, check(&flags[0], true))
            .probe(
                "upstream",
                Gate::Services(vec![SYNC]),
                check(&flags[1], false),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            crate::server::serve(
                listener,
                tonic::service::Routes::default(),
                health,
                &crate::server::GrpcSettings::default(),
                &crate::tls::TlsSettings::default(),
                async {
                    let _ = stopped.await;
                },
            )
            .await
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        (flags, HealthClient::new(channel), stop)
    }

    async fn status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
        client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map_or(-1, |r| r.into_inner().status)
    }

    /// Polls (deadline 10 s) until every service has its expected status.
    async fn expect(client: &mut HealthClient<tonic::transport::Channel>, want: &[(&str, Pb)]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut seen = Vec::new();
            for (service, _) in want {
                seen.push(status(client, service).await);
            }
            if want.iter().zip(&seen).all(|((_, w), s)| *w as i32 == *s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "wanted {want:?}, saw {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_failing_probe_takes_out_what_it_gates_until_it_passes_again() {
        use Pb::{NotServing as Down, Serving as Up};
        let settings = HealthSettings {
            probe_interval_ms: 20,
            probe_timeout_ms: 100,
        };
        let (flags, mut client, stop) = start(settings).await;
        expect(
            &mut client,
            &[("", Up), (A, Up), (SYNC, Up), (LIVENESS, Up)],
        )
        .await;

        // The upstream fails: only the service it gates.
        flags[1].store(true, Ordering::SeqCst);
        expect(
            &mut client,
            &[("", Up), (A, Up), (SYNC, Down), (LIVENESS, Up)],
        )
        .await;
        flags[1].store(false, Ordering::SeqCst);
        expect(
            &mut client,
            &[("", Up), (A, Up), (SYNC, Up), (LIVENESS, Up)],
        )
        .await;

        // The database hangs past the timeout: everything but liveness.
        flags[0].store(true, Ordering::SeqCst);
        expect(
            &mut client,
            &[("", Down), (A, Down), (SYNC, Down), (LIVENESS, Up)],
        )
        .await;
        flags[0].store(false, Ordering::SeqCst);
        expect(
            &mut client,
            &[("", Up), (A, Up), (SYNC, Up), (LIVENESS, Up)],
        )
        .await;

        // Shutdown: every service NOT_SERVING, the process still alive.
        let mut watch = client
            .watch(HealthCheckRequest { service: A.into() })
            .await
            .unwrap()
            .into_inner();
        let first: HealthCheckResponse = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status, Up as i32);
        stop.send(()).unwrap();
        assert_eq!(watch.message().await.unwrap().unwrap().status, Down as i32);
    }

    #[test]
    fn settings_have_defaults() {
        let s: HealthSettings = serde_json::from_str(r#"{"probe_interval_ms": 250}"#).unwrap();
        assert_eq!(s.interval(), Duration::from_millis(250));
        assert_eq!(s.timeout(), Duration::from_secs(2));
    }
}
