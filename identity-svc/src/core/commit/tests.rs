//! The group commit through [`Core::mutate`], on SQLite and PostgreSQL. A [`Gated`] store
//! holds each store write until the test lets it through, so what is queued behind a
//! commit in flight is decided by the test, not by timing.

use std::collections::BTreeSet;

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};

use tokio::sync::broadcast;

use super::*;
use crate::auth::{Caller, Entry};
use crate::core::TOKEN_CACHE_TTL;
use crate::core::clock::SystemClock;
use crate::core::store::contract_tests::{on_postgres, on_sqlite};
use crate::core::store::{
    ClaimedMail, CredentialStore, Credentials, Delivery, EventFilter, EventLog, EventRecord,
    InvitationToken, LoadedOrg, MailOutbox, OutboxStats, Retry, Store, StoreError, TokenRecord,
    TokenStore,
};
use crate::core::{Mailer, load_state};
use crate::domain::model::{Principal, Stage, StagePurpose};
use crate::domain::names::fmt;

/// A store whose writes (`commit_batch`, hence `commit`) each wait for a permit; the
/// sizes of the batches that arrived are published in order.
#[derive(Debug)]
struct Gated {
    inner: Arc<dyn Store>,
    permits: Semaphore,
    arrived: watch::Sender<Vec<usize>>,
}

impl Gated {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            permits: Semaphore::new(0),
            arrived: watch::Sender::new(Vec::new()),
        })
    }

    /// Lets `n` more writes through.
    fn allow(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Waits until `n` writes have arrived; their batch sizes.
    async fn arrived(&self, n: usize) -> Vec<usize> {
        self.arrived
            .subscribe()
            .wait_for(|sizes| sizes.len() >= n)
            .await
            .unwrap()
            .clone()
    }
}

#[async_trait]
impl EventLog for Gated {
    async fn organization_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        self.inner.organization_ids().await
    }
    async fn load_organization(&self, org: Uuid) -> Result<Option<LoadedOrg>, StoreError> {
        self.inner.load_organization(org).await
    }
    async fn commit_batch(&self, commits: &[Commit<'_>]) -> Result<u64, StoreError> {
        self.arrived.send_modify(|sizes| sizes.push(commits.len()));
        self.permits.acquire().await.unwrap().forget();
        self.inner.commit_batch(commits).await
    }
    async fn events_after(
        &self,
        org: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.events_after(org, after, limit).await
    }
    async fn list_events(
        &self,
        org: Uuid,
        filter: &EventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.list_events(org, filter, after, limit).await
    }
    async fn find_request(
        &self,
        org: Uuid,
        request_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.find_request(org, request_id).await
    }
    async fn sequences(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        self.inner.sequences().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl TokenStore for Gated {
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.find_token(hash).await
    }
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.inner.insert_token(token).await
    }
    async fn revoke_token(&self, id: Uuid, at: Micros) -> Result<bool, StoreError> {
        self.inner.revoke_token(id, at).await
    }
    async fn list_tokens(
        &self,
        org: Uuid,
        principal: Principal,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list_tokens(org, principal).await
    }
    async fn revoked_since(&self, since: Micros) -> Result<Vec<Uuid>, StoreError> {
        self.inner.revoked_since(since).await
    }
}

#[async_trait]
impl CredentialStore for Gated {
    async fn find_invitation_token(
        &self,
        hash: &str,
    ) -> Result<Option<InvitationToken>, StoreError> {
        self.inner.find_invitation_token(hash).await
    }
    async fn credentials(&self, org: Uuid, user: Uuid) -> Result<Credentials, StoreError> {
        self.inner.credentials(org, user).await
    }
    async fn set_login_failures(
        &self,
        org: Uuid,
        user: Uuid,
        failed_logins: u32,
        locked_until: Option<Micros>,
    ) -> Result<(), StoreError> {
        self.inner
            .set_login_failures(org, user, failed_logins, locked_until)
            .await
    }
}

#[async_trait]
impl MailOutbox for Gated {
    async fn claim_mail(
        &self,
        owner: &str,
        now: Micros,
        lease_until: Micros,
        limit: usize,
        only: Option<Uuid>,
    ) -> Result<Vec<ClaimedMail>, StoreError> {
        self.inner
            .claim_mail(owner, now, lease_until, limit, only)
            .await
    }
    async fn mail_sent(&self, id: Uuid, owner: &str, at: Micros) -> Result<bool, StoreError> {
        self.inner.mail_sent(id, owner, at).await
    }
    async fn mail_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        retry: Retry,
    ) -> Result<bool, StoreError> {
        self.inner.mail_failed(id, owner, error, retry).await
    }
    async fn mail_delivery(&self, org: Uuid, user: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.inner.mail_delivery(org, user).await
    }
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.inner.outbox_stats().await
    }
}

/// A core over `gated` with one organization (sequence 1), created through it.
async fn core_with_org(gated: &Arc<Gated>) -> (Arc<Core>, Uuid, Authorized) {
    let mailbox = std::env::temp_dir().join(format!("core-tests-{}", Uuid::new_v4()));
    let core = Core::from_store(
        gated.clone(),
        Arc::new(SystemClock),
        Mailer::Mailbox(mailbox),
        TOKEN_CACHE_TTL,
    )
    .await
    .unwrap();
    let org = Uuid::new_v4();
    let auth = Entry::admit(
        "identity.v1.Organizations/CreateOrganization",
        &Caller::Operator,
        Some(org),
        None,
        0,
    )
    .unwrap()
    .authorized()
    .unwrap();
    let now = core.now();
    gated.allow(1);
    let created = core
        .create_org(
            &auth,
            Organization {
                id: org,
                display_name: "Acme".into(),
                create_time: now,
                update_time: now,
                rev: 1,
            },
            |_| Ok(()),
        )
        .await
        .unwrap();
    assert_eq!(created.seq, 1);
    (Arc::new(core), org, auth)
}

fn stage_entity(key: &str) -> Entity {
    Entity::Stage(Stage {
        key: key.to_owned(),
        display_name: key.to_uppercase(),
        order: 0,
        purpose: StagePurpose::NonProduction,
        rev: 1,
    })
}

/// A mutation creating stage `key`, refused when it exists; returns the sequence its
/// draft was validated at.
fn create_stage(org: Uuid, key: &str) -> impl FnMut(&mut Draft<'_>) -> Result<u64, Error> {
    let key = key.to_owned();
    move |d| {
        if d.state().stages.contains_key(&key) {
            return Err(Error::exists("STAGE_EXISTS", format!("stage {key} exists")));
        }
        let seen = d.state().seq;
        d.change(
            "stage.created",
            fmt::stage(org, &key),
            None,
            Some(stage_entity(&key)),
            Vec::new(),
        );
        Ok(seen)
    }
}

type Call = tokio::task::JoinHandle<Result<Committed<u64>, Error>>;

/// `create_stage(key)` in a task of its own, with an optional request id.
fn spawn_create(
    core: &Arc<Core>,
    auth: &Authorized,
    org: Uuid,
    key: &str,
    request_id: Option<&str>,
) -> Call {
    let (core, auth, key) = (core.clone(), auth.clone(), key.to_owned());
    let request_id = request_id.map(str::to_owned);
    tokio::spawn(async move {
        core.mutate(&auth, org, request_id.as_deref(), create_stage(org, &key))
            .await
    })
}

/// Yields until `n` drafts wait behind the batch in flight (no timing involved: the
/// spawned mutations run whenever this task yields).
async fn until_waiting(core: &Core, org: Uuid, n: usize) {
    let handle = core.org_cached(org).unwrap();
    while handle.queue().waiting.len() < n {
        tokio::task::yield_now().await;
    }
}

/// The store's events are 1..=`seq` without a gap, the state is at `seq`, and the
/// state reloaded from the store equals the state in memory.
async fn assert_consistent(core: &Core, org: Uuid, seq: u64) -> Vec<EventRecord> {
    let events = core
        .storage
        .store
        .events_after(org, 0, 10_000)
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=seq).collect::<Vec<_>>()
    );
    let handle = core.org_cached(org).unwrap();
    let loaded = load_state(&*core.storage.store, org)
        .await
        .unwrap()
        .unwrap();
    let st = handle.read();
    assert_eq!(st.seq, seq);
    assert_eq!(loaded.seq, seq);
    assert_eq!(
        st.stages.keys().collect::<Vec<_>>(),
        loaded.stages.keys().collect::<Vec<_>>()
    );
    assert!(handle.queue().is_empty());
    events
}

/// Receives `n` events from the feed: they must be consecutive from `from`.
fn drain_feed(feed: &mut broadcast::Receiver<Arc<EventRecord>>, from: u64, n: u64) {
    for seq in from..from + n {
        assert_eq!(feed.try_recv().unwrap().seq, seq);
    }
    assert!(feed.try_recv().is_err(), "more events than commits");
}

async fn many_concurrent_mutations_are_all_acknowledged(store: Arc<dyn Store>) {
    let gated = Gated::new(store);
    let (core, org, auth) = core_with_org(&gated).await;
    gated.allow(100_000);
    let mut feed = core.org_cached(org).unwrap().subscribe();
    let calls: Vec<Call> = (0..64)
        .map(|i| spawn_create(&core, &auth, org, &format!("s{i}"), None))
        .collect();
    let mut seqs = BTreeSet::new();
    for call in calls {
        let c = call.await.unwrap().unwrap();
        // Each answer is the sequence right after its own change, validated just before.
        assert_eq!(c.seq, c.value + 1);
        assert!(seqs.insert(c.seq), "sequence {} answered twice", c.seq);
    }
    assert_eq!(seqs, (2..=65).collect());
    let events = assert_consistent(&core, org, 65).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "stage.created")
            .count(),
        64
    );
    drain_feed(&mut feed, 2, 64);
    // One write per batch; the 64 drafts took at most 64 of them.
    let sizes = gated.arrived(1).await;
    assert_eq!(sizes.iter().skip(1).sum::<usize>(), 64);
}

async fn queued_drafts_see_each_other_and_commit_together(store: Arc<dyn Store>) {
    let gated = Gated::new(store);
    let (core, org, auth) = core_with_org(&gated).await;
    let handle = core.org_cached(org).unwrap();
    let mut feed = handle.subscribe();

    let first = spawn_create(&core, &auth, org, "a", None);
    gated.arrived(2).await;
    // In flight, not committed: readers do not see it.
    assert!(!handle.read().stages.contains_key("a"));
    // One after the other, so that the queue's order is known.
    let again = spawn_create(&core, &auth, org, "a", None);
    until_waiting(&core, org, 1).await;
    let b = spawn_create(&core, &auth, org, "b", None);
    until_waiting(&core, org, 2).await;
    let c = spawn_create(&core, &auth, org, "c", None);
    until_waiting(&core, org, 3).await;
    assert!(!handle.read().stages.contains_key("a"));
    assert_eq!(handle.read().seq, 1);
    // Refused because of a draft that is not committed yet: not answered before it is.
    assert!(!again.is_finished());

    gated.allow(2);
    assert_eq!(first.await.unwrap().unwrap().seq, 2);
    let refused = again.await.unwrap();
    assert!(
        matches!(refused, Err(Error::AlreadyExists { .. })),
        "{refused:?}"
    );
    // Validated on top of each other: b after a, c after b.
    let b = b.await.unwrap().unwrap();
    let c = c.await.unwrap().unwrap();
    assert_eq!((b.value, b.seq, c.value, c.seq), (2, 3, 3, 4));
    assert_eq!(gated.arrived(3).await, [1, 1, 3]);
    assert_consistent(&core, org, 4).await;
    drain_feed(&mut feed, 2, 3);
}

async fn conflict_inside_a_batch_runs_every_draft_again(store: Arc<dyn Store>) {
    let gated = Gated::new(store.clone());
    let (core, org, auth) = core_with_org(&gated).await;
    let mut feed = core.org_cached(org).unwrap().subscribe();

    let first = spawn_create(&core, &auth, org, "a", None);
    gated.arrived(2).await;
    let queued: Vec<Call> = ["b", "qa", "c", "d"]
        .iter()
        .map(|key| spawn_create(&core, &auth, org, key, None))
        .collect();
    until_waiting(&core, org, 4).await;
    gated.allow(1);
    assert_eq!(first.await.unwrap().unwrap().seq, 2);
    // The batch of four is at the store; another replica commits first (directly to the
    // store, at the same sequence), creating one of the stages.
    gated.arrived(3).await;
    let other = [Change {
        action: "stage.created".into(),
        target: fmt::stage(org, "qa"),
        before: None,
        after: Some(stage_entity("qa")),
        affected_users: Vec::new(),
    }];
    let seq = store
        .commit(Commit {
            org,
            expected_seq: 2,
            create_org: false,
            actor: "users/elsewhere",
            request_id: None,
            time: core.now(),
            changes: &other,
            secrets: &[],
        })
        .await
        .unwrap();
    assert_eq!(seq, 3);
    gated.allow(100);

    let mut acknowledged = BTreeSet::new();
    let mut refused = Vec::new();
    for (key, call) in ["b", "qa", "c", "d"].into_iter().zip(queued) {
        match call.await.unwrap() {
            Ok(c) => assert!(acknowledged.insert(c.seq)),
            Err(e) => refused.push((key, e)),
        }
    }
    // Ran again after catching up: the stage the other replica created is refused, the
    // rest committed after its event.
    assert!(
        matches!(refused.as_slice(), [("qa", Error::AlreadyExists { .. })]),
        "{refused:?}"
    );
    assert_eq!(acknowledged, (4..=6).collect());
    assert_eq!(gated.arrived(3).await[2], 4);
    let events = assert_consistent(&core, org, 6).await;
    assert_eq!(events[2].actor, "users/elsewhere");
    // The feed has every event once, in order, including the other replica's.
    drain_feed(&mut feed, 2, 5);
}

async fn duplicate_request_inside_a_batch_fails_only_its_draft(store: Arc<dyn Store>) {
    let gated = Gated::new(store);
    let (core, org, auth) = core_with_org(&gated).await;
    gated.allow(1);
    let used = spawn_create(&core, &auth, org, "used", Some("dup"));
    assert_eq!(used.await.unwrap().unwrap().seq, 2);
    let mut feed = core.org_cached(org).unwrap().subscribe();

    let first = spawn_create(&core, &auth, org, "a", None);
    gated.arrived(3).await;
    let calls: Vec<(&str, Call)> = [
        ("b", Some("r-b")),
        ("c", Some("dup")),
        ("d", Some("r-d")),
        ("e", None),
    ]
    .into_iter()
    .map(|(key, rid)| (key, spawn_create(&core, &auth, org, key, rid)))
    .collect();
    until_waiting(&core, org, 4).await;
    gated.allow(100);
    assert_eq!(first.await.unwrap().unwrap().seq, 3);

    let mut acknowledged = BTreeSet::new();
    for (key, call) in calls {
        match (key, call.await.unwrap()) {
            ("c", Err(Error::Own(Own::DuplicateRequest))) => {}
            ("c", other) => panic!("the reused request id: {other:?}"),
            (_, Ok(c)) => assert!(acknowledged.insert(c.seq)),
            (key, Err(e)) => panic!("{key}: {e:?}"),
        }
    }
    assert_eq!(acknowledged, (4..=6).collect());
    // The batch of four was refused, then committed one by one up to the offending
    // draft; the drafts after it ran again.
    let sizes = gated.arrived(5).await;
    assert_eq!(&sizes[2..5], [1, 4, 1]);
    let events = assert_consistent(&core, org, 6).await;
    assert!(
        !core
            .org_cached(org)
            .unwrap()
            .read()
            .stages
            .contains_key("c")
    );
    assert_eq!(
        core.storage.store.find_request(org, "dup").await.unwrap(),
        Some(fmt::stage(org, "used"))
    );
    for (rid, key) in [("r-b", "b"), ("r-d", "d")] {
        assert_eq!(
            core.storage.store.find_request(org, rid).await.unwrap(),
            Some(fmt::stage(org, key))
        );
        let event = events
            .iter()
            .find(|e| e.target == fmt::stage(org, key))
            .unwrap();
        assert_eq!(event.request_id.as_deref(), Some(rid));
    }
    drain_feed(&mut feed, 3, 4);
}

async fn a_caller_that_goes_away_mid_commit_blocks_nobody(store: Arc<dyn Store>) {
    let gated = Gated::new(store);
    let (core, org, auth) = core_with_org(&gated).await;
    // Commits its own draft; held at the store.
    let leader = spawn_create(&core, &auth, org, "gone", None);
    gated.arrived(2).await;
    let behind: Vec<Call> = ["b", "c"]
        .iter()
        .map(|key| spawn_create(&core, &auth, org, key, None))
        .collect();
    until_waiting(&core, org, 2).await;
    // The request is cancelled (the client hung up) before its commit got through.
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    gated.allow(100);
    // Validated on top of the abandoned draft, the others ran again without it.
    let mut seqs = BTreeSet::new();
    for call in behind {
        assert!(seqs.insert(call.await.unwrap().unwrap().seq));
    }
    assert_eq!(seqs, (2..=3).collect());
    assert_consistent(&core, org, 3).await;
    assert!(
        !core
            .org_cached(org)
            .unwrap()
            .read()
            .stages
            .contains_key("gone")
    );
    // And the organization still commits.
    let after = spawn_create(&core, &auth, org, "after", None);
    assert_eq!(after.await.unwrap().unwrap().seq, 4);
}

/// A request sent twice at once: the second draft is not queued behind the first (which
/// carries its request id); it waits for the first's commit, catches up and returns
/// `DuplicateRequest` (its caller then answers with the first's result). One commit.
async fn a_twin_request_waits_for_the_first_and_commits_nothing(store: Arc<dyn Store>) {
    let gated = Gated::new(store);
    let (core, org, auth) = core_with_org(&gated).await;
    let first = spawn_create(&core, &auth, org, "a", Some("twin"));
    // The first request's commit is held at the gate (the organization's was write 1).
    assert_eq!(gated.arrived(2).await.len(), 2);
    let twin = spawn_create(&core, &auth, org, "b", Some("twin"));
    // On a current-thread runtime the twin runs its draft (no I/O before it blocks) while
    // the test yields: it reaches the writer lock the first commit holds.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(core.org_cached(org).unwrap().queue().waiting.is_empty());
    gated.allow(100);
    assert_eq!(first.await.unwrap().unwrap().seq, 2);
    assert!(matches!(
        twin.await.unwrap(),
        Err(Error::Own(Own::DuplicateRequest))
    ));
    // No second write was attempted, and the state has the first's stage only.
    assert_eq!(gated.arrived(2).await.len(), 2);
    assert_consistent(&core, org, 2).await;
    let handle = core.org_cached(org).unwrap();
    assert!(handle.read().stages.contains_key("a"));
    assert!(!handle.read().stages.contains_key("b"));
}

/// Every group commit records its batch size and its store transaction's latency. On one
/// thread, so that the test's local recorder sees the committer task too.
#[tokio::test(flavor = "current_thread")]
async fn a_group_commit_records_its_batch_size_and_latency() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    on_sqlite(|store| async move {
        let gated = Gated::new(store);
        let (core, org, auth) = core_with_org(&gated).await;
        let first = spawn_create(&core, &auth, org, "a", None);
        gated.arrived(2).await;
        let b = spawn_create(&core, &auth, org, "b", None);
        until_waiting(&core, org, 1).await;
        let c = spawn_create(&core, &auth, org, "c", None);
        until_waiting(&core, org, 2).await;
        gated.allow(2);
        for call in [first, b, c] {
            call.await.unwrap().unwrap();
        }
        assert_eq!(gated.arrived(3).await, [1, 1, 2]);
    })
    .await;
    let text = metrics.render();
    // Two batches (the organization's creation is not a group commit): 1 draft, then 2.
    for line in [
        "identity_commit_batch_size_count 2",
        "identity_commit_batch_size_sum 3",
        r#"identity_commit_duration_seconds_count{outcome="ok"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_twin_request_waits_for_the_first_and_commits_nothing_on_sqlite() {
    on_sqlite(a_twin_request_waits_for_the_first_and_commits_nothing).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_twin_request_waits_for_the_first_and_commits_nothing_on_postgres() {
    on_postgres(a_twin_request_waits_for_the_first_and_commits_nothing).await;
}

macro_rules! on_both {
        ($($case:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        super::on_sqlite(super::$case).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        super::on_postgres(super::$case).await;
                    }
                )*
            }
        };
    }

on_both!(
    many_concurrent_mutations_are_all_acknowledged,
    queued_drafts_see_each_other_and_commit_together,
    conflict_inside_a_batch_runs_every_draft_again,
    duplicate_request_inside_a_batch_fails_only_its_draft,
    a_caller_that_goes_away_mid_commit_blocks_nobody,
);
