//! The built-in roles, Administrator and Developer, as the catalog defines them.

use std::collections::BTreeSet;

use super::catalog::{self, DeveloperDefault};
use crate::domain::model::{Grant, Micros, Role};
use crate::domain::names::{ADMINISTRATOR, DEVELOPER};

/// Administrator and Developer as defined by the catalog.
pub fn built_in_roles(now: Micros) -> [Role; 2] {
    let admin = Role {
        id: ADMINISTRATOR.into(),
        display_name: "Administrator".into(),
        description: "Every permission in every stage on every app.".into(),
        built_in: true,
        all_permissions: true,
        grants: catalog::CATALOG
            .iter()
            .map(|p| Grant {
                permission: p.key.into(),
                stages: None,
            })
            .collect(),
        create_time: now,
        update_time: now,
        rev: 1,
    };
    let developer = Role {
        id: DEVELOPER.into(),
        display_name: "Developer".into(),
        description: "Builds apps: full access in Development, read access elsewhere.".into(),
        built_in: true,
        all_permissions: false,
        grants: catalog::CATALOG
            .iter()
            .filter_map(|p| match p.developer {
                DeveloperDefault::No => None,
                DeveloperDefault::Yes => Some(Grant {
                    permission: p.key.into(),
                    stages: None,
                }),
                DeveloperDefault::DevelopmentOnly => Some(Grant {
                    permission: p.key.into(),
                    stages: Some(BTreeSet::from(["development".to_owned()])),
                }),
            })
            .collect(),
        create_time: now,
        update_time: now,
        rev: 1,
    };
    [admin, developer]
}
