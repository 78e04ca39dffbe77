//! (f) Portal full derivation: the sync's reconcile step (`Members` + `PortalStore::apply`)
//! over a mirror of N users built in memory, against a null derivation that reads and writes
//! the same rows without the mapping logic; then an unchanged re-run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use portal_sync_svc::domain::mapping::{Mirror, MirrorUser, RoleKind, UserState};
use portal_sync_svc::domain::model::{
    Access, Company, CompanyPermission, Email, InfraKind, InfraPermission, Infrastructure,
    NewEvent, Source, TeamMember, TeamRole,
};
use portal_sync_svc::store::{MemberChange, PortalStore, SyncCursor};
use portal_sync_svc::sync::reconcile::Members;
use serde_json::json;
use shared::sealing::Keyring;
use uuid::Uuid;

use crate::Cli;
use crate::backend::Backend;
use crate::dataset::now_micros;
use crate::report::{Output, extra};
use crate::rng::Rng;

/// Rows per `apply` transaction of the null derivation (the real one writes one batch).
const NULL_BATCH: usize = 1000;

async fn store(backend: &Backend) -> anyhow::Result<Arc<dyn PortalStore>> {
    let keys = Arc::new(Keyring::load_or_create(
        &backend.dir.path().join("token-keys"),
    )?);
    Ok(match &backend.pg {
        Some(pg) => {
            Arc::new(portal_sync_svc::store::postgres::PgStore::connect(pg.url(), keys).await?)
        }
        None => Arc::new(
            portal_sync_svc::store::sqlite::SqliteStore::open(
                &backend.dir.path().join("portal.db"),
                keys,
            )
            .await?,
        ),
    })
}

/// A company with one ODC infrastructure and its first admin (a manual member).
async fn company(store: &dyn PortalStore, label: &str) -> anyhow::Result<(Uuid, Infrastructure)> {
    let now = now_micros();
    let company = Company {
        id: Uuid::now_v7(),
        display_name: format!("Bench {label}"),
        create_time: now,
    };
    let admin = TeamMember {
        id: Uuid::now_v7(),
        company: company.id,
        email: Email::parse(&format!("admin-{label}@bench.example")).map_err(anyhow::Error::msg)?,
        display_name: "Admin".into(),
        team_role: TeamRole::Manager,
        company_permission: CompanyPermission::Admin,
        access: Vec::new(),
        phone: None,
        lifetime_username: None,
        development_permissions: false,
        created_by_sync: false,
        create_time: now,
        update_time: now,
        rev: 1,
    };
    let event = NewEvent {
        actor: "bench".into(),
        action: "company.created".into(),
        target: format!("companies/{}", company.id),
        detail: String::new(),
    };
    store.create_company(&company, &admin, &event, now).await?;
    let infra = Infrastructure {
        id: Uuid::now_v7(),
        company: company.id,
        display_name: "ODC".into(),
        kind: InfraKind::Odc,
        identity_org: Some(Uuid::new_v4()),
        create_time: now,
    };
    store
        .create_infrastructure(&infra, Some("odc_sa_bench"), &event, now)
        .await?;
    Ok((company.id, infra))
}

/// A mirror of `n` users with the dataset's role mix (1 % Administrator, 30 % Developer,
/// custom roles of which a third give Support permissions, 20 % without a role, 3 %
/// inactive).
fn mirror(n: usize) -> Mirror {
    let mut rng = Rng(99);
    let mut m = Mirror::default();
    m.roles
        .insert("administrator".into(), RoleKind::Administrator);
    m.roles.insert("developer".into(), RoleKind::Developer);
    let n_roles = (n / 100).clamp(10, 1000);
    for i in 0..n_roles {
        let perms = match i % 3 {
            0 => vec!["support.view_all_cases".to_owned(), "asset.open".to_owned()],
            1 => vec!["support.open_cases".to_owned()],
            _ => vec!["asset.open".to_owned()],
        };
        m.roles.insert(format!("role-{i}"), RoleKind::Custom(perms));
    }
    for i in 0..n {
        let id = rng.uuid();
        let state = if rng.chance(0.03) {
            UserState::Inactive
        } else {
            UserState::Active
        };
        m.users.insert(
            id,
            MirrorUser {
                email: Email::parse(&format!("user{i:06}@bench.example")).expect("email"),
                state,
                display_name: format!("User {i}"),
            },
        );
        if rng.chance(0.8) {
            let x = rng.unit();
            let role = if x < 0.01 {
                "administrator".to_owned()
            } else if x < 0.31 {
                "developer".to_owned()
            } else {
                format!("role-{}", rng.below(n_roles))
            };
            m.org_roles.insert(id, role);
        }
    }
    m
}

/// Where the time of one derivation went, in seconds.
#[derive(Debug, Default)]
struct Phases {
    /// `PortalStore::members` (SELECT and JSON decode) and `sync_state`.
    read: f64,
    /// `Members::new`: the indexes of the members read.
    index: f64,
    /// Every user through `Members::set`, and `take_changes`.
    derive: f64,
    /// `PortalStore::apply`.
    write: f64,
}

impl Phases {
    fn json(&self) -> serde_json::Value {
        json!({
            "read_seconds": round2(self.read), "index_seconds": round2(self.index),
            "derive_seconds": round2(self.derive), "write_seconds": round2(self.write),
        })
    }
}

/// The sync's reconcile: every user through `Members::set`, one `apply` with the cursor.
/// Returns (seconds, changes written, phases).
async fn derive(
    store: &dyn PortalStore,
    company: Uuid,
    infra: &Infrastructure,
    mirror: &Mirror,
    cursor: u64,
) -> anyhow::Result<(f64, usize, Phases)> {
    let mut phases = Phases::default();
    let t = Instant::now();
    let read = store.members(company).await?;
    let stored = store.sync_state(infra.id).await?.cursor;
    phases.read = t.elapsed().as_secs_f64();
    let mut members = Members::new(company, read);
    phases.index = t.elapsed().as_secs_f64() - phases.read;
    let mut everyone: BTreeSet<Uuid> = mirror.users.keys().copied().collect();
    everyone.extend(members.odc_users(infra.id));
    let now = now_micros();
    for u in &everyone {
        members.set(infra.id, *u, mirror.derive(*u), now);
    }
    let (changes, events) = members.take_changes();
    phases.derive = t.elapsed().as_secs_f64() - phases.read - phases.index;
    let written = changes.len();
    if !(changes.is_empty() && stored == cursor) {
        let c = SyncCursor {
            infrastructure: infra.id,
            cursor,
            snapshot_time: Some(now),
            fence: None,
        };
        store
            .apply(company, &changes, &events, Some(&c), now)
            .await?;
    }
    let secs = t.elapsed().as_secs_f64();
    phases.write = secs - phases.read - phases.index - phases.derive;
    Ok((secs, written, phases))
}

/// The same reads and writes without the mapping: read the members, write one constant
/// record per user in batches of `NULL_BATCH`.
async fn null_derivation(
    store: &dyn PortalStore,
    company: Uuid,
    infra: &Infrastructure,
    mirror: &Mirror,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let existing = store.members(company).await?;
    let now = now_micros();
    let mut batch = Vec::with_capacity(NULL_BATCH);
    let mut events = Vec::with_capacity(NULL_BATCH);
    let users: Vec<_> = mirror.users.iter().collect();
    for (i, (id, user)) in users.iter().enumerate() {
        batch.push(MemberChange::Upsert {
            member: TeamMember {
                id: Uuid::now_v7(),
                company,
                email: user.email.clone(),
                display_name: user.display_name.clone(),
                team_role: TeamRole::Other,
                company_permission: CompanyPermission::Member,
                access: vec![Access {
                    infrastructure: infra.id,
                    permission: InfraPermission::Member,
                    source: Source::Odc {
                        identity_user: **id,
                    },
                }],
                phone: None,
                lifetime_username: None,
                development_permissions: false,
                created_by_sync: true,
                create_time: now,
                update_time: now,
                rev: 1,
            },
            expected_rev: None,
        });
        events.push(NewEvent {
            actor: "sync".into(),
            action: "odc_access.granted".into(),
            target: format!("companies/{company}/members/{id}"),
            detail: String::new(),
        });
        if batch.len() == NULL_BATCH || i + 1 == users.len() {
            store.apply(company, &batch, &events, None, now).await?;
            batch.clear();
            events.clear();
        }
    }
    drop(existing);
    Ok(t.elapsed().as_secs_f64())
}

pub(crate) async fn suite(cli: &Cli, out: &Output) -> anyhow::Result<()> {
    let n = cli.users;
    let backend = Backend::new(cli.pg.as_deref(), "portal").await?;
    let store = store(&backend).await?;
    let mirror = mirror(n);
    let base = json!({ "users": n, "backend": backend.name() });
    let expected = mirror
        .users
        .keys()
        .filter(|u| mirror.derive(**u).is_some())
        .count();

    let (null_company, null_infra) = company(store.as_ref(), "null").await?;
    let null_secs = null_derivation(store.as_ref(), null_company, &null_infra, &mirror).await?;
    out.figure(
        "portal_null_derivation_seconds",
        null_secs,
        "s",
        &extra(&base, &json!({ "rows": n })),
    );

    let (company_id, infra) = company(store.as_ref(), "real").await?;
    let (secs, written, phases) = derive(store.as_ref(), company_id, &infra, &mirror, 1).await?;
    let limit = if cli.pg.is_some() { 10.0 } else { 5.0 };
    out.target(
        "portal_full_derivation_seconds",
        secs,
        "s",
        &format!("<= {limit} at 100k users"),
        secs <= limit || n < 100_000,
        &extra(&extra(&base, &json!({ "rows_written": written, "records": expected, "null_seconds": round2(null_secs), "vs_null": round2(null_secs / secs.max(1e-9)) })), &phases.json()),
    );
    out.check(
        written == expected,
        format!("derivation wrote {written} records, expected {expected}"),
    );
    // The read every derivation starts with: all members of the company, decoded.
    let t = Instant::now();
    let stored = store.members(company_id).await?;
    out.figure(
        "portal_members_read_seconds",
        t.elapsed().as_secs_f64(),
        "s",
        &extra(
            &base,
            &json!({ "members": stored.len(), "what": "PortalStore::members of the derived company (SELECT + JSON decode)" }),
        ),
    );
    out.check(
        stored.len() == expected + 1,
        format!("{} members stored, expected {}", stored.len(), expected + 1),
    );

    let (secs, written, phases) = derive(store.as_ref(), company_id, &infra, &mirror, 1).await?;
    out.target(
        "portal_unchanged_rerun_seconds",
        secs,
        "s",
        "< 1, writing nothing",
        secs < 1.0 && written == 0,
        &extra(
            &extra(&base, &json!({ "rows_written": written })),
            &phases.json(),
        ),
    );
    out.check(
        written == 0,
        format!("the unchanged re-run wrote {written} rows"),
    );
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
