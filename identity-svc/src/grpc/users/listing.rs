//! ListUsers: the request as a typed query, who may see which users (by facet), and one page.

use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use uuid::Uuid;

use super::super::{DEFAULT_PAGE, MAX_PAGE, convert};
use crate::auth::Need;
use crate::domain::model::{Micros, Principal, UserState};
use crate::domain::names;
use crate::domain::permissions::catalog::keys;
use crate::domain::permissions::engine;
use crate::domain::state::OrgState;

/// A ListUsers request, parsed.
#[derive(Debug)]
pub(super) struct Query {
    size: usize,
    /// The email the previous page ended with.
    after: Option<String>,
    state: Option<UserState>,
    facet: pb::UserFacet,
    /// Only with the end-user facet.
    stage: Option<String>,
    /// Lower-case.
    email_prefix: String,
}

fn parse_state(v: &mut Violations, s: i32) -> Option<UserState> {
    match pb::UserState::try_from(s) {
        Ok(pb::UserState::Unspecified) => None,
        Ok(pb::UserState::Invited) => Some(UserState::Invited),
        Ok(pb::UserState::Active) => Some(UserState::Active),
        Ok(pb::UserState::Inactive) => Some(UserState::Inactive),
        Err(_) => {
            v.add("state", "unknown state");
            None
        }
    }
}

/// The query of a ListUsers request of organization `org`.
pub(super) fn parse_query(v: &mut Violations, org: Uuid, r: &pb::ListUsersRequest) -> Query {
    let size = v.page_size("page_size", r.page_size, DEFAULT_PAGE, MAX_PAGE);
    let after: Option<String> = v.page_cursor("page_token", &r.page_token);
    let state = parse_state(v, r.state);
    let facet = pb::UserFacet::try_from(r.facet).unwrap_or_else(|_| {
        v.add("facet", "unknown facet");
        pb::UserFacet::FacetAny
    });
    let stage = if r.stage.is_empty() {
        None
    } else {
        v.check(
            "stage",
            names::stage(&r.stage)
                .filter(|(o, _)| *o == org)
                .map(|(_, k)| k)
                .ok_or("must be organizations/{organization}/stages/{stage}"),
        )
    };
    if stage.is_some() && facet != pb::UserFacet::FacetEndUser {
        v.add("stage", "only with FACET_END_USER");
    }
    Query {
        size,
        after,
        state,
        facet,
        stage,
        email_prefix: r.email_prefix.trim().to_lowercase(),
    }
}

/// What listing needs, and the stages whose end-users the caller may see (end-user facet).
pub(super) fn visibility(
    q: &Query,
    st: &OrgState,
    caller: Option<Principal>,
    now: Micros,
) -> (Need, Vec<String>) {
    match q.facet {
        pb::UserFacet::FacetAny => (Need::Perm(keys::USERS_MANAGE, None, None), Vec::new()),
        pb::UserFacet::FacetMember => {
            (Need::Perm(keys::USERS_VIEW_MEMBERS, None, None), Vec::new())
        }
        pb::UserFacet::FacetEndUser => {
            let candidates: Vec<String> = match &q.stage {
                Some(s) => vec![s.clone()],
                None => st.stages.keys().cloned().collect(),
            };
            let visible = candidates
                .into_iter()
                .filter(|s| {
                    caller.is_some_and(|p| {
                        engine::has_anywhere_in_stage(st, p, keys::END_USERS_VIEW, s, now)
                    })
                })
                .collect();
            let need = match &q.stage {
                Some(s) => Need::Perm(keys::END_USERS_VIEW, Some(s.clone()), None),
                None => Need::PermAnywhere(keys::END_USERS_VIEW),
            };
            (need, visible)
        }
    }
}

/// One page of the users matching `q`, by email.
pub(super) fn page(q: &Query, st: &OrgState, visible_stages: &[String]) -> pb::ListUsersResponse {
    let prefix = &q.email_prefix;
    let start = match &q.after {
        Some(last) if last >= prefix => std::ops::Bound::Excluded(last.clone()),
        _ => std::ops::Bound::Included(prefix.clone()),
    };
    let mut users = Vec::new();
    let mut more = false;
    for (email, id) in st.users_by_email.range((start, std::ops::Bound::Unbounded)) {
        if !email.starts_with(prefix.as_str()) {
            break;
        }
        let Some(u) = st.users.get(id) else { continue };
        if q.state.is_some_and(|s| s != u.state) {
            continue;
        }
        let keep = match q.facet {
            pb::UserFacet::FacetAny => true,
            pb::UserFacet::FacetMember => st.is_member(u.id),
            pb::UserFacet::FacetEndUser => {
                visible_stages.iter().any(|s| st.is_end_user_in(u.id, s))
            }
        };
        if !keep {
            continue;
        }
        if users.len() == q.size {
            more = true;
            break;
        }
        users.push(convert::user(st, u));
    }
    let next_page_token = if more {
        users
            .last()
            .map(|u| shared::page_token::encode(&u.email))
            .unwrap_or_default()
    } else {
        String::new()
    };
    pb::ListUsersResponse {
        users,
        next_page_token,
    }
}
