//! The table is complete and consistent with the protos and the permission catalog.

use std::collections::BTreeSet;

use prost::Message as _;

use super::*;
use crate::domain::permissions::catalog;

/// Every RPC of the identity API, read from the compiled descriptors.
fn identity_methods() -> BTreeSet<String> {
    let fds = prost_types::FileDescriptorSet::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    fds.file
        .iter()
        .filter(|f| f.package() == "identity.v1")
        .flat_map(|f| {
            f.service.iter().flat_map(move |s| {
                s.method
                    .iter()
                    .map(move |m| format!("identity.v1.{}/{}", s.name(), m.name()))
            })
        })
        .collect()
}

#[test]
fn every_rpc_has_exactly_one_authorization_rule() {
    let methods = identity_methods();
    assert!(methods.len() > 50, "descriptors not found: {methods:?}");
    let mut seen = BTreeSet::new();
    for (m, _) in RULES {
        assert!(seen.insert(*m), "{m} has two rules");
        assert!(methods.contains(*m), "{m} is not an RPC of the API");
    }
    let missing: Vec<_> = methods
        .iter()
        .filter(|m| !seen.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without an authorization rule: {missing:?}"
    );
}

#[test]
fn permission_rules_name_catalog_permissions_that_are_not_stage_limited() {
    for (m, r) in RULES {
        if let Rule::Permission(k) = r {
            let def = catalog::get(k).unwrap_or_else(|| panic!("{m}: unknown {k}"));
            assert!(
                !def.stage_scopable,
                "{m}: {k} is stage-scopable and needs a stage"
            );
        }
    }
}
