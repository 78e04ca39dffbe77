//! The permission catalog: one table, fixed in code, that is the single source for permission
//! checks, role validation, the built-in Developer role and the Customer Portal mapping.
//!
//! Keys are stable; display names are `(category, name)` because names alone are not unique
//! ("Create" exists in two categories). See `PERMISSIONS.md` for the source of every row.

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::LazyLock;

/// Default grant of a permission in the built-in Developer role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeveloperDefault {
    /// Not granted.
    No,
    /// Granted (in every stage when the permission is stage-scopable).
    Yes,
    /// Granted in the Development stage only.
    DevelopmentOnly,
}

/// One row of the catalog.
#[derive(Debug, Clone)]
pub struct PermissionDef {
    /// Stable key, e.g. `asset.change`.
    pub key: &'static str,
    /// Category shown to people, e.g. "Asset management".
    pub category: &'static str,
    /// Name shown to people, e.g. "Change".
    pub name: &'static str,
    /// Can be granted through an app-scope assignment.
    pub app_scopable: bool,
    /// Can be limited to stages, and is then always checked in a stage.
    pub stage_scopable: bool,
    /// Also granted, in the same stages.
    pub implies: &'static [&'static str],
    /// Default in the built-in Developer role.
    pub developer: DeveloperDefault,
    /// Older display names that resolve to this key.
    pub aliases: &'static [&'static str],
}

const fn p(
    key: &'static str,
    category: &'static str,
    name: &'static str,
    app_scopable: bool,
    stage_scopable: bool,
    implies: &'static [&'static str],
    developer: DeveloperDefault,
) -> PermissionDef {
    PermissionDef {
        key,
        category,
        name,
        app_scopable,
        stage_scopable,
        implies,
        developer,
        aliases: &[],
    }
}

use DeveloperDefault::{DevelopmentOnly as DEV, No as NO, Yes as YES};

const AM: &str = "Asset management";
const CM: &str = "Configuration management";
const UAM: &str = "User and access management";
const OM: &str = "Organization management";

/// The catalog in display order.
pub static CATALOG: &[PermissionDef] = &[
    p("asset.open", AM, "Open", true, true, &[], YES),
    p("asset.create", AM, "Create", false, false, &[], YES),
    PermissionDef {
        aliases: &["Debug Application"],
        ..p("asset.debug", AM, "Debug", true, true, &[], DEV)
    },
    PermissionDef {
        aliases: &["Change Application"],
        ..p(
            "asset.change",
            AM,
            "Change",
            true,
            true,
            &["asset.debug", "release.deploy_assets"],
            DEV,
        )
    },
    p("asset.delete", AM, "Delete", true, true, &[], NO),
    p("mentor.use", "Mentor", "Use", false, false, &[], YES),
    p(
        "portfolio.manage",
        "Portfolio management",
        "Manage portfolio",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "portfolio.manage_stages",
        "Portfolio management",
        "Manage stages",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "portfolio.view_stage",
        "Portfolio management",
        "View stage",
        false,
        true,
        &[],
        YES,
    ),
    PermissionDef {
        aliases: &["Deploy Application"],
        // Developer gets it in Development through asset.change.
        ..p(
            "release.deploy_assets",
            "Release management",
            "Deploy assets",
            true,
            true,
            &[],
            NO,
        )
    },
    p(
        "release.release",
        "Release management",
        "Release",
        true,
        false,
        &[],
        NO,
    ),
    p(
        "monitoring.asset_logs",
        "Monitoring",
        "Access asset logs and traces",
        true,
        true,
        &[],
        DEV,
    ),
    p(
        "monitoring.user_info",
        "Monitoring",
        "Access user information",
        true,
        true,
        &[],
        NO,
    ),
    p(
        "analyze.manage_findings",
        "Analyze",
        "Manage code quality findings",
        true,
        false,
        &["analyze.view_findings"],
        NO,
    ),
    p(
        "analyze.view_findings",
        "Analyze",
        "View code quality findings",
        true,
        false,
        &[],
        YES,
    ),
    p(
        "analyze.view_evaluations",
        "Analyze",
        "View evaluations",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "analyze.manage_evaluations",
        "Analyze",
        "Manage evaluations",
        false,
        false,
        &["analyze.view_evaluations"],
        NO,
    ),
    p(
        "config.view",
        CM,
        "View configurations",
        true,
        true,
        &[],
        DEV,
    ),
    p(
        "config.edit_asset",
        CM,
        "Edit asset configurations",
        true,
        true,
        &["config.view"],
        DEV,
    ),
    p(
        "config.connections",
        CM,
        "Configure connections",
        false,
        true,
        &[],
        NO,
    ),
    p("config.domains", CM, "Manage domains", false, true, &[], NO),
    p(
        "config.email",
        CM,
        "Manage Email configurations",
        false,
        true,
        &[],
        NO,
    ),
    p("config.csp", CM, "Manage CSP", false, true, &[], NO),
    p(
        "config.analytics_stream",
        CM,
        "Manage app analytics stream",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "config.ip_filters",
        CM,
        "Manage IP filters",
        false,
        true,
        &[],
        NO,
    ),
    p(
        "config.private_gateways",
        CM,
        "Manage private gateways",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "config.agent_guardrails",
        CM,
        "Manage agent guardrails",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "connection.create",
        "Connection management",
        "Create",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "connection.change",
        "Connection management",
        "Change",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "connection.delete",
        "Connection management",
        "Delete",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "users.view_members",
        UAM,
        "View members",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "users.manage",
        UAM,
        "Manage users",
        false,
        false,
        &["users.view_members", "end_users.view"],
        NO,
    ),
    p(
        "users.manage_member_access",
        UAM,
        "Manage member access",
        false,
        false,
        &["users.view_members"],
        NO,
    ),
    p(
        "roles.manage",
        UAM,
        "Manage organization roles",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "auth.manage",
        UAM,
        "Manage authentication",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "api_clients.manage",
        UAM,
        "Manage API clients",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "end_users.view",
        "End-user management",
        "View end-users",
        true,
        true,
        &[],
        DEV,
    ),
    p(
        "end_users.manage_access",
        "End-user management",
        "Manage end-user access",
        true,
        true,
        &["end_users.view"],
        DEV,
    ),
    p(
        "end_users.manage_groups",
        "End-user management",
        "Manage end-user groups",
        false,
        true,
        &[],
        NO,
    ),
    p(
        "org.manage",
        OM,
        "Manage organization",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "org.view_audit_trail",
        OM,
        "View audit trail",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "org.manage_audit_stream",
        OM,
        "Manage audit trail stream",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "org.manage_o11",
        OM,
        "Manage O11 infrastructures",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "forge.install",
        "Forge",
        "Install/Update assets",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "forge.submit",
        "Forge",
        "Submit/Edit assets",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "support.open_cases",
        "Support",
        "Open support cases",
        false,
        false,
        &[],
        YES,
    ),
    p(
        "support.view_all_cases",
        "Support",
        "View all support cases",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "subscription.manage",
        "Subscriptions",
        "Manage subscription",
        false,
        false,
        &["subscription.view"],
        NO,
    ),
    p(
        "subscription.view",
        "Subscriptions",
        "View subscription",
        false,
        false,
        &[],
        NO,
    ),
    p(
        "maintenance.view_updates",
        "Maintenance",
        "View platform updates",
        true,
        false,
        &[],
        NO,
    ),
    p(
        "maintenance.manage_updates",
        "Maintenance",
        "Manage platform updates",
        false,
        true,
        &["maintenance.view_updates"],
        NO,
    ),
];

/// Well-known keys used by the service itself.
pub mod keys {
    #![allow(missing_docs)]
    pub const USERS_VIEW_MEMBERS: &str = "users.view_members";
    pub const USERS_MANAGE: &str = "users.manage";
    pub const USERS_MANAGE_MEMBER_ACCESS: &str = "users.manage_member_access";
    pub const ROLES_MANAGE: &str = "roles.manage";
    pub const API_CLIENTS_MANAGE: &str = "api_clients.manage";
    pub const END_USERS_VIEW: &str = "end_users.view";
    pub const END_USERS_MANAGE_ACCESS: &str = "end_users.manage_access";
    pub const END_USERS_MANAGE_GROUPS: &str = "end_users.manage_groups";
    pub const PORTFOLIO_MANAGE_STAGES: &str = "portfolio.manage_stages";
    pub const ASSET_CREATE: &str = "asset.create";
    pub const ASSET_DELETE: &str = "asset.delete";
    pub const ASSET_CHANGE: &str = "asset.change";
    pub const ORG_MANAGE: &str = "org.manage";
    pub const ORG_VIEW_AUDIT_TRAIL: &str = "org.view_audit_trail";
}

/// Position of a permission in [`CATALOG`]: the small integer the engine works with.
pub type PermIndex = usize;

/// A set of catalog permissions, one bit per [`PermIndex`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermSet(u128);

impl PermSet {
    /// Whether `i` is in the set.
    pub fn contains(self, i: PermIndex) -> bool {
        i < 128 && self.0 & (1 << i) != 0
    }

    fn insert(&mut self, i: PermIndex) {
        self.0 |= 1 << i;
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// FxHash (rustc's hasher): keys are short, fixed and not attacker-chosen (the table holds only
/// catalog keys, probing with anything else just misses), so SipHash's cost buys nothing.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The permissions whose closure contains one target, for matching grant keys quickly: a key
/// whose length is not one of theirs is rejected with one bit test, the others by comparing
/// with the (one to three) keys.
#[derive(Debug, Default)]
pub struct Sources {
    /// Bit `n` set: some key has length `n` (keys of 64 bytes or more never match).
    lengths: u64,
    /// The keys and their indexes, the target first.
    keys: Vec<(&'static str, PermIndex)>,
}

impl Sources {
    /// Which of these permissions `key` is.
    pub fn find(&self, key: &str) -> Option<PermIndex> {
        let n = key.len();
        if n >= 64 || (self.lengths >> n) & 1 == 0 {
            return None;
        }
        self.keys.iter().find(|(k, _)| *k == key).map(|&(_, i)| i)
    }
}

/// The keys reachable from one permission, each with its implication chain.
type Closure = Vec<(&'static str, Vec<&'static str>)>;

/// Everything derived from [`CATALOG`] once: the key index, the implication closures and their
/// chains, and for every permission the ones that imply it.
struct Tables {
    by_key: HashMap<&'static str, PermIndex, BuildHasherDefault<KeyHasher>>,
    /// `closures[i]`: every key reachable from `i` with its chain, breadth first.
    closures: Vec<Closure>,
    /// `chains[from][to]`: the shortest chain `[from, ..., to]`, when `to` is reachable.
    chains: Vec<Vec<Option<Box<[&'static str]>>>>,
    /// `sources[t]`: every permission whose closure contains `t` (`t` first), in catalog order
    /// after it.
    sources: Vec<Vec<PermIndex>>,
    /// Bit sets of `sources`.
    source_sets: Vec<PermSet>,
    /// `sources` for matching keys.
    source_keys: Vec<Sources>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    assert!(
        CATALOG.len() <= 128,
        "PermSet holds at most 128 permissions"
    );
    let by_key: HashMap<&'static str, PermIndex, BuildHasherDefault<KeyHasher>> = CATALOG
        .iter()
        .enumerate()
        .map(|(i, d)| (d.key, i))
        .collect();
    let closures: Vec<Closure> = CATALOG
        .iter()
        .map(|d| {
            let mut out: Closure = vec![(d.key, vec![d.key])];
            let mut seen: BTreeSet<&str> = BTreeSet::from([d.key]);
            let mut i = 0;
            while i < out.len() {
                let (at, chain) = out[i].clone();
                let implies = by_key.get(at).map_or(&[][..], |&x| CATALOG[x].implies);
                for next in implies {
                    if seen.insert(next) {
                        let mut c = chain.clone();
                        c.push(next);
                        out.push((next, c));
                    }
                }
                i += 1;
            }
            out
        })
        .collect();
    let n = CATALOG.len();
    let mut chains: Vec<Vec<Option<Box<[&'static str]>>>> = vec![vec![None; n]; n];
    let mut source_sets = vec![PermSet::default(); n];
    for (from, closure) in closures.iter().enumerate() {
        for (reached, chain) in closure {
            if let Some(&to) = by_key.get(reached) {
                chains[from][to] = Some(chain.clone().into_boxed_slice());
                source_sets[to].insert(from);
            }
        }
    }
    let sources: Vec<Vec<PermIndex>> = (0..n)
        .map(|t| {
            std::iter::once(t)
                .chain((0..n).filter(|&s| s != t && source_sets[t].contains(s)))
                .collect()
        })
        .collect();
    let source_keys = sources
        .iter()
        .map(|list| Sources {
            lengths: list
                .iter()
                .map(|&s| CATALOG[s].key.len())
                .filter(|&len| len < 64)
                .fold(0, |m, len| m | (1 << len)),
            keys: list.iter().map(|&s| (CATALOG[s].key, s)).collect(),
        })
        .collect();
    Tables {
        by_key,
        closures,
        chains,
        sources,
        source_sets,
        source_keys,
    }
});

/// The index of a key.
pub fn index(key: &str) -> Option<PermIndex> {
    TABLES.by_key.get(key).copied()
}

/// The index of a catalog row (any `&PermissionDef` this module handed out).
pub fn index_of(def: &PermissionDef) -> PermIndex {
    // Rows handed out by this module point into CATALOG: their position is their address.
    let offset = std::ptr::from_ref(def)
        .addr()
        .wrapping_sub(CATALOG.as_ptr().addr());
    let i = offset / std::mem::size_of::<PermissionDef>();
    if i < CATALOG.len() && std::ptr::eq(&raw const CATALOG[i], def) {
        return i;
    }
    // A copy of a row: by key. Every `PermissionDef` comes from CATALOG, so this finds it.
    index(def.key).unwrap_or_else(|| panic!("{} is not a catalog permission", def.key))
}

/// Looks a permission up by key.
pub fn get(key: &str) -> Option<&'static PermissionDef> {
    index(key).map(|i| &CATALOG[i])
}

/// Resolves a key, a seed-era alias ("Change Application") or a `category/name` pair.
pub fn resolve(text: &str) -> Option<&'static PermissionDef> {
    get(text).or_else(|| {
        CATALOG.iter().find(|d| {
            d.aliases.iter().any(|a| a.eq_ignore_ascii_case(text))
                || text.split_once('/').is_some_and(|(c, n)| {
                    c.eq_ignore_ascii_case(d.category) && n.eq_ignore_ascii_case(d.name)
                })
        })
    })
}

/// Every key reachable from `key` through implication (including `key`), each with the chain
/// that leads to it (`[key, ..., reached]`). Breadth first, so each chain is a shortest one.
pub fn closure(key: &str) -> &'static [(&'static str, Vec<&'static str>)] {
    index(key).map_or(&[], |i| TABLES.closures[i].as_slice())
}

/// The keys reachable from `from` (including itself) with their chains, by index.
pub fn closure_at(from: PermIndex) -> &'static [(&'static str, Vec<&'static str>)] {
    TABLES.closures.get(from).map_or(&[], Vec::as_slice)
}

/// The shortest implication chain `[from, ..., to]`, if `from` implies `to` (or is `to`).
pub fn chain(from: PermIndex, to: PermIndex) -> Option<&'static [&'static str]> {
    TABLES.chains.get(from)?.get(to)?.as_deref()
}

/// Every permission whose closure contains `target`: `target` itself first, then the ones that
/// imply it, in catalog order.
pub fn sources(target: PermIndex) -> &'static [PermIndex] {
    TABLES.sources.get(target).map_or(&[], Vec::as_slice)
}

/// [`sources`] as a set.
pub fn source_set(target: PermIndex) -> PermSet {
    TABLES.source_sets.get(target).copied().unwrap_or_default()
}

/// [`sources`] for matching grant keys (see [`Sources::find`]).
pub fn sources_of(target: PermIndex) -> &'static Sources {
    static NONE: Sources = Sources {
        lengths: 0,
        keys: Vec::new(),
    };
    TABLES.source_keys.get(target).unwrap_or(&NONE)
}

/// Which of `sources(target)` a grant of `key` is, without hashing: `key` is compared with
/// the (one to three) keys that imply `target`, nearly always rejected on its length.
pub fn source_for(target: PermIndex, key: &str) -> Option<PermIndex> {
    sources_of(target).find(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_implication_names_a_catalog_key_and_keys_are_unique() {
        let keys: BTreeSet<&str> = CATALOG.iter().map(|d| d.key).collect();
        assert_eq!(keys.len(), CATALOG.len());
        for d in CATALOG {
            for i in d.implies {
                assert!(keys.contains(i), "{} implies unknown {i}", d.key);
            }
        }
    }

    #[test]
    fn display_names_are_unique_only_with_their_category() {
        let pairs: BTreeSet<(&str, &str)> = CATALOG.iter().map(|d| (d.category, d.name)).collect();
        assert_eq!(pairs.len(), CATALOG.len());
        assert!(CATALOG.iter().filter(|d| d.name == "Create").count() >= 2);
        assert_eq!(
            resolve("Connection management/Create").map(|d| d.key),
            Some("connection.create")
        );
    }

    #[test]
    fn seed_era_names_resolve_to_current_keys() {
        assert_eq!(
            resolve("Change Application").map(|d| d.key),
            Some("asset.change")
        );
        assert_eq!(
            resolve("Debug Application").map(|d| d.key),
            Some("asset.debug")
        );
        assert_eq!(
            resolve("Deploy Application").map(|d| d.key),
            Some("release.deploy_assets")
        );
    }

    #[test]
    fn change_implies_exactly_debug_and_deploy() {
        let reached: BTreeSet<&str> = closure("asset.change").iter().map(|(k, _)| *k).collect();
        assert_eq!(
            reached,
            BTreeSet::from(["asset.change", "asset.debug", "release.deploy_assets"])
        );
        let chain = &closure("asset.change")
            .iter()
            .find(|(k, _)| *k == "asset.debug")
            .unwrap()
            .1;
        assert_eq!(chain, &vec!["asset.change", "asset.debug"]);
    }

    #[test]
    fn indexes_chains_and_sources_agree_with_the_closures() {
        for (i, d) in CATALOG.iter().enumerate() {
            assert_eq!(index(d.key), Some(i));
            assert_eq!(index_of(d), i);
            // A copy of the row is found by its key.
            assert_eq!(index_of(&d.clone()), i);
            assert!(std::ptr::eq(get(d.key).unwrap(), d));
        }
        assert_eq!(index("no.such"), None);
        assert_eq!(index(""), None);
        for (from, d) in CATALOG.iter().enumerate() {
            let reached: BTreeSet<&str> = closure(d.key).iter().map(|(k, _)| *k).collect();
            for (to, t) in CATALOG.iter().enumerate() {
                let expected = closure(d.key)
                    .iter()
                    .find(|(k, _)| *k == t.key)
                    .map(|(_, c)| c.as_slice());
                assert_eq!(chain(from, to), expected, "{} -> {}", d.key, t.key);
                assert_eq!(reached.contains(t.key), sources(to).contains(&from));
                assert_eq!(reached.contains(t.key), source_set(to).contains(from));
                assert_eq!(
                    source_for(to, d.key),
                    reached.contains(t.key).then_some(from)
                );
            }
        }
        for (t, d) in CATALOG.iter().enumerate() {
            assert_eq!(sources(t)[0], t, "{} comes first among its sources", d.key);
            assert_eq!(source_for(t, "no.such"), None);
            assert_eq!(source_for(t, &"x".repeat(70)), None);
            assert_eq!(source_for(t, &d.key.to_uppercase()), None);
        }
        let debug = index("asset.debug").unwrap();
        let change = index("asset.change").unwrap();
        assert_eq!(sources(debug), &[debug, change]);
        assert!(!source_set(change).contains(debug));
    }
}
