//! The seeded organization: which entities the dataset of `n` users has (built from a fixed
//! seed) and what the benchmark knows of it ([`Dataset`]); writing it goes through
//! [`write`].

mod write;

use std::collections::{BTreeSet, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use identity_svc::auth::SERVICE_ACCOUNT_PREFIX;
use identity_svc::domain::model::{
    App, Assignment, Change, EndUserGrant, EndUserRole, Entity, Grant, GrantPhase, Group,
    GroupMember, GroupRole, Organization, Principal, Role, ScopeKey, ServiceAccount, Stage,
    StagePurpose, User, UserState,
};
use identity_svc::domain::names::fmt;
use identity_svc::domain::permissions::catalog::{self, PermissionDef};
use identity_svc::store::{TokenKind, TokenRecord};
use serde_json::json;
use shared::email::Email;
use shared::secrets::{TokenEncoding, hash_token, new_token};
use uuid::Uuid;

use crate::Cli;
use crate::backend::Backend;
use crate::report::Output;
use crate::rng::Rng;
use write::write_seed;

pub(crate) const STAGES: [&str; 3] = ["development", "qa", "production"];
/// Organization management that custom roles never grant: only administrators hold these,
/// which makes them the sparse case of the reverse lookup.
const ADMIN_ONLY: [&str; 4] = [
    "org.manage",
    "api_clients.manage",
    "roles.manage",
    "org.manage_audit_stream",
];

/// What the benchmark knows of the seeded organization.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub(crate) org: Uuid,
    pub(crate) users: Vec<Uuid>,
    /// Custom role ids.
    pub(crate) roles: Vec<String>,
    /// Two custom roles that nobody holds in the seed; the write benchmark assigns them.
    pub(crate) mutation_roles: [String; 2],
    /// Users that are not Administrators (reassigning them never meets the last-administrator
    /// rule).
    pub(crate) non_admins: Vec<Uuid>,
    pub(crate) apps: Vec<Uuid>,
    /// The calling service account's token (holds Administrator at organization scope).
    pub(crate) token: String,
    /// How many entities (changes) the seed wrote.
    entities: usize,
    assignments: usize,
    memberships: usize,
}

impl Dataset {
    pub(crate) fn parent(&self) -> String {
        fmt::org(self.org)
    }
}

pub(crate) fn created(target: String, e: Entity) -> Change {
    Change {
        action: format!("{}.created", e.kind()),
        target,
        before: None,
        after: Some(e),
        affected_users: Vec::new(),
    }
}

pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The seed as it is built: its changes, in order, from one random sequence.
struct Seed {
    rng: Rng,
    org: Uuid,
    now: i64,
    changes: Vec<Change>,
}

/// The entities the users' access is drawn from.
struct Pools {
    /// Custom role ids.
    roles: Vec<String>,
    apps: Vec<Uuid>,
    groups: Vec<Uuid>,
    /// (end-user role, its app).
    end_user_roles: Vec<(Uuid, Uuid)>,
}

/// The seeded users and what they hold.
struct Population {
    users: Vec<Uuid>,
    non_admins: Vec<Uuid>,
    assignments: usize,
    memberships: usize,
}

/// Builds the dataset of `n` users: n/10 groups, clamp(n/100, 10, 1000) custom roles and apps
/// (1k each at 100k), 3 stages, organization-scope, app-scope and group access; and writes it
/// to the backend's identity store (see [`write_seed`]).
pub(crate) async fn seed(backend: &Backend, n: usize) -> anyhow::Result<Dataset> {
    let t0 = Instant::now();
    let mut rng = Rng(0x0DC0_BE4C_0000_0000 ^ n as u64);
    let org = rng.uuid();
    let now = now_micros();
    let mut s = Seed {
        rng,
        org,
        now,
        changes: Vec::with_capacity(n * 5),
    };
    s.organization();
    let (roles, mutation_roles) = s.custom_roles(n);
    let (apps, end_user_roles) = s.apps(n);
    let groups = s.groups(n, &end_user_roles);
    let pools = Pools {
        roles,
        apps,
        groups,
        end_user_roles,
    };
    let people = s.users(n, &pools)?;
    // Assignments replace one another per scope: keep the last one of each (principal, scope),
    // as the state would.
    dedupe_assignments(&mut s.changes);
    let sa = s.service_account();
    eprintln!(
        "bench: built the dataset in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let token = new_token(SERVICE_ACCOUNT_PREFIX, TokenEncoding::Base64Url);
    let record = TokenRecord {
        id: Uuid::now_v7(),
        hash: hash_token(&token),
        kind: TokenKind::ServiceAccount,
        org,
        principal: Principal::ServiceAccount(sa),
        create_time: now,
        expire_time: now + 365 * 24 * 3_600_000_000,
        revoke_time: None,
    };
    let changes = s.changes;
    let t = Instant::now();
    write_seed(backend, org, &changes, &record, now).await?;
    eprintln!(
        "bench: wrote {} entities in {:.1} s",
        changes.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(Dataset {
        org,
        users: people.users,
        roles: pools.roles,
        mutation_roles: [mutation_roles[0].clone(), mutation_roles[1].clone()],
        non_admins: people.non_admins,
        apps: pools.apps,
        token,
        entities: changes.len(),
        assignments: people.assignments,
        memberships: people.memberships,
    })
}

impl Seed {
    /// The organization, its stages and the built-in roles.
    fn organization(&mut self) {
        let (org, now) = (self.org, self.now);
        self.changes.push(created(
            fmt::org(org),
            Entity::Organization(Organization {
                id: org,
                display_name: "Bench".into(),
                create_time: now,
                update_time: now,
                rev: 1,
            }),
        ));
        for (i, key) in STAGES.iter().enumerate() {
            self.changes.push(created(
                fmt::stage(org, key),
                Entity::Stage(Stage {
                    key: (*key).into(),
                    display_name: key.to_uppercase(),
                    order: i as u32,
                    purpose: match i {
                        0 => StagePurpose::Development,
                        2 => StagePurpose::Production,
                        _ => StagePurpose::NonProduction,
                    },
                    rev: 1,
                }),
            ));
        }
        for r in identity_svc::domain::permissions::built_in::built_in_roles(now) {
            self.changes
                .push(created(fmt::role(org, &r.id), Entity::Role(r)));
        }
    }

    /// clamp(n/100, 10, 1000) custom roles of 20 grantable permissions each, and two more that
    /// nobody holds. Returns (roles, the two mutation roles).
    fn custom_roles(&mut self, n: usize) -> (Vec<String>, Vec<String>) {
        let (org, now) = (self.org, self.now);
        let grantable: Vec<&PermissionDef> = catalog::CATALOG
            .iter()
            .filter(|d| !ADMIN_ONLY.contains(&d.key))
            .collect();
        let n_roles = (n / 100).clamp(10, 1000);
        let mut roles = Vec::with_capacity(n_roles);
        let mut mutation_roles = Vec::new();
        for i in 0..n_roles + 2 {
            let id = self.rng.uuid().to_string();
            let grants = self.grants(&grantable);
            self.changes.push(created(
                fmt::role(org, &id),
                Entity::Role(Role {
                    id: id.clone(),
                    display_name: format!("Role {i}"),
                    description: String::new(),
                    built_in: false,
                    all_permissions: false,
                    grants,
                    create_time: now,
                    update_time: now,
                    rev: 1,
                }),
            ));
            if i < n_roles {
                roles.push(id);
            } else {
                mutation_roles.push(id);
            }
        }
        (roles, mutation_roles)
    }

    /// 20 distinct grantable permissions, 30 % of the stage-scopable ones limited to stages.
    fn grants(&mut self, grantable: &[&PermissionDef]) -> Vec<Grant> {
        let rng = &mut self.rng;
        let mut picked = BTreeSet::new();
        while picked.len() < 20 {
            picked.insert(rng.below(grantable.len()));
        }
        picked
            .into_iter()
            .map(|k| {
                let def = grantable[k];
                let stages = (def.stage_scopable && rng.chance(0.3)).then(|| {
                    let mut s = BTreeSet::new();
                    while s.is_empty() {
                        for st in STAGES {
                            if rng.chance(0.5) {
                                s.insert(st.to_owned());
                            }
                        }
                    }
                    s
                });
                Grant {
                    permission: def.key.to_owned(),
                    stages,
                }
            })
            .collect()
    }

    /// clamp(n/100, 10, 1000) apps with two end-user roles each. Returns (apps, (end-user
    /// role, app)).
    fn apps(&mut self, n: usize) -> (Vec<Uuid>, Vec<(Uuid, Uuid)>) {
        let (org, now) = (self.org, self.now);
        let n_apps = (n / 100).clamp(10, 1000);
        let mut apps = Vec::with_capacity(n_apps);
        let mut end_user_roles = Vec::with_capacity(n_apps * 2);
        for i in 0..n_apps {
            let id = self.rng.uuid();
            self.changes.push(created(
                fmt::app(org, id),
                Entity::App(App {
                    id,
                    display_name: format!("App {i}"),
                    create_time: now,
                }),
            ));
            for k in 0..2 {
                let r = self.rng.uuid();
                self.changes.push(created(
                    fmt::end_user_role(org, id, r),
                    Entity::EndUserRole(EndUserRole {
                        id: r,
                        app: id,
                        display_name: format!("End-user role {k}"),
                    }),
                ));
                end_user_roles.push((r, id));
            }
            apps.push(id);
        }
        (apps, end_user_roles)
    }

    /// max(n/10, 10) groups, each with one or two end-user roles.
    fn groups(&mut self, n: usize, end_user_roles: &[(Uuid, Uuid)]) -> Vec<Uuid> {
        let (org, now) = (self.org, self.now);
        let n_groups = (n / 10).max(10);
        let mut groups = Vec::with_capacity(n_groups);
        for i in 0..n_groups {
            let id = self.rng.uuid();
            self.changes.push(created(
                fmt::group(org, id),
                Entity::Group(Group {
                    id,
                    display_name: format!("Group {i}"),
                    description: String::new(),
                    stage: STAGES[self.rng.below(3)].to_owned(),
                    claim_mappings: Vec::new(),
                    create_time: now,
                    update_time: now,
                    rev: 1,
                }),
            ));
            let mine: BTreeSet<(Uuid, Uuid)> = (0..=self.rng.below(2))
                .map(|_| end_user_roles[self.rng.below(end_user_roles.len())])
                .collect();
            for (r, app) in mine {
                self.changes.push(created(
                    fmt::group(org, id),
                    Entity::GroupRole(GroupRole {
                        group: id,
                        end_user_role: r,
                        app,
                    }),
                ));
            }
            groups.push(id);
        }
        groups
    }

    /// `n` users and their access.
    fn users(&mut self, n: usize, pools: &Pools) -> anyhow::Result<Population> {
        let mut people = Population {
            users: Vec::with_capacity(n),
            non_admins: Vec::with_capacity(n),
            assignments: 0,
            memberships: 0,
        };
        for i in 0..n {
            let id = self.user(i)?;
            let admin = self.access(id, pools, &mut people);
            people.users.push(id);
            if !admin {
                people.non_admins.push(id);
            }
        }
        Ok(people)
    }

    /// User `i`, 3 % of them inactive.
    fn user(&mut self, i: usize) -> anyhow::Result<Uuid> {
        let (org, now) = (self.org, self.now);
        let id = self.rng.uuid();
        self.changes.push(created(
            fmt::user(org, id),
            Entity::User(User {
                id,
                email: Some(
                    Email::parse(&format!("user{i:06}@bench.example"))
                        .map_err(anyhow::Error::msg)?,
                ),
                display_name: format!("User {i}"),
                state: if self.rng.chance(0.03) {
                    UserState::Inactive
                } else {
                    UserState::Active
                },
                registered: true,
                create_time: now,
                update_time: now,
                rev: 1,
            }),
        ));
        Ok(id)
    }

    /// The access of user `id`: roles, group memberships, a direct end-user grant. Returns
    /// whether the user is an Administrator.
    fn access(&mut self, id: Uuid, pools: &Pools, people: &mut Population) -> bool {
        let (org, now) = (self.org, self.now);
        let rng = &mut self.rng;
        let p = Principal::User(id);
        let mut admin = false;
        // 80 % hold an organization role: 1 % Administrator, 30 % Developer, the rest custom.
        if rng.chance(0.8) {
            let x = rng.unit();
            admin = x < 0.01;
            let role = if admin {
                "administrator".to_owned()
            } else if x < 0.31 {
                "developer".to_owned()
            } else {
                pools.roles[rng.below(pools.roles.len())].clone()
            };
            self.changes
                .push(assignment(org, p, ScopeKey::Organization, role, now));
            people.assignments += 1;
        }
        // 20 % have one or two app-scope roles.
        if rng.chance(0.2) {
            for _ in 0..=rng.below(2) {
                let app = pools.apps[rng.below(pools.apps.len())];
                let role = pools.roles[rng.below(pools.roles.len())].clone();
                self.changes
                    .push(assignment(org, p, ScopeKey::App(app), role, now));
                people.assignments += 1;
            }
        }
        // Group memberships: 0 to 4 (about 2 on average), skewed towards a few big groups.
        let mut mine = BTreeSet::new();
        for _ in 0..rng.below(5) {
            mine.insert(pools.groups[rng.skewed(pools.groups.len())]);
        }
        for g in mine {
            self.changes.push(created(
                fmt::group(org, g),
                Entity::GroupMember(GroupMember::assigned(g, id)),
            ));
            people.memberships += 1;
        }
        // 10 % have a direct end-user grant.
        if rng.chance(0.1) {
            let (r, app) = pools.end_user_roles[rng.below(pools.end_user_roles.len())];
            self.changes.push(created(
                fmt::user(org, id),
                Entity::EndUserGrant(EndUserGrant {
                    user: id,
                    end_user_role: r,
                    app,
                    stage: STAGES[rng.below(3)].to_owned(),
                }),
            ));
        }
        admin
    }

    /// The calling service account, Administrator at organization scope.
    fn service_account(&mut self) -> Uuid {
        let (org, now) = (self.org, self.now);
        let sa = self.rng.uuid();
        self.changes.push(created(
            fmt::service_account(org, sa),
            Entity::ServiceAccount(ServiceAccount {
                id: sa,
                display_name: "bench".into(),
                create_time: now,
            }),
        ));
        self.changes.push(assignment(
            org,
            Principal::ServiceAccount(sa),
            ScopeKey::Organization,
            "administrator".into(),
            now,
        ));
        sa
    }
}

fn assignment(org: Uuid, p: Principal, scope: ScopeKey, role: String, now: i64) -> Change {
    let target = match p {
        Principal::User(u) => fmt::user(org, u),
        Principal::ServiceAccount(s) => fmt::service_account(org, s),
    };
    created(
        target,
        Entity::Assignment(Assignment {
            principal: p,
            scope,
            role,
            create_time: now,
            period: None,
            phase: GrantPhase::Active,
        }),
    )
}

/// Drops all but the last assignment of each (principal, scope).
fn dedupe_assignments(changes: &mut Vec<Change>) {
    let mut last: HashMap<(Principal, ScopeKey), usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if let Some(Entity::Assignment(a)) = &c.after {
            last.insert((a.principal, a.scope), i);
        }
    }
    let mut i = 0;
    changes.retain(|c| {
        let keep = match &c.after {
            Some(Entity::Assignment(a)) => last.get(&(a.principal, a.scope)) == Some(&i),
            _ => true,
        };
        i += 1;
        keep
    });
}

/// Seeds `n` users into a fresh backend; reports the time.
pub(crate) async fn seeded(
    cli: &Cli,
    out: &Output,
    n: usize,
) -> anyhow::Result<(Backend, Dataset)> {
    let backend = Backend::new(cli.pg.as_deref(), "identity").await?;
    let t = Instant::now();
    let data = seed(&backend, n).await?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: seeded {n} users ({} entities) on {} in {secs:.1} s",
        data.entities,
        backend.name()
    );
    out.figure(
        "seed_seconds",
        secs,
        "s",
        &json!({
            "users": n, "backend": backend.name(), "entities": data.entities,
            "roles": data.roles.len(), "apps": data.apps.len(), "groups": (n / 10).max(10),
            "assignments": data.assignments, "memberships": data.memberships,
        }),
    );
    Ok((backend, data))
}
