//! Group claim mappings (R48): a group's mappings name an identity provider, a claim and a
//! value; on every sign-in with that provider the person's MAPPED memberships are re-evaluated
//! from the token's claims (added where a mapping matches, removed where none matches any
//! more). A user holding an organization role is never mapped into a group (ODC: mappings
//! cannot map members), and loses MAPPED memberships of that provider's groups.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{ClaimMapping, GroupMember, Principal};
use crate::domain::names::fmt;
use crate::rules::groups::set_membership;

/// Whether `claims` satisfy mapping `m`: the claim is the value, holds it as a list item, or,
/// with a delimiter, holds it among its separated (trimmed) parts.
pub fn matches(m: &ClaimMapping, claims: &Map<String, Value>) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let holds = |s: &str| {
        if m.delimiter.is_empty() {
            s == m.value
        } else {
            s.split(m.delimiter.as_str()).any(|p| p.trim() == m.value)
        }
    };
    match claims.get(&m.claim) {
        Some(Value::Array(items)) => items.iter().filter_map(text).any(|s| holds(&s)),
        Some(v) => text(v).is_some_and(|s| holds(&s)),
        None => false,
    }
}

/// Re-evaluates the MAPPED memberships of `user` in the groups that map `provider`'s claims.
pub fn remap(d: &mut Draft<'_>, provider: Uuid, user: Uuid, claims: &Map<String, Value>) {
    let st = d.state();
    let member = st
        .assignments
        .get(&Principal::User(user))
        .is_some_and(|a| !a.is_empty());
    let mut groups: Vec<(Uuid, bool)> = st
        .groups
        .values()
        .filter(|g| g.claim_mappings.iter().any(|m| m.provider == provider))
        .map(|g| {
            let wanted = !member
                && g.claim_mappings
                    .iter()
                    .any(|m| m.provider == provider && matches(m, claims));
            (g.id, wanted)
        })
        .collect();
    groups.sort_unstable();
    for (group, wanted) in groups {
        let before = d.state().membership(group, user);
        let after = match (&before, wanted) {
            (None, false) => None,
            (None, true) => Some(GroupMember {
                group,
                user,
                assigned: false,
                mapped: true,
            }),
            (Some(m), true) => Some(GroupMember {
                mapped: true,
                ..m.clone()
            }),
            (Some(m), false) => m.assigned.then(|| GroupMember {
                mapped: false,
                ..m.clone()
            }),
        };
        set_membership(d, before, after);
    }
}

/// Removes the mappings of a deleted provider from every group.
pub fn forget_provider(d: &mut Draft<'_>, provider: Uuid) {
    let groups: Vec<_> = d
        .state()
        .groups
        .values()
        .filter(|g| g.claim_mappings.iter().any(|m| m.provider == provider))
        .cloned()
        .collect();
    for before in groups {
        let mut after = before.clone();
        after.claim_mappings.retain(|m| m.provider != provider);
        after.update_time = d.now;
        after.rev += 1;
        d.change(
            "group.updated",
            fmt::group(d.state().org.id, before.id),
            Some(crate::domain::model::Entity::Group(before)),
            Some(crate::domain::model::Entity::Group(after)),
            Vec::new(),
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mapping(value: &str, delimiter: &str) -> ClaimMapping {
        ClaimMapping {
            provider: Uuid::nil(),
            claim: "groups".into(),
            value: value.into(),
            delimiter: delimiter.into(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("groups".into(), v);
        m
    }

    #[test]
    fn claims_match_exactly_as_lists_or_split_by_the_delimiter() {
        assert!(matches(&mapping("eng", ""), &claims(json!("eng"))));
        assert!(!matches(&mapping("eng", ""), &claims(json!("eng,ops"))));
        assert!(matches(&mapping("eng", ""), &claims(json!(["ops", "eng"]))));
        assert!(matches(&mapping("eng", ","), &claims(json!("ops, eng"))));
        assert!(!matches(&mapping("en", ","), &claims(json!("ops,eng"))));
        assert!(matches(&mapping("7", ""), &claims(json!(7))));
        assert!(!matches(&mapping("eng", ""), &Map::new()));
    }
}
