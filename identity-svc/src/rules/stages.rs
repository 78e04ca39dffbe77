//! The rules of stages: Development first, Production last, at most
//! [`MAX_NON_PRODUCTION_STAGES`] in between; a stage in use cannot be deleted.

use std::collections::BTreeSet;

use crate::core::Draft;
use crate::domain::model::{Entity, IdpAssignment, Stage, StagePurpose};
use crate::domain::names::fmt;
use crate::error::Error;
use crate::rules::lookups::{check_etag, org_id, stage};

/// Most non-production stages between Development and Production.
pub const MAX_NON_PRODUCTION_STAGES: usize = 10;

/// Adds a non-production stage just before Production.
pub fn create_stage(d: &mut Draft<'_>, key: &str, name: String) -> Result<Stage, Error> {
    let st = d.state();
    if st.stages.contains_key(key) {
        return Err(Error::exists(
            "STAGE_EXISTS",
            format!("stage key {key} is taken"),
        ));
    }
    if st
        .stages
        .values()
        .any(|s| s.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "STAGE_EXISTS",
            format!("stage name {name} is taken"),
        ));
    }
    let non_production = st
        .stages
        .values()
        .filter(|s| s.purpose == StagePurpose::NonProduction)
        .count();
    if non_production >= MAX_NON_PRODUCTION_STAGES {
        return Err(Error::precondition(
            "TOO_MANY_STAGES",
            format!(
                "an organization has at most {MAX_NON_PRODUCTION_STAGES} non-production stages"
            ),
        ));
    }
    let production = st
        .stages
        .values()
        .find(|s| s.purpose == StagePurpose::Production)
        .cloned()
        .ok_or_else(|| Error::Internal("no production stage".into()))?;
    let o = org_id(d);
    let stage = Stage {
        key: key.to_owned(),
        display_name: name,
        order: production.order,
        purpose: StagePurpose::NonProduction,
        rev: 1,
    };
    let mut moved = production.clone();
    moved.order += 1;
    moved.rev += 1;
    d.change(
        "stage.reordered",
        fmt::stage(o, &production.key),
        Some(Entity::Stage(production)),
        Some(Entity::Stage(moved)),
        Vec::new(),
    );
    d.change(
        "stage.created",
        fmt::stage(o, key),
        None,
        Some(Entity::Stage(stage.clone())),
        Vec::new(),
    );
    Ok(stage)
}

/// Renames a stage.
pub fn rename_stage(
    d: &mut Draft<'_>,
    key: &str,
    name: String,
    etag: Option<&str>,
) -> Result<Stage, Error> {
    let before = stage(d.state(), key)?.clone();
    check_etag(etag, before.rev)?;
    if d.state()
        .stages
        .values()
        .any(|s| s.key != key && s.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "STAGE_EXISTS",
            format!("stage name {name} is taken"),
        ));
    }
    let mut after = before.clone();
    after.display_name = name;
    after.rev += 1;
    d.change(
        "stage.updated",
        fmt::stage(org_id(d), key),
        Some(Entity::Stage(before)),
        Some(Entity::Stage(after.clone())),
        Vec::new(),
    );
    Ok(after)
}

/// Reorders the stages: `keys` is every key once, Development first, Production last.
pub fn reorder_stages(d: &mut Draft<'_>, keys: &[String]) -> Result<(), Error> {
    let st = d.state();
    let given: BTreeSet<&String> = keys.iter().collect();
    if given.len() != keys.len()
        || given.len() != st.stages.len()
        || keys.iter().any(|k| !st.stages.contains_key(k))
    {
        return Err(Error::field(
            "stage_ids",
            "must list every stage key exactly once",
        ));
    }
    let first = &st.stages[&keys[0]];
    let last = &st.stages[&keys[keys.len() - 1]];
    if first.purpose != StagePurpose::Development || last.purpose != StagePurpose::Production {
        return Err(Error::precondition(
            "STAGE_LOCKED",
            "Development must stay first and Production last",
        ));
    }
    let o = org_id(d);
    for (i, k) in keys.iter().enumerate() {
        let before = d.state().stages[k].clone();
        let order = u32::try_from(i).unwrap_or(u32::MAX);
        if before.order != order {
            let mut after = before.clone();
            after.order = order;
            after.rev += 1;
            d.change(
                "stage.reordered",
                fmt::stage(o, k),
                Some(Entity::Stage(before)),
                Some(Entity::Stage(after)),
                Vec::new(),
            );
        }
    }
    Ok(())
}

/// Deletes a non-production stage nothing refers to.
pub fn delete_stage(d: &mut Draft<'_>, key: &str) -> Result<(), Error> {
    let st = d.state();
    let s = stage(st, key)?.clone();
    if s.purpose != StagePurpose::NonProduction {
        return Err(Error::precondition(
            "STAGE_LOCKED",
            "Development and Production cannot be deleted",
        ));
    }
    let groups = st.groups.values().filter(|g| g.stage == key).count();
    let grants = st
        .end_user_grants
        .values()
        .flatten()
        .filter(|(_, s)| s == key)
        .count();
    let roles = st
        .roles
        .values()
        .filter(|r| {
            r.grants
                .iter()
                .any(|g| g.stages.as_ref().is_some_and(|s| s.contains(key)))
        })
        .count();
    let providers = st
        .identity_providers
        .values()
        .filter(|p| matches!(&p.assignment, IdpAssignment::Stage(s) if s == key))
        .count();
    if groups + grants + roles + providers > 0 {
        return Err(Error::precondition(
            "STAGE_IN_USE",
            format!(
                "stage {key} is used by {groups} group(s), {grants} end-user grant(s), {roles} \
                 role(s) and {providers} identity provider(s)"
            ),
        ));
    }
    let o = org_id(d);
    d.change(
        "stage.deleted",
        fmt::stage(o, key),
        Some(Entity::Stage(s.clone())),
        None,
        Vec::new(),
    );
    // Close the gap in the order.
    let later: Vec<Stage> = d
        .state()
        .stages
        .values()
        .filter(|x| x.order > s.order)
        .cloned()
        .collect();
    for before in later {
        let mut after = before.clone();
        after.order -= 1;
        after.rev += 1;
        d.change(
            "stage.reordered",
            fmt::stage(o, &before.key),
            Some(Entity::Stage(before)),
            Some(Entity::Stage(after)),
            Vec::new(),
        );
    }
    Ok(())
}
