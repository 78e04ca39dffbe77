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
    /// The row the previous page ended with.
    after: Option<Cursor>,
    state: Option<UserState>,
    facet: pb::UserFacet,
    /// Only with the end-user facet.
    stage: Option<String>,
    /// Lower-case.
    email_prefix: String,
}

/// Where a page of users resumes: after the last row's (email, id), `""` for a user without an
/// email. A token of earlier versions (the email alone, emails being unique) still resumes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Cursor {
    After { email: String, id: Uuid },
    Email(String),
}

impl Cursor {
    fn row(&self) -> (&str, Uuid) {
        match self {
            Cursor::After { email, id } => (email, *id),
            Cursor::Email(email) => (email, Uuid::max()),
        }
    }
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
    let after: Option<Cursor> = v.page_cursor("page_token", &r.page_token);
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

/// One page of the users matching `q`, in (email, id) order (users without an email first).
pub(super) fn page(q: &Query, st: &OrgState, visible_stages: &[String]) -> pb::ListUsersResponse {
    let mut users = Vec::new();
    let mut last = None;
    let mut more = false;
    for u in st.users_in_email_order(&q.email_prefix, q.after.as_ref().map(Cursor::row)) {
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
        last = Some(u);
    }
    let next_page_token = match last {
        Some(u) if more => shared::page_token::encode(&Cursor::After {
            email: u.email_str().to_owned(),
            id: u.id,
        }),
        _ => String::new(),
    };
    pb::ListUsersResponse {
        users,
        next_page_token,
    }
}
