//! The sync engine: keeps the ODC infrastructures' team records in step with identity.
//!
//! One worker per ODC infrastructure: take a consistent snapshot of the identity organization
//! (`identity.v1.Audit/GetSnapshot`) and derive every record → then follow
//! `identity.v1.Audit/WatchChanges` from the cursor. The worker keeps its mirror between runs:
//! after a failure (identity unreachable, a refused token, a database error) it resumes the
//! feed from its cursor; a snapshot is taken again only when the process starts, when identity
//! says the cursor is gone, or on [`Syncer::resync`] ([`resume`]). Each event updates a mirror
//! of the organization (users, roles, organization-scope assignments), re-derives the users it
//! affects (a role edit re-derives every holder), and writes the changed records **and** the
//! new cursor in one store transaction: a crash can never apply a change twice or skip one.
//! Failures back off (capped exponential, with jitter); the lag, the staleness, the health and
//! the last error (an operator's sentence, [`failure`]) are visible through [`Syncer::status`]
//! and as metrics ([`status`]). When identity refuses the token (a revoked or expired token
//! ends the open change feed within a second) the status says so and [`REFUSALS_TOTAL`] counts
//! it; the worker keeps retrying with back-off and takes a new token at once
//! (`Companies.SetIdentityToken`).
//!
//! Several replicas may share one database: a worker runs its infrastructure's sync only while
//! this replica holds the infrastructure's lease ([`lease`], [`worker`]), and every write of
//! records and cursor carries the lease's fencing token, so a replica that lost the lease
//! cannot write ([`SyncCursor::fence`]).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::proto::identity::v1 as pb;
use shared::traces::Traces;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::domain::mapping::Mirror;
use crate::domain::model::{Infrastructure, Micros};
use crate::store::{Fence, PortalStore, StoreError, SyncCursor};

mod contact;
mod endpoint;
mod failure;
pub mod identity;
mod lease;
pub mod reconcile;
mod resume;
mod status;
mod traced;
mod worker;

pub use failure::{REFUSALS_TOTAL, SyncHealth};
pub use lease::{LEASE_ACQUISITIONS_TOTAL, LEASE_HELD, LEASE_LOSSES_TOTAL, LEASES_HELD};
pub use status::{LAG_EVENTS, STALENESS_SECONDS, StatusView};

use contact::IdentityContact;
use endpoint::AuditClient;
use reconcile::Members;
use resume::{Followed, cursor_gone, head_of};
use traced::SyncTraces;

/// Sync settings.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SyncSettings {
    /// The identity service, e.g. `http://127.0.0.1:50051`, or `https://…` for TLS (which
    /// needs `identity_ca_file`).
    pub identity_url: String,
    /// CA certificates (PEM) that identity's certificate must be signed by (`https://` only;
    /// nothing else is trusted). Re-read at each connection.
    pub identity_ca_file: Option<PathBuf>,
    /// The certificate chain (PEM) portal-sync presents to identity (mTLS), with
    /// `identity_key_file`.
    pub identity_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `identity_cert_file`.
    pub identity_key_file: Option<PathBuf>,
    /// How often the list of ODC infrastructures is re-read (milliseconds).
    pub discovery_interval_ms: u64,
    /// First retry delay after a failure (milliseconds); doubles up to `backoff_max_ms`. Each
    /// wait is drawn between half the delay and the delay.
    pub backoff_min_ms: u64,
    /// Longest retry delay (milliseconds).
    pub backoff_max_ms: u64,
    /// This replica's id in the sync leases (GetSyncStatus's `sync_replica`, the lease
    /// metrics' `replica` label). Empty (the default): a random id per process. Replicas
    /// sharing a database must have different ids.
    pub replica_id: String,
    /// How long a replica's lease of an infrastructure's sync lasts unless renewed
    /// (milliseconds): the holder renews it every third of it; when the holder dies another
    /// replica takes over once it lapses, so within about this time.
    pub lease_ttl_ms: u64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            identity_url: "http://127.0.0.1:50051".into(),
            identity_ca_file: None,
            identity_cert_file: None,
            identity_key_file: None,
            discovery_interval_ms: 1000,
            backoff_min_ms: 50,
            backoff_max_ms: 5000,
            replica_id: String::new(),
            lease_ttl_ms: 10_000,
        }
    }
}

/// The running sync: discovery plus one worker per ODC infrastructure.
#[derive(Debug)]
pub struct Syncer {
    store: Arc<dyn PortalStore>,
    settings: SyncSettings,
    status: Mutex<HashMap<Uuid, StatusView>>,
    /// Wakes discovery (new infrastructure) and workers (resync).
    wake: tokio::sync::watch::Sender<u64>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Whether identity answers (the health of `portal.v1.Sync`).
    contact: IdentityContact,
    /// The spans of the sync's work ([`traced`]).
    traces: SyncTraces,
    /// This replica's id in the leases.
    replica: String,
    /// The leases this replica holds now, by infrastructure: the fence of their writes.
    fences: Mutex<HashMap<Uuid, Fence>>,
}

/// Now, in microseconds since the Unix epoch.
pub fn now() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Why one run of a worker ended.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("identity: {0}")]
    Identity(#[from] tonic::Status),
    #[error("identity unreachable: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("identity TLS: {0}")]
    Tls(#[from] shared::tls::TlsError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the change feed ended")]
    FeedEnded,
    #[error("resync requested")]
    Resync,
    #[error("the identity token was replaced")]
    TokenReplaced,
    #[error("this replica no longer holds the infrastructure's sync lease")]
    LeaseLost,
    #[error("stopped")]
    Stopped,
    #[error(
        "identity no longer holds the change events after the sync's cursor ({0}); taking a new \
         snapshot"
    )]
    CursorGone(u64),
}

impl Syncer {
    /// Starts discovery and the workers (on the current tokio runtime).
    pub fn spawn(store: Arc<dyn PortalStore>, settings: SyncSettings) -> Arc<Self> {
        Self::spawn_traced(store, settings, Traces::off())
    }

    /// [`Syncer::spawn`], the work recorded in `traces`: a span per snapshot (a child of the
    /// Resync call that asked for it), per opening of the feed and per batch of events; the
    /// calls to identity carry their context.
    pub fn spawn_traced(
        store: Arc<dyn PortalStore>,
        settings: SyncSettings,
        traces: Traces,
    ) -> Arc<Self> {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let (wake, _) = tokio::sync::watch::channel(0);
        ::metrics::describe_counter!(
            REFUSALS_TOTAL,
            "Refusals of an ODC infrastructure's identity token (a call or an open change feed \
             answered UNAUTHENTICATED or PERMISSION_DENIED), by code."
        );
        status::describe();
        lease::describe();
        let replica = if settings.replica_id.trim().is_empty() {
            format!("replica-{}", &Uuid::new_v4().simple().to_string()[..12])
        } else {
            settings.replica_id.trim().to_owned()
        };
        tracing::info!(replica = %replica, "sync replica");
        let s = Arc::new(Self {
            store,
            settings,
            status: Mutex::new(HashMap::new()),
            wake,
            shutdown,
            contact: IdentityContact::default(),
            traces: SyncTraces::new(traces),
            replica,
            fences: Mutex::new(HashMap::new()),
        });
        // Present from the start, so that a replica holding nothing is told from none running.
        s.count_held(0);
        tokio::spawn(Arc::clone(&s).discover());
        tokio::spawn(Arc::clone(&s).publish());
        s
    }

    /// The live status of one infrastructure's sync, while this replica runs it (holds its
    /// lease); [`Syncer::status_of`] answers for any infrastructure.
    fn status(&self, infrastructure: Uuid) -> Option<StatusView> {
        self.status
            .lock()
            .ok()
            .and_then(|m| m.get(&infrastructure).cloned())
    }

    /// `Err` (why) while the sync's latest call to identity found it unreachable.
    pub fn identity_reachable(&self) -> Result<(), String> {
        self.contact.check()
    }

    /// Drops the stored cursor of an infrastructure: its worker takes a fresh snapshot and
    /// derives every record again.
    pub async fn resync(&self, infrastructure: Uuid) -> Result<(), StoreError> {
        // Before the cursor is dropped: a worker that sees it gone takes the parent.
        self.traces.resync_asked(infrastructure);
        self.store.reset_sync(infrastructure).await?;
        self.wake.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Tells discovery that an infrastructure was added (starts its worker at once).
    pub fn infrastructure_added(&self) {
        self.wake.send_modify(|n| *n += 1);
    }

    /// Tells the workers that an infrastructure's identity token was replaced: its worker
    /// ends its run (or its back-off) and starts again with the stored token.
    pub fn identity_token_replaced(&self) {
        self.wake.send_modify(|n| *n += 1);
    }

    /// This replica's id in the sync leases.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Stops discovery and every worker, and releases the leases this replica holds (another
    /// replica takes them over at its next try).
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        self.release_all().await;
    }

    fn update(&self, infra: Uuid, f: impl FnOnce(&mut StatusView)) {
        if let Ok(mut m) = self.status.lock() {
            let s = m.entry(infra).or_default();
            f(s);
            s.publish(now());
        }
    }

    /// Keeps the staleness gauges current (they grow while identity does not answer).
    async fn publish(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Ok(m) = self.status.lock() {
                let t = now();
                m.values().for_each(|s| s.publish(t));
            }
        }
    }

    async fn discover(self: Arc<Self>) {
        let mut running: BTreeSet<Uuid> = BTreeSet::new();
        let mut wake = self.wake.subscribe();
        let mut stop = self.shutdown.subscribe();
        let interval = Duration::from_millis(self.settings.discovery_interval_ms.max(10));
        loop {
            match self.store.odc_infrastructures().await {
                Ok(list) => {
                    for (infra, token) in list {
                        if running.insert(infra.id) {
                            lease::discovered(&infra);
                            tokio::spawn(Arc::clone(&self).work(infra, token));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not list ODC infrastructures"),
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = wake.changed() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One run: resume with what the worker kept, or take a snapshot and reconcile everything;
    /// then follow the feed. What the worker keeps is dropped on a resync and when identity
    /// says the cursor is gone.
    async fn run(
        &self,
        infra: &Infrastructure,
        token: &str,
        kept: &mut Option<Followed>,
    ) -> Result<(), RunError> {
        let org = infra
            .identity_org
            .map(|o| format!("organizations/{o}"))
            .ok_or_else(|| {
                RunError::Identity(tonic::Status::failed_precondition(
                    "ODC infrastructure without an organization",
                ))
            })?;
        let mut client = endpoint::client(&self.settings, token)?;
        if kept.is_some() && self.store.sync_state(infra.id).await?.cursor == 0 {
            // Resync: the stored cursor was dropped.
            *kept = None;
        }
        let followed = match kept {
            Some(f) => {
                self.settle(infra, f).await?;
                f
            }
            None => kept.insert(
                self.snapshot(infra, &mut client, &org)
                    .instrument(self.traces.snapshot(infra.id))
                    .await?,
            ),
        };
        let result = self.follow(infra, token, &mut client, org, followed).await;
        self.update(infra.id, |s| {
            if s.following {
                // The feed was open until now.
                s.following = false;
                s.last_answered = Some(now());
            }
        });
        match result {
            Err(RunError::Identity(status)) if cursor_gone(&status) => {
                let cursor = followed.cursor;
                *kept = None;
                Err(RunError::CursorGone(cursor))
            }
            other => other,
        }
    }

    /// Takes identity's snapshot of the organization and reconciles every record with it.
    async fn snapshot(
        &self,
        infra: &Infrastructure,
        client: &mut AuditClient,
        org: &str,
    ) -> Result<Followed, RunError> {
        let snapshot = client
            .get_snapshot(pb::GetSnapshotRequest {
                parent: org.to_owned(),
            })
            .await?
            .into_inner();
        let answered = now();
        self.contact.answered();
        let seq = u64::try_from(snapshot.sequence).unwrap_or(0);
        let mirror = identity::mirror_from_snapshot(&snapshot);
        let stored = self.store.sync_state(infra.id).await?;
        let mut members = Members::new(infra.company, self.store.members(infra.company).await?);
        let snapshot_time = now();
        // Everyone in the mirror, and everyone who has a record now (stale ones are removed).
        let mut everyone: BTreeSet<Uuid> = mirror.users.keys().copied().collect();
        everyone.extend(members.odc_users(infra.id));
        self.reconcile(
            infra,
            &mirror,
            &mut members,
            &everyone,
            seq,
            stored.cursor,
            Some(snapshot_time),
        )
        .await?;
        self.update(infra.id, |s| {
            s.cursor = seq;
            s.identity_sequence = seq;
            s.last_snapshot_time = Some(snapshot_time);
            s.last_error.clear();
            s.health = SyncHealth::Syncing;
            s.last_sync_time = Some(now());
            s.last_answered = Some(answered);
        });
        Ok(Followed {
            mirror,
            members,
            cursor: seq,
            pending: BTreeSet::new(),
            reload: false,
        })
    }

    /// Follows the feed after the kept cursor, applying what arrives in batches, until an
    /// error, a resync, a replaced token or shutdown ends the run.
    async fn follow(
        &self,
        infra: &Infrastructure,
        token: &str,
        client: &mut AuditClient,
        org: String,
        f: &mut Followed,
    ) -> Result<(), RunError> {
        let mut wake = self.wake.subscribe();
        let mut stop = self.shutdown.subscribe();
        let span = tracing::info_span!("sync_watch", infrastructure = %infra.id, after = f.cursor);
        let response = client
            .watch_changes(pb::WatchChangesRequest {
                parent: org,
                after_sequence: i64::try_from(f.cursor).unwrap_or_default(),
            })
            .instrument(self.traces.root(span))
            .await?;
        self.contact.answered();
        self.feed_opened(infra.id, f.cursor, head_of(response.metadata()));
        let mut stream = response.into_inner();
        loop {
            let first = tokio::select! {
                m = stream.message() => m?,
                _ = wake.changed() => {
                    if self.store.sync_state(infra.id).await?.cursor == 0 {
                        return Err(RunError::Resync);
                    }
                    if self.store.identity_token(infra.id).await?.as_deref() != Some(token) {
                        return Err(RunError::TokenReplaced);
                    }
                    continue;
                }
                _ = stop.changed() => return Err(RunError::Stopped),
            };
            let Some(first) = first else {
                return Err(RunError::FeedEnded);
            };
            // Take every event already received, then apply them as one batch.
            let mut batch = vec![first];
            while batch.len() < 1000 {
                match tokio::time::timeout(Duration::ZERO, stream.message()).await {
                    Ok(Ok(Some(e))) => batch.push(e),
                    Ok(Ok(None)) | Err(_) => break,
                    Ok(Err(e)) => return Err(e.into()),
                }
            }
            let answered = now();
            let span = tracing::info_span!(
                "sync_batch",
                infrastructure = %infra.id,
                events = batch.len()
            );
            async {
                for e in &batch {
                    f.pending.extend(identity::apply_event(&mut f.mirror, e));
                    f.cursor = u64::try_from(e.sequence).unwrap_or(f.cursor);
                }
                self.write_pending(infra, f).await
            }
            .instrument(self.traces.root(span))
            .await?;
            let cursor = f.cursor;
            self.update(infra.id, |s| {
                s.cursor = cursor;
                s.identity_sequence = s.identity_sequence.max(cursor);
                s.last_error.clear();
                s.health = SyncHealth::Syncing;
                s.last_sync_time = Some(now());
                s.last_answered = Some(answered);
            });
        }
    }

    /// The change feed is open after `cursor`, and identity's last sequence is `head` (when
    /// it said): identity answers, the lag is known.
    fn feed_opened(&self, infra: Uuid, cursor: u64, head: Option<u64>) {
        self.update(infra, |s| {
            s.following = true;
            s.last_answered = Some(now());
            s.cursor = cursor;
            s.identity_sequence = head.unwrap_or(cursor).max(cursor);
            s.last_error.clear();
            s.health = SyncHealth::Syncing;
            if s.identity_sequence == cursor {
                s.last_sync_time = Some(now());
            }
        });
    }

    /// Writes the records of `users` and the cursor in one transaction. On a concurrent
    /// change of a member (a person editing through the portal), re-reads and tries again.
    /// Nothing is written when no record changes and the stored cursor is already `cursor`.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &self,
        infra: &Infrastructure,
        mirror: &Mirror,
        members: &mut Members,
        users: &BTreeSet<Uuid>,
        cursor: u64,
        stored_cursor: u64,
        snapshot_time: Option<Micros>,
    ) -> Result<(), RunError> {
        loop {
            let t = now();
            for u in users {
                members.set(infra.id, *u, mirror.derive(*u), t);
            }
            let (changes, events) = members.take_changes();
            if changes.is_empty() && stored_cursor == cursor {
                return Ok(());
            }
            // Written only while this replica still holds the lease (checked in the batch's
            // transaction).
            let c = SyncCursor {
                infrastructure: infra.id,
                cursor,
                snapshot_time,
                fence: Some(self.fence(infra.id).ok_or(RunError::LeaseLost)?),
            };
            match self
                .store
                .apply(infra.company, &changes, &events, Some(&c), t)
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => {
                    *members =
                        Members::new(infra.company, self.store.members(infra.company).await?);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
