//! portal-sync on several replicas sharing one database: each ODC infrastructure's sync runs on
//! the one replica that holds its lease; another takes over when the holder dies; a replica that
//! lost its lease cannot write; the API answers the same on every replica.
//!
//! The replicas are real servers, each on a tokio runtime of its own: killing one drops its
//! runtime, which stops all its tasks where they are, without a graceful shutdown (its lease
//! stays held until it lapses), as when the process dies. On SQLite the replicas share one
//! database file, as two processes on one host would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::proto::portal::v1 as portal;
use shared::testkit::clients::Credentials;
use shared::testkit::server::{self, TestServer};
use sqlx::Connection as _;

use crate::harness::*;
use crate::sync::{Setup, caught_up, invite, setup};

crate::e2e_tests!(
    two_replicas_one_holds_the_lease_and_changes_arrive_once,
    when_the_holder_dies_the_other_replica_takes_over_within_15_seconds,
    a_replica_whose_lease_was_taken_cannot_write,
    api_calls_answer_the_same_on_every_replica,
    a_replica_killed_mid_apply_leaves_whole_batches_and_another_finishes,
    a_graceful_shutdown_releases_the_lease_to_the_other_replica,
);

/// The company admin acted for in portal calls (see `sync::setup`).
const COMPANY_ADMIN: &str = "ca@acme.example";

/// A portal-sync replica on a runtime of its own (see the module's header).
struct Replica {
    id: String,
    addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    /// Starts a replica with `w`'s portal settings, replica id `id` and lease ttl `ttl_ms`.
    async fn start(w: &World, id: &str, ttl_ms: u64) -> Replica {
        let mut settings = w.portal_settings();
        settings.sync.replica_id = id.to_owned();
        settings.sync.lease_ttl_ms = ttl_ms;
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let server = rt.block_on(TestServer::start(None, |listener, shutdown| {
                portal_sync_svc::serve(listener, settings, shutdown)
            }));
            let _ = addr_tx.send(server.addr());
            // Until killed (or the test is over).
            let _ = killed.recv();
            rt.shutdown_background();
            drop(server);
        });
        Replica {
            id: id.to_owned(),
            addr: addr_rx.await.unwrap(),
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Kills the replica: no graceful shutdown, its leases stay held until they lapse.
    fn kill(&mut self) {
        drop(self.kill.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn sync(&self, token: &str) -> portal::sync_client::SyncClient<Authed> {
        portal::sync_client::SyncClient::with_interceptor(
            server::channel(self.addr),
            Credentials::new(Some(token), None),
        )
    }

    fn members(&self) -> portal::team_members_client::TeamMembersClient<Authed> {
        portal::team_members_client::TeamMembersClient::with_interceptor(
            server::channel(self.addr),
            Credentials::new(Some(SERVICE_TOKEN), Some(COMPANY_ADMIN)),
        )
    }

    async fn status(&self, w: &World, s: &Setup) -> portal::SyncStatus {
        self.sync(&w.portal_operator)
            .get_sync_status(portal::GetSyncStatusRequest {
                infrastructure: s.infra.clone(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// The company's members as this replica lists them.
    async fn team(&self, s: &Setup) -> Vec<portal::TeamMember> {
        self.members()
            .list_team_members(portal::ListTeamMembersRequest {
                parent: s.company.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .members
    }

    /// The ODC records of the infrastructure on this replica: email → permission (each once).
    async fn records(&self, s: &Setup) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        for m in self.team(s).await {
            for a in &m.infrastructure_access {
                if a.infrastructure == s.infra && a.source() == portal::PermissionSource::SourceOdc
                {
                    assert!(
                        out.insert(m.email.clone(), a.permission).is_none(),
                        "{}",
                        m.email
                    );
                }
            }
        }
        out
    }

    /// The company's portal audit events whose action is `action`.
    async fn events(&self, w: &World, s: &Setup, action: &str) -> Vec<portal::PortalEvent> {
        self.sync(&w.portal_operator)
            .list_portal_events(portal::ListPortalEventsRequest {
                parent: s.company.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events
            .into_iter()
            .filter(|e| e.action == action)
            .collect()
    }

    /// Waits until `holder` holds the lease, as this replica answers.
    async fn wait_holder(&self, w: &World, s: &Setup, holder: &str) {
        eventually(&format!("{holder} to hold the lease"), || async {
            (self.status(w, s).await.sync_replica == holder).then_some(())
        })
        .await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one statement on portal's database (as an operator would, or time moving on).
async fn portal_sql(w: &World, sql: &str) {
    match w.portal_settings().database() {
        portal_sync_svc::config::Database::Sqlite(path) => {
            let url = format!("sqlite://{}", path.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        portal_sync_svc::config::Database::Postgres(url) => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
}

/// Identity and the company set up through the harness's replica, which then stops (releasing
/// its lease); the tests' replicas take over.
async fn setup_then_stop(b: Backend) -> (World, Setup) {
    // The metrics recorder records only from its installation on.
    let _ = gauge("portal_sync_leases_held");
    let mut w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    w.stop_portal().await;
    (w, s)
}

/// Whether `replica` holds a lease, as its gauge says.
fn holds(replica: &str) -> bool {
    gauge(&format!("portal_sync_leases_held{{replica=\"{replica}\"}}")).is_some_and(|n| n > 0.5)
}

async fn two_replicas_one_holds_the_lease_and_changes_arrive_once(b: Backend) {
    let (w, s) = setup_then_stop(b).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (ida, idb) = (format!("a-{tag}"), format!("b-{tag}"));
    let a = Replica::start(&w, &ida, 2000).await;
    let bb = Replica::start(&w, &idb, 2000).await;
    let holder = eventually("a replica to hold the lease", || async {
        let h = a.status(&w, &s).await.sync_replica;
        (!h.is_empty()).then_some(h)
    })
    .await;
    assert!(holder == ida || holder == idb, "{holder}");
    bb.wait_holder(&w, &s, &holder).await;
    // Exactly one replica holds it, and keeps it (renewals go on; nobody takes it over).
    eventually("the gauges to agree", || async {
        (holds(&ida) != holds(&idb) && holds(&holder)).then_some(())
    })
    .await;
    invite(&w, &s, "dev@acme.example", Some("developer")).await;
    eventually("the record on both replicas", || async {
        let (ra, rb) = (a.records(&s).await, bb.records(&s).await);
        (ra.contains_key("dev@acme.example") && ra == rb).then_some(())
    })
    .await;
    let dev = a
        .team(&s)
        .await
        .into_iter()
        .find(|m| m.email == "dev@acme.example")
        .unwrap();
    let granted = a.events(&w, &s, "odc_access.granted").await;
    assert_eq!(
        granted.iter().filter(|e| e.target == dev.name).count(),
        1,
        "{granted:?}"
    );
    assert_eq!(
        a.status(&w, &s).await.sync_replica,
        holder,
        "the lease stayed"
    );
    assert!(holds(&ida) != holds(&idb) && holds(&holder));
}

async fn when_the_holder_dies_the_other_replica_takes_over_within_15_seconds(b: Backend) {
    let (w, s) = setup_then_stop(b).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // The default ttl: the promise is for the settings as shipped.
    let ttl = portal_sync_svc::sync::SyncSettings::default().lease_ttl_ms;
    let mut first = Replica::start(&w, &format!("first-{tag}"), ttl).await;
    first.wait_holder(&w, &s, &first.id).await;
    let second = Replica::start(&w, &format!("second-{tag}"), ttl).await;
    second.wait_holder(&w, &s, &first.id).await;
    first.kill();
    let died = Instant::now();
    let deadline = died + Duration::from_secs(15);
    loop {
        let st = second.status(&w, &s).await;
        if st.sync_replica == second.id {
            break;
        }
        assert!(Instant::now() < deadline, "no takeover within 15 s: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("takeover after {:?} (ttl {ttl} ms)", died.elapsed());
    invite(&w, &s, "later@acme.example", Some("developer")).await;
    eventually("a later change synced by the new holder", || async {
        second
            .records(&s)
            .await
            .contains_key("later@acme.example")
            .then_some(())
    })
    .await;
}

/// The leases `replica` lost for `reason`, as its counter says.
fn losses(replica: &str, reason: &str) -> u64 {
    let name = "portal_sync_lease_losses_total";
    counter(&format!(
        "{name}{{replica=\"{replica}\",reason=\"{reason}\"}}"
    )) + counter(&format!(
        "{name}{{reason=\"{reason}\",replica=\"{replica}\"}}"
    ))
}

/// Microseconds since the Unix epoch.
fn micros_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

async fn a_replica_whose_lease_was_taken_cannot_write(b: Backend) {
    let (w, s) = setup_then_stop(b).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // A long ttl: the holder's first renewal is 20 s away, so only its write can find out.
    let a = Replica::start(&w, &format!("a-{tag}"), 60_000).await;
    a.wait_holder(&w, &s, &a.id).await;
    caught_up_on(&w, &s, &a).await;
    let before = (
        a.records(&s).await,
        a.events(&w, &s, "odc_access.granted").await,
    );
    let cursor = a.status(&w, &s).await.cursor;
    // Another holder took the lease over (the holder stalled past its expiry, say).
    let later = micros_now() + 120_000_000;
    let steal = format!(
        "UPDATE sync_leases SET holder = 'intruder', token = token + 1, expire_time = {later}"
    );
    portal_sql(&w, &steal).await;
    invite(&w, &s, "dev@acme.example", Some("developer")).await;
    eventually("the holder's write to be refused", || async {
        (losses(&a.id, "write_refused") == 1).then_some(())
    })
    .await;
    // Nothing changed: no record, no event, the cursor where it was.
    assert_eq!(a.records(&s).await, before.0);
    assert_eq!(a.events(&w, &s, "odc_access.granted").await, before.1);
    let st = a.status(&w, &s).await;
    assert_eq!((st.sync_replica.as_str(), st.cursor), ("intruder", cursor));
    // The intruder's lease lapses: a replica takes over and the change arrives, once.
    let c = Replica::start(&w, &format!("c-{tag}"), 1000).await;
    portal_sql(&w, "UPDATE sync_leases SET expire_time = 0").await;
    c.wait_holder(&w, &s, &c.id).await;
    eventually("the change synced by the new holder", || async {
        c.records(&s)
            .await
            .contains_key("dev@acme.example")
            .then_some(())
    })
    .await;
    let dev = c
        .team(&s)
        .await
        .into_iter()
        .find(|m| m.email == "dev@acme.example")
        .unwrap();
    let granted = c.events(&w, &s, "odc_access.granted").await;
    assert_eq!(granted.iter().filter(|e| e.target == dev.name).count(), 1);
}

/// Waits until the replica's status says its records reflect everything identity has.
async fn caught_up_on(w: &World, s: &Setup, r: &Replica) {
    let target = w
        .id_audit(&s.org.admin_token)
        .get_snapshot(shared::proto::identity::v1::GetSnapshotRequest {
            parent: s.org.name.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sequence;
    eventually("the replica to catch up", || async {
        let st = r.status(w, s).await;
        (st.cursor >= target && st.lag_known && st.lag == 0).then_some(())
    })
    .await;
}

async fn api_calls_answer_the_same_on_every_replica(b: Backend) {
    let (w, s) = setup_then_stop(b).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let a = Replica::start(&w, &format!("a-{tag}"), 1500).await;
    a.wait_holder(&w, &s, &a.id).await;
    let other = Replica::start(&w, &format!("o-{tag}"), 1500).await;
    invite(&w, &s, "dev@acme.example", Some("developer")).await;
    caught_up_on(&w, &s, &a).await;
    // The replica that does not run the sync answers from the database: the same members, and
    // the same status (the holder's report is at most a third of the ttl old).
    let (team, status) = eventually("both replicas to answer the same", || async {
        let (ta, to) = (a.team(&s).await, other.team(&s).await);
        let (sa, so) = (a.status(&w, &s).await, other.status(&w, &s).await);
        let same = |x: &portal::SyncStatus| {
            (
                x.sync_replica.clone(),
                x.cursor,
                x.identity_sequence,
                x.health,
                x.lag_known,
            )
        };
        (ta == to && same(&sa) == same(&so)).then_some((ta, so))
    })
    .await;
    assert!(team.iter().any(|m| m.email == "dev@acme.example"));
    assert_eq!(status.sync_replica, a.id);
    assert!(status.lease_expire_time.is_some() && status.last_error.is_empty());
    assert_eq!((status.lag, status.staleness.unwrap().seconds), (0, 0));
    // A call that writes works on the replica that does not run the sync too.
    let resynced = other
        .sync(&w.portal_operator)
        .resync(portal::ResyncRequest {
            infrastructure: s.infra.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resynced.sync_replica, a.id);
    // The holder finds out from the database, and takes a new snapshot.
    eventually("the holder to take a new snapshot", || async {
        let st = other.status(&w, &s).await;
        let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
        (time(&st.last_snapshot_time) > time(&status.last_snapshot_time) && st.cursor > 0)
            .then_some(())
    })
    .await;
}

async fn a_replica_killed_mid_apply_leaves_whole_batches_and_another_finishes(b: Backend) {
    let (w, s) = setup_then_stop(b).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut a = Replica::start(&w, &format!("a-{tag}"), 1000).await;
    a.wait_holder(&w, &s, &a.id).await;
    let standby = Replica::start(&w, &format!("s-{tag}"), 1000).await;
    let emails: Vec<String> = (0..30).map(|n| format!("dev{n}@acme.example")).collect();
    // The holder applies the changes as they come; it dies while they still come.
    for (n, email) in emails.iter().enumerate() {
        invite(&w, &s, email, Some("developer")).await;
        if n == emails.len() / 2 {
            a.kill();
        }
    }
    standby.wait_holder(&w, &s, &standby.id).await;
    caught_up_on(&w, &s, &standby).await;
    let records = standby.records(&s).await;
    for email in &emails {
        assert!(records.contains_key(email), "{email} missing: {records:?}");
    }
    // Each member's record was granted once: no batch was applied twice or in part.
    let team = standby.team(&s).await;
    let granted = standby.events(&w, &s, "odc_access.granted").await;
    for email in &emails {
        let m = team.iter().find(|m| &m.email == email).unwrap();
        let n = granted.iter().filter(|e| e.target == m.name).count();
        assert_eq!(n, 1, "{email}: {n} grants");
    }
}

async fn a_graceful_shutdown_releases_the_lease_to_the_other_replica(b: Backend) {
    let mut w = World::start(b).await;
    let s = setup(&w).await;
    caught_up(&w, &s).await;
    // The harness's replica holds the lease, with the default ttl (10 s).
    let first = w
        .sync(&w.portal_operator)
        .get_sync_status(portal::GetSyncStatusRequest {
            infrastructure: s.infra.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sync_replica;
    assert!(!first.is_empty());
    // It tries to acquire at least every second (a third of its ttl).
    let next = Replica::start(&w, &format!("next-{}", uuid::Uuid::new_v4().simple()), 3000).await;
    next.wait_holder(&w, &s, &first).await;
    let stopped = Instant::now();
    w.stop_portal().await;
    // Released, not lapsed: the other replica takes over at its next try; a lease left to
    // lapse would have had at least 6.7 s to run (renewed every 3.3 s, for 10 s).
    let deadline = stopped + Duration::from_secs(5);
    while next.status(&w, &s).await.sync_replica != next.id {
        assert!(Instant::now() < deadline, "the lease was not handed over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    invite(&w, &s, "dev@acme.example", Some("developer")).await;
    caught_up_on(&w, &s, &next).await;
    assert!(next.records(&s).await.contains_key("dev@acme.example"));
}
