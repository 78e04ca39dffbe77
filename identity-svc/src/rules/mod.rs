//! The rules of each resource: every mutation of an organization, in domain types, one file per
//! resource. Each runs inside `Core::mutate` on a [`Draft`]: it validates against the state,
//! then records changes (and credential changes); on any error nothing is committed.
//!
//! Rules call each other only downwards (`organizations` → `invitations` → `users` →
//! `access`/`groups`/`identity_providers` → `lookups`; `external_sign_in` uses `invitations`
//! and `identity_providers`); they never reach the gRPC layer.
//!
//! [`Draft`]: crate::core::Draft

pub mod access;
pub mod apps;
pub mod external_sign_in;
pub mod group_mappings;
pub mod groups;
pub mod identity_providers;
pub mod invitations;
pub mod lookups;
pub mod organizations;
pub mod roles;
pub mod service_accounts;
pub mod stages;
pub mod users;
