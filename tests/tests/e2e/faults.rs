//! Faults we can cause, and what each service must still promise through them:
//!
//! * identity killed with SIGKILL while a burst of writes to one organization is being
//!   committed (the group committer's batches): after a restart on the same database every
//!   acknowledged write is there, the change feed is gap-free and equal to the audit trail, the
//!   state equals the log, and every call that failed can be retried with its request id
//!   without a duplicate (both databases);
//! * the database stopped under both services (a PostgreSQL cluster of the test's own): reads
//!   identity answers from memory keep answering, writes are refused as UNAVAILABLE with a
//!   `RetryInfo` (never INTERNAL), and once the database is back both take writes again
//!   without a restart and nothing acknowledged before is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use shared::proto::identity::v1 as id;
use shared::testkit::clients::{Authed, Credentials, invitation_token};
use shared::testkit::pg::{self, TestDatabase};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

mod outage;

crate::e2e_tests!(identity_killed_mid_batch_loses_no_acknowledged_write);

const OPERATOR: &str = "odc_op_e2e_faults";

/// identity as a child process of its own (the benchmark binary's `__serve-identity` mode,
/// `identity_svc::serve` as `main` runs it), so that the test can kill it with SIGKILL.
struct IdentityProcess {
    child: Child,
    addr: String,
}

impl IdentityProcess {
    async fn spawn(dir: &Path, database: &str) -> Self {
        let addr_file = dir.join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(env!("CARGO_BIN_EXE_bench"))
            .arg("__serve-identity")
            .arg(dir)
            .arg(database)
            .arg(&addr_file)
            .env("IDENTITY_OPERATOR_TOKEN", OPERATOR)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn identity");
        let addr = eventually("identity to bind", || {
            let read = std::fs::read_to_string(&addr_file).ok();
            async move { read }
        })
        .await;
        let process = Self { child, addr };
        let channel = process.channel();
        eventually("identity to answer", || {
            let mut orgs = orgs(channel.clone(), OPERATOR);
            async move {
                orgs.list_organizations(id::ListOrganizationsRequest::default())
                    .await
                    .ok()
            }
        })
        .await;
        process
    }

    fn channel(&self) -> Channel {
        shared::testkit::server::channel(self.addr.parse().unwrap())
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL identity");
        self.child.wait().expect("reap identity");
    }
}

impl Drop for IdentityProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn orgs(channel: Channel, token: &str) -> id::organizations_client::OrganizationsClient<Authed> {
    id::organizations_client::OrganizationsClient::with_interceptor(
        channel,
        Credentials::bearer(Some(token)),
    )
}

fn users(channel: Channel, token: Option<&str>) -> id::users_client::UsersClient<Authed> {
    id::users_client::UsersClient::with_interceptor(channel, Credentials::bearer(token))
}

/// An organization and its administrator's session token (stored, so it outlives a restart).
async fn organization(channel: &Channel, mailbox: &Path) -> (String, String) {
    let email = "ada@faults.example";
    let org = orgs(channel.clone(), OPERATOR)
        .create_organization(id::CreateOrganizationRequest {
            organization: Some(id::Organization {
                display_name: "Faults".into(),
                ..Default::default()
            }),
            first_administrator_email: email.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    eventually("the invitation mail", || {
        let sent = std::fs::read_dir(mailbox).is_ok_and(|mut d| d.next().is_some());
        async move { sent.then_some(()) }
    })
    .await;
    users(channel.clone(), None)
        .accept_invitation(id::AcceptInvitationRequest {
            invitation_token: invitation_token(mailbox, email),
            password: PASSWORD.into(),
            display_name: "Ada".into(),
        })
        .await
        .unwrap();
    let token = users(channel.clone(), None)
        .login(id::LoginRequest {
            organization: org.clone(),
            email: email.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_token;
    (org, token)
}

fn create_user(org: &str, n: u32) -> id::CreateUserRequest {
    tests::feed_checks::numbered_user(org, u64::from(n), "user", "faults.example")
}

/// What the writers saw: acknowledged user names by request number, and the numbers of the
/// calls that failed (in flight when identity died, or sent after).
#[derive(Default)]
struct Outcomes {
    acknowledged: BTreeMap<u32, String>,
    failed: BTreeMap<u32, Code>,
}

/// `writers` tasks creating users until identity stops answering; returns what they saw.
async fn write_until_killed(
    channel: Channel,
    org: &str,
    token: &str,
    writers: u32,
    kill_after: usize,
    process: IdentityProcess,
) -> Outcomes {
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (channel, org, token, outcomes) = (
            channel.clone(),
            org.to_owned(),
            token.to_owned(),
            outcomes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut client = users(channel, Some(&token));
            for i in 0.. {
                let n = w * 100_000 + i;
                match client.create_user(create_user(&org, n)).await {
                    Ok(user) => {
                        let name = user.into_inner().name;
                        outcomes.lock().unwrap().acknowledged.insert(n, name);
                    }
                    Err(status) => {
                        outcomes.lock().unwrap().failed.insert(n, status.code());
                        return;
                    }
                }
            }
        }));
    }
    eventually("enough acknowledged writes", || {
        let enough = outcomes.lock().unwrap().acknowledged.len() >= kill_after;
        async move { enough.then_some(()) }
    })
    .await;
    process.kill();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(outcomes)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
}

async fn identity_killed_mid_batch_loses_no_acknowledged_write(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let admin = pg::admin_url("e2e_faults").expect("skipped when TEST_PG_URL=off");
            Some(TestDatabase::create(&admin, "e2e_faults").await)
        }
    };
    let database = pg.as_ref().map_or("-".to_owned(), |db| db.url().to_owned());
    let process = IdentityProcess::spawn(dir.path(), &database).await;
    let channel = process.channel();
    let (org, token) = organization(&channel, &dir.path().join("mailbox")).await;

    let seen = write_until_killed(channel, &org, &token, 8, 60, process).await;
    assert!(seen.acknowledged.len() >= 60);
    eprintln!(
        "killed with {} writes acknowledged, {} in flight or refused",
        seen.acknowledged.len(),
        seen.failed.len()
    );
    for code in seen.failed.values() {
        assert!(
            matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled),
            "a write to a dying server failed with {code:?}, not as a transport failure"
        );
    }

    let process = IdentityProcess::spawn(dir.path(), &database).await;
    let channel = process.channel();
    let mut client = users(channel.clone(), Some(&token));
    for name in seen.acknowledged.values() {
        client
            .get_user(id::GetUserRequest { name: name.clone() })
            .await
            .unwrap_or_else(|e| panic!("acknowledged {name} was lost: {e}"));
    }
    // Every failed call retried with its request id: done once, never twice.
    for n in seen.failed.keys() {
        client.create_user(create_user(&org, *n)).await.unwrap();
    }
    let listed = all_users(&mut client, &org).await;
    let emails: BTreeSet<&str> = listed.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(
        emails.len(),
        listed.len(),
        "a retried write made a duplicate"
    );
    for n in seen.acknowledged.keys().chain(seen.failed.keys()) {
        assert!(emails.contains(format!("user{n}@faults.example").as_str()));
    }

    // The feed is gap-free, equal to the audit trail, and the state is the log's.
    let trail = tests::feed_checks::trail_equal_to_feed(&channel, &token, &org)
        .await
        .unwrap();
    // No user was deleted: the users are exactly those whose creation the log holds.
    let created: BTreeSet<&str> = trail
        .iter()
        .filter(|e| e.before.is_none())
        .filter_map(|e| match e.after.as_ref()?.kind.as_ref()? {
            id::resource::Kind::User(u) => Some(u.name.as_str()),
            _ => None,
        })
        .collect();
    let names: BTreeSet<&str> = listed.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, created, "the state is not the log's");
    drop(process);
    drop(pg);
}

async fn all_users(client: &mut id::users_client::UsersClient<Authed>, org: &str) -> Vec<id::User> {
    let mut users = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_users(id::ListUsersRequest {
                parent: org.to_owned(),
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        users.extend(page.users);
        if page.next_page_token.is_empty() {
            return users;
        }
        page_token = page.next_page_token;
    }
}
