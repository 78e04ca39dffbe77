//! Tests of the implication tables against the closures they are derived from.

use std::collections::BTreeSet;

use super::*;
use crate::domain::permissions::catalog::{CATALOG, get, index_of};

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
