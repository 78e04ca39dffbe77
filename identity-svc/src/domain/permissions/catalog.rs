//! The permission catalog: one table, fixed in code, that is the single source for permission
//! checks, role validation, the built-in Developer role and the Customer Portal mapping.
//!
//! Keys are stable; display names are `(category, name)` because names alone are not unique
//! ("Create" exists in two categories). See `PERMISSIONS.md` for the source of every row.
//! This module also looks rows up (by key, index, alias or `category/name`); what follows from
//! the `implies` column (closures, chains, sources) is derived in `implication.rs`.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::LazyLock;

use super::key_hasher::KeyHasher;

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
    pub const AUTH_MANAGE: &str = "auth.manage";
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

/// Catalog keys to their index, built once.
static BY_KEY: LazyLock<HashMap<&'static str, PermIndex, BuildHasherDefault<KeyHasher>>> =
    LazyLock::new(|| {
        CATALOG
            .iter()
            .enumerate()
            .map(|(i, d)| (d.key, i))
            .collect()
    });

/// The index of a key.
pub fn index(key: &str) -> Option<PermIndex> {
    BY_KEY.get(key).copied()
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

#[cfg(test)]
mod tests;
