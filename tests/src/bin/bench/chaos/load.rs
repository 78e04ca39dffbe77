//! The chaos suite's mixed load: role changes and user creations (the acknowledged writes the
//! end checks look for), permission checks, logins, a change feed watched on each identity
//! replica, and status reads on each portal-sync replica. Every answer is counted by kind and
//! code; a client behaves as documented: it waits what `RetryInfo` says (or 100 ms) and goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use identity_svc::domain::names::fmt;
use shared::proto::identity::v1 as pb;
use shared::proto::portal::v1 as portal;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::dataset::Dataset;
use crate::identity_child::Bearer;
use crate::noop_vs_check::check_requests;
use crate::rng::Rng;

type Access = pb::access_client::AccessClient<InterceptedService<Channel, Bearer>>;
type Users = pb::users_client::UsersClient<InterceptedService<Channel, Bearer>>;
type Audit = pb::audit_client::AuditClient<InterceptedService<Channel, Bearer>>;

/// What every client saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Answered calls by kind.
    pub(crate) ok: BTreeMap<&'static str, u64>,
    /// Errors by kind and code.
    pub(crate) errors: BTreeMap<(&'static str, String), u64>,
    /// Errors a client may not retry (INTERNAL, INVALID_ARGUMENT, …), described.
    pub(crate) not_retryable: Vec<String>,
    /// Per owned user: the organization role of the last acknowledged AssignRole, and the
    /// role of a later call whose outcome the client does not know.
    pub(crate) roles: BTreeMap<Uuid, (Option<String>, Option<String>)>,
    /// Acknowledged CreateUser calls: request number → user name.
    pub(crate) created: BTreeMap<u64, String>,
    /// CreateUser calls that failed (retried with their request id at the end).
    pub(crate) create_failed: Vec<u64>,
    /// Events the watchers received, and how many arrived out of sequence.
    pub(crate) watched: u64,
    pub(crate) watch_gaps: Vec<String>,
}

impl Tally {
    fn answered(&mut self, kind: &'static str) {
        *self.ok.entry(kind).or_default() += 1;
    }

    /// Counts an error; returns how long to wait before the next call.
    fn failed(&mut self, kind: &'static str, status: &Status) -> Duration {
        *self
            .errors
            .entry((kind, format!("{:?}", status.code())))
            .or_default() += 1;
        if !retryable(status) {
            self.not_retryable
                .push(format!("{kind}: {:?} {}", status.code(), status.message()));
        }
        status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_secs(2))
    }

    pub(crate) fn acknowledged_writes(&self) -> u64 {
        self.ok.get("AssignRole").copied().unwrap_or(0) + self.created.len() as u64
    }
}

/// Whether a client may retry a call that failed so: refused for now by the server
/// (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, DEADLINE_EXCEEDED), or cut by the transport (a
/// killed process: the status carries the transport's error as its source).
pub(crate) fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::Cancelled
    ) || std::error::Error::source(status).is_some()
}

/// Everything the load tasks share.
#[derive(Clone)]
pub(crate) struct Load {
    pub(crate) identity: Vec<Channel>,
    pub(crate) portal: Vec<(Channel, String)>,
    pub(crate) bearer: Bearer,
    pub(crate) portal_operator: String,
    pub(crate) parent: String,
    pub(crate) org: Uuid,
    pub(crate) mutation_roles: [String; 2],
    /// The login user's email and password.
    pub(crate) login: (String, String),
    pub(crate) tally: Arc<Mutex<Tally>>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Load {
    fn access(&self, i: usize) -> Access {
        let c = self.identity[i % self.identity.len()].clone();
        pb::access_client::AccessClient::with_interceptor(c, self.bearer.clone())
    }
    fn users(&self, i: usize) -> Users {
        let c = self.identity[i % self.identity.len()].clone();
        pb::users_client::UsersClient::with_interceptor(c, self.bearer.clone())
    }
    fn audit(&self, i: usize) -> Audit {
        let c = self.identity[i % self.identity.len()].clone();
        pb::audit_client::AuditClient::with_interceptor(c, self.bearer.clone())
    }
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts every task: `writers` role changers over disjoint users, a creator, two
    /// checkers, a login loop, a watcher per identity replica, a status reader per portal one.
    pub(crate) fn spawn(&self, data: &Dataset, writers: usize) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let owned: Vec<Uuid> = data.non_admins.iter().take(writers * 20).copied().collect();
        for (w, users) in owned.chunks(20).enumerate() {
            tasks.spawn(self.clone().role_changes(w, users.to_vec()));
        }
        tasks.spawn(self.clone().creations());
        let mut rng = Rng(7);
        let checks = Arc::new(check_requests(data, &mut rng));
        for i in 0..2 {
            tasks.spawn(self.clone().checks(i, checks.clone()));
        }
        tasks.spawn(self.clone().logins());
        for i in 0..self.identity.len() {
            tasks.spawn(self.clone().watch(i));
        }
        for i in 0..self.portal.len() {
            tasks.spawn(self.clone().portal_status(i));
        }
        tasks
    }

    async fn role_changes(self, w: usize, users: Vec<Uuid>) {
        let mut access = self.access(w);
        let mut turn = 0usize;
        while self.running() {
            let user = users[turn % users.len()];
            let role = self.mutation_roles[(turn / users.len()) % 2].clone();
            turn += 1;
            let request = pb::AssignRoleRequest {
                parent: self.parent.clone(),
                principal: fmt::user(self.org, user),
                role: role.clone(),
                scope: Some(pb::Scope {
                    kind: Some(pb::scope::Kind::Organization(true)),
                }),
                grant_period: None,
            };
            match access.assign_role(request).await {
                Ok(_) => {
                    let mut t = self.tally();
                    t.answered("AssignRole");
                    t.roles.insert(user, (Some(role), None));
                }
                Err(s) => {
                    let wait = {
                        let mut t = self.tally();
                        t.roles.entry(user).or_default().1 = Some(role);
                        t.failed("AssignRole", &s)
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn creations(self) {
        for n in 0u64.. {
            if !self.running() {
                return;
            }
            let mut users = self.users(n as usize);
            match users.create_user(create_user(&self.parent, n)).await {
                Ok(u) => {
                    let mut t = self.tally();
                    t.answered("CreateUser");
                    t.created.insert(n, u.into_inner().name);
                }
                Err(s) => {
                    let wait = {
                        let mut t = self.tally();
                        t.create_failed.push(n);
                        t.failed("CreateUser", &s)
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn checks(self, i: usize, requests: Arc<Vec<pb::CheckPermissionRequest>>) {
        let mut access = self.access(i);
        for r in requests.iter().cycle() {
            if !self.running() {
                return;
            }
            match access.check_permission(r.clone()).await {
                Ok(_) => self.tally().answered("CheckPermission"),
                Err(s) => {
                    let wait = self.tally().failed("CheckPermission", &s);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn logins(self) {
        let mut turn = 0;
        while self.running() {
            let request = pb::LoginRequest {
                organization: self.parent.clone(),
                email: self.login.0.clone(),
                password: self.login.1.clone(),
            };
            match self.users(turn).login(request).await {
                Ok(_) => self.tally().answered("Login"),
                Err(s) => {
                    let wait = self.tally().failed("Login", &s);
                    tokio::time::sleep(wait).await;
                }
            }
            turn += 1;
            // A person logging in now and then, not a flood (the limits are tested elsewhere).
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Follows the feed on replica `i`, resuming after the last event it received; an event
    /// that is not the one after it is a gap.
    async fn watch(self, i: usize) {
        let mut audit = self.audit(i);
        let mut last = 0i64;
        let mut first = true;
        while self.running() {
            let request = pb::WatchChangesRequest {
                parent: self.parent.clone(),
                after_sequence: last,
            };
            let mut stream = match audit.watch_changes(request).await {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let wait = self.tally().failed("WatchChanges", &s);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            loop {
                let next = tokio::time::timeout(Duration::from_millis(500), stream.message());
                match next.await {
                    Err(_) if self.running() => {}
                    Err(_) => return,
                    Ok(Ok(Some(e))) => {
                        let mut t = self.tally();
                        if !first && e.sequence != last + 1 {
                            t.watch_gaps
                                .push(format!("replica {i}: {last} then {}", e.sequence));
                        }
                        first = false;
                        last = e.sequence;
                        t.watched += 1;
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(s)) => {
                        let wait = self.tally().failed("WatchChanges", &s);
                        tokio::time::sleep(wait).await;
                        break;
                    }
                }
            }
        }
    }

    async fn portal_status(self, i: usize) {
        let (channel, infra) = self.portal[i].clone();
        let bearer = Bearer(
            format!("Bearer {}", self.portal_operator)
                .parse()
                .expect("token"),
        );
        let mut sync = portal::sync_client::SyncClient::with_interceptor(channel, bearer);
        while self.running() {
            let request = portal::GetSyncStatusRequest {
                infrastructure: infra.clone(),
            };
            match sync.get_sync_status(request).await {
                Ok(_) => self.tally().answered("GetSyncStatus"),
                Err(s) => {
                    let wait = self.tally().failed("GetSyncStatus", &s);
                    tokio::time::sleep(wait).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// CreateUser number `n`, with a request id of its own (the retry at the end sends it again).
pub(crate) fn create_user(parent: &str, n: u64) -> pb::CreateUserRequest {
    tests::feed_checks::numbered_user(parent, n, "chaos", "bench.example")
}
