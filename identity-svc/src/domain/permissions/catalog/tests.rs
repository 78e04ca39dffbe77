//! Tests of the catalog table and its lookups by key, alias and display name.

use std::collections::BTreeSet;

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
