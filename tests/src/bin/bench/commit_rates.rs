//! The rates durable mutations are compared with: `Store::commit` of one change, and raw
//! single-row INSERT commits with the store's settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use identity_svc::domain::model::{
    Assignment, Change, Entity, GrantPhase, Organization, Principal, ScopeKey,
};
use identity_svc::domain::names::fmt;
use identity_svc::store::Commit;
use uuid::Uuid;

use crate::backend::Backend;
use crate::dataset::{created, now_micros};

/// `Store::commit`s per second of one change each (an assignment replaced, as AssignRole
/// writes it), sequential, without gRPC or the core: the store's share of a durable mutation.
/// Runs on a small organization of its own in the server's database (the server keeps running;
/// its organization is untouched).
pub(crate) async fn store_commits(backend: &Backend, secs: Duration) -> anyhow::Result<f64> {
    let store = backend.identity_store().await?;
    let org = Uuid::new_v4();
    let now = now_micros();
    let org_change = created(
        fmt::org(org),
        Entity::Organization(Organization {
            id: org,
            display_name: "Calibration".into(),
            create_time: now,
            update_time: now,
            rev: 1,
        }),
    );
    let mut seq = store
        .commit(Commit {
            org,
            expected_seq: 0,
            create_org: true,
            actor: "operator",
            request_id: None,
            time: now,
            changes: &[org_change],
            secrets: &[],
        })
        .await?;
    let user = Principal::User(Uuid::new_v4());
    let mut previous: Option<Assignment> = None;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < secs {
        let a = Assignment {
            principal: user,
            scope: ScopeKey::Organization,
            role: if n.is_multiple_of(2) {
                "developer"
            } else {
                "administrator"
            }
            .into(),
            create_time: now,
            period: None,
            phase: GrantPhase::Active,
        };
        let change = Change {
            action: "role_assignment.replaced".into(),
            target: fmt::user(org, Uuid::nil()),
            before: previous.take().map(Entity::Assignment),
            after: Some(Entity::Assignment(a.clone())),
            affected_users: vec![Uuid::nil()],
        };
        seq = store
            .commit(Commit {
                org,
                expected_seq: seq,
                create_org: false,
                actor: "operator",
                request_id: None,
                time: now,
                changes: &[change],
                secrets: &[],
            })
            .await?;
        previous = Some(a);
        n += 1;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// The calibration table.
const SQL_CREATE: &str = "CREATE TABLE IF NOT EXISTS calibration \
                          (id BIGINT PRIMARY KEY, org TEXT NOT NULL, principal TEXT NOT NULL, role TEXT NOT NULL)";
/// One raw commit.
const INSERT: &str = "INSERT INTO calibration (id, org, principal, role) VALUES ($1, $2, $3, $4)";

/// What the inserting tasks of [`calibrate`] share: the stop flag, the commits counted, the
/// next row id.
#[derive(Debug, Clone)]
struct Inserters {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    ids: Arc<AtomicU64>,
}

type Tasks = Vec<tokio::task::JoinHandle<Result<(), sqlx::Error>>>;

/// Single-row INSERT commits per second on the backend, with the identity store's settings
/// (SQLite: WAL, synchronous FULL, a file next to the store's; PostgreSQL: the same database).
pub(crate) async fn calibrate(
    backend: &Backend,
    clients: usize,
    secs: Duration,
) -> anyhow::Result<f64> {
    let shared = Inserters {
        stop: Arc::new(AtomicBool::new(false)),
        count: Arc::new(AtomicU64::new(0)),
        ids: Arc::new(AtomicU64::new(now_micros() as u64 * 100)),
    };
    let tasks = if let Some(pg) = &backend.pg {
        pg_inserters(pg.url(), clients, &shared).await?
    } else {
        sqlite_inserters(backend, clients, &shared).await?
    };
    let Inserters { stop, count, .. } = shared;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c0 = count.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(secs).await;
    let c1 = count.load(Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok((c1 - c0) as f64 / elapsed)
}

/// `clients` tasks committing single-row INSERTs on PostgreSQL until stopped.
async fn pg_inserters(url: &str, clients: usize, shared: &Inserters) -> anyhow::Result<Tasks> {
    let mut tasks = Vec::new();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(url)
        .await?;
    sqlx::query(SQL_CREATE).execute(&pool).await?;
    for _ in 0..clients {
        let (pool, Inserters { stop, count, ids }) = (pool.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = ids.fetch_add(1, Ordering::Relaxed).cast_signed();
                sqlx::query(INSERT)
                    .bind(id)
                    .bind("org")
                    .bind("user:x")
                    .bind("role")
                    .execute(&pool)
                    .await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    Ok(tasks)
}

/// `clients` tasks committing single-row INSERTs on SQLite (`calibration.db` in the backend's
/// directory, WAL, synchronous FULL, at most 4 connections) until stopped.
async fn sqlite_inserters(
    backend: &Backend,
    clients: usize,
    shared: &Inserters,
) -> anyhow::Result<Tasks> {
    let mut tasks = Vec::new();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(backend.dir.path().join("calibration.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(clients.min(4) as u32)
        .connect_with(options)
        .await?;
    sqlx::query(SQL_CREATE).execute(&pool).await?;
    for _ in 0..clients {
        let (pool, Inserters { stop, count, ids }) = (pool.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = ids.fetch_add(1, Ordering::Relaxed).cast_signed();
                sqlx::query(INSERT)
                    .bind(id)
                    .bind("org")
                    .bind("user:x")
                    .bind("role")
                    .execute(&pool)
                    .await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    Ok(tasks)
}
