//! Tests of the permission engine: decisions, effective permissions, holders, against a brute-force model.

use std::collections::BTreeSet;

use shared::email::Email;
use uuid::Uuid;

use super::*;
use crate::domain::model::{Assignment, Grant, Organization, Stage, StagePurpose, User, UserState};
use crate::domain::state::OrgState;

/// The time the checks are made at (no grant here has a period, except where a test says).
const NOW: Micros = 1_000_000;

fn org() -> OrgState {
    let mut st = OrgState::new(Organization {
        id: Uuid::new_v4(),
        display_name: "o".into(),
        create_time: 0,
        update_time: 0,
        rev: 1,
    });
    for (i, (k, p)) in [
        ("development", StagePurpose::Development),
        ("qa", StagePurpose::NonProduction),
        ("production", StagePurpose::Production),
    ]
    .into_iter()
    .enumerate()
    {
        st.insert(crate::domain::model::Entity::Stage(Stage {
            key: k.into(),
            display_name: k.into(),
            order: u32::try_from(i).unwrap(),
            purpose: p,
            rev: 1,
        }));
    }
    for r in crate::domain::permissions::built_in::built_in_roles(0) {
        st.insert(crate::domain::model::Entity::Role(r));
    }
    st
}

fn user(st: &mut OrgState, state: UserState) -> Principal {
    let id = Uuid::new_v4();
    st.insert(crate::domain::model::Entity::User(User {
        id,
        email: Some(Email::parse(&format!("{id}@x.com")).unwrap()),
        display_name: String::new(),
        state,
        registered: true,
        create_time: 0,
        update_time: 0,
        rev: 1,
    }));
    Principal::User(id)
}

fn role(st: &mut OrgState, grants: Vec<Grant>) -> String {
    let id = Uuid::new_v4().to_string();
    st.insert(crate::domain::model::Entity::Role(Role {
        id: id.clone(),
        display_name: id.clone(),
        description: String::new(),
        built_in: false,
        all_permissions: false,
        grants,
        create_time: 0,
        update_time: 0,
        rev: 1,
    }));
    id
}

fn assign(st: &mut OrgState, p: Principal, role: &str, scope: ScopeKey) {
    st.insert(crate::domain::model::Entity::Assignment(Assignment {
        principal: p,
        scope,
        role: role.into(),
        create_time: 0,
        period: None,
        phase: crate::domain::model::GrantPhase::Active,
    }));
}

fn in_stage(st: &OrgState, p: Principal, stage: &str) -> BTreeSet<&'static str> {
    effective(st, p, NOW)
        .into_iter()
        .filter(|e| e.stages.as_ref().is_none_or(|s| s.contains(stage)))
        .map(|e| e.permission)
        .collect()
}

#[test]
fn change_in_development_gives_exactly_change_debug_deploy_there_and_nothing_elsewhere() {
    let mut st = org();
    let r = role(
        &mut st,
        vec![Grant {
            permission: "asset.change".into(),
            stages: Some(BTreeSet::from(["development".into()])),
        }],
    );
    let u = user(&mut st, UserState::Active);
    assign(&mut st, u, &r, ScopeKey::Organization);
    assert_eq!(
        in_stage(&st, u, "development"),
        BTreeSet::from(["asset.change", "asset.debug", "release.deploy_assets"])
    );
    assert!(in_stage(&st, u, "qa").is_empty());
    assert!(in_stage(&st, u, "production").is_empty());
    let d = decide(
        &st,
        u,
        catalog::get("asset.debug").unwrap(),
        Some("development"),
        None,
        NOW,
    );
    assert_eq!(d.reasons[0].chain, vec!["asset.change", "asset.debug"]);
}

#[test]
fn app_scope_adds_only_app_scopable_permissions_on_that_app() {
    let mut st = org();
    let u = user(&mut st, UserState::Active);
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    assign(&mut st, u, "developer", ScopeKey::Organization);
    assign(&mut st, u, "administrator", ScopeKey::App(a));
    let edit = catalog::get("config.edit_asset").unwrap();
    assert!(decide(&st, u, edit, Some("production"), Some(a), NOW).allowed);
    assert!(!decide(&st, u, edit, Some("production"), Some(b), NOW).allowed);
    assert!(!has(&st, u, "users.manage", None, Some(a), NOW));
}

#[test]
fn inactive_principals_have_nothing() {
    let mut st = org();
    let u = user(&mut st, UserState::Inactive);
    assign(&mut st, u, "administrator", ScopeKey::Organization);
    assert!(!has(&st, u, "users.manage", None, None, NOW));
    assert!(effective(&st, u, NOW).is_empty());
}

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const STAGES: [&str; 3] = ["development", "qa", "production"];

/// A random organization: built-in and custom roles (random grants, some limited to random
/// stages, some of unknown keys, one role deleted while still assigned), users in every
/// state, service accounts, organization- and app-scope assignments.
fn random_org(rng: &mut Rng) -> (OrgState, Vec<Uuid>) {
    let mut st = org();
    let apps: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut roles: Vec<String> = vec!["administrator".into(), "developer".into()];
    for _ in 0..25 {
        let grants = (0..=rng.below(8))
            .map(|_| {
                let permission = if rng.chance(3) {
                    "no.such_permission".to_owned()
                } else {
                    catalog::CATALOG[rng.below(catalog::CATALOG.len())]
                        .key
                        .to_owned()
                };
                let stages = rng.chance(40).then(|| {
                    STAGES
                        .iter()
                        .filter(|_| rng.chance(50))
                        .map(|s| (*s).to_owned())
                        .collect()
                });
                Grant { permission, stages }
            })
            .collect();
        roles.push(role(&mut st, grants));
    }
    let mut principals = Vec::new();
    for _ in 0..300 {
        let state = match rng.below(10) {
            0 => UserState::Inactive,
            1 => UserState::Invited,
            _ => UserState::Active,
        };
        principals.push(user(&mut st, state));
    }
    for _ in 0..20 {
        let id = Uuid::new_v4();
        st.insert(crate::domain::model::Entity::ServiceAccount(
            crate::domain::model::ServiceAccount {
                id,
                display_name: id.to_string(),
                create_time: 0,
            },
        ));
        principals.push(Principal::ServiceAccount(id));
    }
    for p in &principals {
        // Skewed towards a few roles, as real organizations are.
        let pick = |rng: &mut Rng| {
            if rng.chance(50) {
                roles[rng.below(4)].clone()
            } else {
                roles[rng.below(roles.len())].clone()
            }
        };
        if rng.chance(80) {
            let r = pick(rng);
            assign(&mut st, *p, &r, ScopeKey::Organization);
        }
        for _ in 0..rng.below(3) {
            let r = pick(rng);
            assign(&mut st, *p, &r, ScopeKey::App(apps[rng.below(apps.len())]));
        }
    }
    // A role deleted while still held: its assignments grant nothing.
    let gone = roles[5].clone();
    let before = st.roles.get(&gone).cloned().unwrap();
    st.apply(&crate::domain::model::Change {
        action: "role.deleted".into(),
        target: gone,
        before: Some(crate::domain::model::Entity::Role(before)),
        after: None,
        affected_users: Vec::new(),
    });
    (st, apps)
}

/// The definition: every principal with an assignment, in order, decided one by one.
fn brute_force_holders<'a>(
    st: &'a OrgState,
    perm: &'static PermissionDef,
    stage: Option<&'a str>,
    app: Option<Uuid>,
) -> Vec<(Principal, Vec<Reason<'a>>)> {
    let mut out = Vec::new();
    for p in st.assignments.keys() {
        let d = decide(st, *p, perm, stage, app, NOW);
        if d.allowed {
            out.push((*p, d.reasons));
        }
    }
    out
}

#[test]
fn holders_match_a_brute_force_walk_on_random_states_page_by_page() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut nonempty = 0;
    for _ in 0..4 {
        let (st, apps) = random_org(&mut rng);
        let mut queries: Vec<(&'static PermissionDef, Option<&str>, Option<Uuid>)> = Vec::new();
        for def in catalog::CATALOG {
            let stages: Vec<Option<&str>> = if def.stage_scopable {
                STAGES.iter().map(|s| Some(*s)).collect()
            } else {
                vec![None]
            };
            for stage in stages {
                queries.push((def, stage, None));
                queries.push((def, stage, Some(apps[rng.below(apps.len())])));
                queries.push((def, stage, Some(Uuid::new_v4())));
            }
        }
        for (perm, stage, app) in queries {
            let all = brute_force_holders(&st, perm, stage, app);
            if !all.is_empty() {
                nonempty += 1;
            }
            let (whole, more) = holders(&st, perm, stage, app, None, usize::MAX, NOW);
            assert_eq!(whole, all, "{} {stage:?} {app:?}", perm.key);
            assert!(!more);
            for limit in [1, 2, 7, 100] {
                let mut after = None;
                let mut seen = Vec::new();
                loop {
                    let (page, more) = holders(&st, perm, stage, app, after, limit, NOW);
                    assert!(page.len() <= limit);
                    // The definition of one page: the first `limit` after the cursor,
                    // and "more" when one more exists.
                    let rest = &all[all.partition_point(|(p, _)| after.is_some_and(|a| *p <= a))..];
                    assert_eq!(page, rest[..rest.len().min(limit)], "{}", perm.key);
                    assert_eq!(more, rest.len() > limit, "{}", perm.key);
                    seen.extend(page.iter().cloned());
                    if !more {
                        break;
                    }
                    after = page.last().map(|(p, _)| *p);
                }
                assert_eq!(seen, all, "{} paged by {limit}", perm.key);
            }
            // A cursor that is not a holder (nor even a principal) also works.
            let stranger = Principal::User(Uuid::new_v4());
            let (page, _) = holders(&st, perm, stage, app, Some(stranger), 5, NOW);
            let expected: Vec<_> = all
                .iter()
                .filter(|(p, _)| *p > stranger)
                .take(5)
                .cloned()
                .collect();
            assert_eq!(page, expected);
        }
    }
    // The random states must exercise the interesting case, not only empty answers.
    assert!(nonempty > 100, "only {nonempty} queries had holders");
}

/// The answers that are not `decide` itself agree with their definitions through `decide`
/// and `effective`, on random states.
#[test]
fn shortcuts_agree_with_decide_and_effective_on_random_states() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let (mut allowed, mut refused) = (0, 0);
    for _ in 0..3 {
        let (st, apps) = random_org(&mut rng);
        let principals: Vec<Principal> = st
            .users
            .keys()
            .map(|u| Principal::User(*u))
            .chain(
                st.service_accounts
                    .keys()
                    .map(|s| Principal::ServiceAccount(*s)),
            )
            .chain([Principal::User(Uuid::new_v4())])
            .collect();
        for p in principals {
            let eff = effective(&st, p, NOW);
            for def in catalog::CATALOG {
                let stage = def.stage_scopable.then(|| STAGES[rng.below(3)]);
                let app = rng.chance(50).then(|| apps[rng.below(apps.len())]);
                let d = decide(&st, p, def, stage, app, NOW);
                assert_eq!(has(&st, p, def.key, stage, app, NOW), d.allowed);
                assert_eq!(d.allowed, !d.reasons.is_empty());
                assert_eq!(d.allowed, d.denial.is_none());
                if d.allowed {
                    allowed += 1;
                } else {
                    refused += 1;
                }
                assert_eq!(
                    has_in_any_stage(&st, p, def.key, NOW),
                    eff.iter().any(|e| e.permission == def.key),
                    "{p:?} {}",
                    def.key
                );
                for s in STAGES {
                    assert_eq!(
                        has_anywhere_in_stage(&st, p, def.key, s, NOW),
                        eff.iter().any(|e| e.permission == def.key
                            && e.stages.as_ref().is_none_or(|x| x.contains(s))),
                        "{p:?} {} {s}",
                        def.key
                    );
                }
            }
        }
    }
    assert!(
        allowed > 500 && refused > 500,
        "{allowed} allowed, {refused} refused"
    );
}

#[test]
fn denials_say_why() {
    let mut st = org();
    let u = user(&mut st, UserState::Active);
    let off = user(&mut st, UserState::Inactive);
    let nobody = Principal::User(Uuid::new_v4());
    let app = Uuid::nil();
    let def = catalog::get("asset.open").unwrap();
    let why = |p| {
        decide(&st, p, def, Some("qa"), Some(app), NOW)
            .denial
            .map(|d| d.to_string())
    };
    assert_eq!(
        why(u).as_deref(),
        Some(
            "no assignment grants asset.open in stage qa on app \
             00000000-0000-0000-0000-000000000000"
        )
    );
    assert_eq!(why(off).as_deref(), Some("principal is not ACTIVE"));
    let no_app = decide(&st, u, def, Some("qa"), None, NOW).denial.unwrap();
    assert_eq!(
        no_app.message(),
        "no assignment grants asset.open in stage qa"
    );
    let any = Uuid::new_v4();
    let create = catalog::get("asset.create").unwrap();
    let d = decide(&st, u, create, None, Some(any), NOW).denial.unwrap();
    assert_eq!(
        d.message(),
        format!("no assignment grants asset.create on app {any}")
    );
    assert_eq!(why(nobody).as_deref(), Some("principal does not exist"));
}

#[test]
fn a_time_bound_grant_counts_only_while_active_and_before_its_end() {
    use crate::domain::model::{Entity, GrantPeriod, GrantPhase};
    let mut st = org();
    let u = user(&mut st, UserState::Active);
    let grant = |phase| {
        Entity::Assignment(Assignment {
            principal: u,
            scope: ScopeKey::Organization,
            role: "developer".into(),
            create_time: 0,
            period: Some(GrantPeriod {
                start: Some(100),
                end: Some(200),
            }),
            phase,
        })
    };
    let def = catalog::get("asset.debug").unwrap();
    let dev = Some("development");
    let holds = |st: &OrgState, now| {
        let checked = decide(st, u, def, dev, None, now).allowed;
        let held = !holders(st, def, dev, None, None, 10, now).0.is_empty();
        let listed = !effective(st, u, now).is_empty();
        assert_eq!((checked, held, listed), (checked, checked, checked));
        checked
    };
    // SCHEDULED: nothing, even once the clock passed the start (the event decides).
    st.insert(grant(GrantPhase::Scheduled));
    assert!(!holds(&st, 50));
    assert!(!holds(&st, 150));
    // ACTIVE: inside the period only; at the end nothing, even before the ending event.
    st.insert(grant(GrantPhase::Active));
    assert!(holds(&st, 150));
    assert!(has_in_any_stage(&st, u, "asset.debug", 199));
    assert!(!holds(&st, 200));
    assert!(!has_anywhere_in_stage(
        &st,
        u,
        "asset.debug",
        "development",
        200
    ));
    // EXPIRED: nothing.
    st.insert(grant(GrantPhase::Expired));
    assert!(!holds(&st, 150));
}
