//! `identity.v1.Groups`: groups of end-users, each in one stage.
//!
//! Every RPC but ListGroups is contextual: the need depends on the group's stage, so the handler
//! reads the group (or, for CreateGroup, the stage named) before stating it. A group that does
//! not exist is NOT_FOUND only for a caller who could work with groups in some stage; anyone
//! else gets PERMISSION_DENIED whether it exists or not (AIP-211).

use std::collections::HashMap;

use shared::proto::identity::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Admitted, Api, DEFAULT_PAGE, MAX_PAGE, command, convert, etag, respond, to_status};
use crate::auth::{Authorized, Entry, Need};
use crate::domain::names::{self, fmt};
use crate::domain::permissions::catalog::keys;
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::method;
use crate::rules;

mod decode;

use decode::{
    Foreign, GroupChange, GroupCursor, MemberCursor, add_roles_change, claim_mappings, group_id,
    members_change, next_token, remove_roles_change,
};

/// Longest group name.
const NAME_MAX: usize = 100;
/// Longest group description.
const DESCRIPTION_MAX: usize = 500;

/// What a call does with a group.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Read it (GetGroup, ListGroups, ListGroupMembers).
    View,
    /// Change it (every mutation).
    Manage,
}

impl Access {
    /// The need in the group's stage.
    fn need(self, stage: &str) -> Need {
        let manage = Need::Perm(keys::END_USERS_MANAGE_GROUPS, Some(stage.to_owned()), None);
        match self {
            Access::View => Need::Any(vec![
                Need::Perm(keys::END_USERS_VIEW, Some(stage.to_owned()), None),
                manage,
            ]),
            Access::Manage => manage,
        }
    }

    /// The need in some stage: who may learn that a group does not exist.
    fn anywhere(self) -> Need {
        match self {
            Access::View => Need::Any(vec![
                Need::PermAnywhere(keys::END_USERS_VIEW),
                Need::PermAnywhere(keys::END_USERS_MANAGE_GROUPS),
            ]),
            Access::Manage => Need::PermAnywhere(keys::END_USERS_MANAGE_GROUPS),
        }
    }
}

/// Checks `access` on group `id`: NOT_FOUND for a missing group only when the caller passes the
/// need in some stage.
fn authorize(entry: &Entry, st: &OrgState, id: Uuid, access: Access) -> Result<Authorized, Status> {
    if let Some(g) = st.groups.get(&id) {
        return entry.require(st, &access.need(&g.stage)).map_err(to_status);
    }
    entry.require(st, &access.anywhere()).map_err(to_status)?;
    Err(to_status(Error::NotFound(fmt::group(st.org.id, id))))
}

/// The group as it is now, with the consistency token `seq`.
fn group_reply(st: &OrgState, id: Uuid, seq: u64) -> Result<Response<pb::Group>, Status> {
    let g = rules::lookups::group(st, id).map_err(to_status)?;
    Ok(respond(convert::group(st, g), seq))
}

impl Api {
    /// Authorizes a change of group `id`, runs `f` as one mutation and answers the group after
    /// it.
    async fn change_group<T: Sync>(
        &self,
        a: &Admitted<T>,
        id: Uuid,
        foreign: Foreign,
        f: impl FnMut(&mut crate::core::Draft<'_>) -> Result<(), Error> + Send,
    ) -> Result<Response<pb::Group>, Status> {
        let auth = authorize(&a.entry, &a.handle.read(), id, Access::Manage)?;
        foreign.check()?;
        let c = self
            .core
            .mutate(&auth, a.org, None, f)
            .await
            .map_err(to_status)?;
        group_reply(&a.handle.read(), id, c.seq)
    }

    /// For a create with a `request_id` already used: the group that request created, as it
    /// is now (AIP-155); `None` when the key is new.
    async fn replayed_group<T>(
        &self,
        a: &Admitted<T>,
        request_id: Option<&str>,
    ) -> Result<Option<Response<pb::Group>>, Status> {
        let found = self
            .replayed(a.org, &a.handle, request_id, "group", names::group)
            .await?;
        let Some((id, _)) = found else {
            return Ok(None);
        };
        let st = a.handle.read();
        group_reply(&st, id, st.seq).map(Some)
    }
}

#[tonic::async_trait]
impl pb::groups_server::Groups for Api {
    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let a = self
            .enter(request, method!("Groups/CreateGroup"), "parent", |r| {
                &r.parent
            })
            .await?;
        let g = a.req.group.clone().unwrap_or_default();
        let (name, description, mappings, (stage_org, key)) = command(|v| {
            if names::org(&a.req.parent).is_none() {
                v.add("parent", "must be organizations/{organization}");
            }
            let name = v.required_text("group.display_name", &g.display_name, NAME_MAX);
            let description =
                v.optional_multi_line_text("group.description", &g.description, DESCRIPTION_MAX);
            let mappings = claim_mappings(v, a.org, &g.claim_mappings);
            let stage = if g.stage.is_empty() {
                v.add("group.stage", "is required");
                None
            } else {
                v.check(
                    "group.stage",
                    names::stage(&g.stage)
                        .ok_or("must be organizations/{organization}/stages/{stage}"),
                )
            };
            Some((name, description, mappings, stage?))
        })?;
        if stage_org != a.org {
            return Err(to_status(Error::NotFound(g.stage.clone())));
        }
        let auth = {
            let st = a.handle.read();
            rules::lookups::stage(&st, &key).map_err(to_status)?;
            a.entry
                .require(&st, &Access::Manage.need(&key))
                .map_err(to_status)?
        };
        let request_id = (!a.req.request_id.is_empty()).then_some(a.req.request_id.as_str());
        if let Some(replayed) = self.replayed_group(&a, request_id).await? {
            return Ok(replayed);
        }
        let c = match self
            .core
            .mutate(&auth, a.org, request_id, |d| {
                rules::groups::create_group(
                    d,
                    name.clone(),
                    description.clone(),
                    key.clone(),
                    mappings.clone(),
                )
            })
            .await
        {
            Ok(c) => c,
            // A concurrent request with the same key may have been first: its result.
            Err(e) => {
                return self
                    .replayed_group(&a, request_id)
                    .await?
                    .ok_or_else(|| to_status(e));
            }
        };
        let st = a.handle.read();
        let reply = match st.groups.get(&c.value.id) {
            Some(now) => convert::group(&st, now),
            None => convert::group(&st, &c.value),
        };
        Ok(respond(reply, c.seq))
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let a = self
            .enter(request, method!("Groups/GetGroup"), "name", |r| &r.name)
            .await?;
        let id = command(|v| group_id(v, "name", a.org, &a.req.name))?;
        let st = a.handle.read();
        authorize(&a.entry, &st, id, Access::View)?;
        group_reply(&st, id, st.seq)
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let a = self
            .enter(request, method!("Groups/ListGroups"), "parent", |r| {
                &r.parent
            })
            .await?;
        a.entry.authorized().map_err(to_status)?;
        let (stage, size, after) = command(|v| {
            if names::org(&a.req.parent).is_none() {
                v.add("parent", "must be organizations/{organization}");
            }
            // `Some(None)`: no filter; `None`: a bad one (recorded).
            let stage = if a.req.stage.is_empty() {
                Some(None)
            } else {
                v.check(
                    "stage",
                    names::stage(&a.req.stage)
                        .filter(|(o, _)| *o == a.org)
                        .map(|(_, k)| Some(k))
                        .ok_or(
                            "must be organizations/{organization}/stages/{stage} of this organization",
                        ),
                )
            };
            let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let after: Option<GroupCursor> = v.page_cursor("page_token", &a.req.page_token);
            if after.as_ref().is_some_and(|c| c.stage != a.req.stage) {
                v.add("page_token", "was made for a different stage filter");
            }
            Some((stage?, size, after))
        })?;
        let st = a.handle.read();
        let mut visible: HashMap<&str, bool> = HashMap::new();
        let after_row = after.as_ref().map(|c| (c.name.as_str(), c.id));
        let rows = st.groups_by_name(stage.as_deref(), after_row, |g| {
            *visible
                .entry(g.stage.as_str())
                .or_insert_with(|| a.entry.would(&st, &Access::View.need(&g.stage)))
        });
        let next_page_token = next_token(&rows, size, |(name, id, _)| GroupCursor {
            name: name.clone(),
            id: *id,
            stage: a.req.stage.clone(),
        });
        let groups = rows
            .iter()
            .take(size)
            .map(|(_, _, g)| convert::group(&st, g))
            .collect();
        Ok(respond(
            pb::ListGroupsResponse {
                groups,
                next_page_token,
            },
            st.seq,
        ))
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let a = self
            .enter(request, method!("Groups/UpdateGroup"), "group.name", |r| {
                r.group.as_ref().map_or("", |g| g.name.as_str())
            })
            .await?;
        let g = a.req.group.clone().unwrap_or_default();
        let (id, name, description, mappings) = command(|v| {
            let id = group_id(v, "group.name", a.org, &g.name);
            // The stage is fixed at creation: say so rather than list the allowed paths.
            let mut mask = a.req.update_mask.clone();
            if let Some(m) = mask.as_mut()
                && m.paths.iter().any(|p| p == "stage")
            {
                v.add(
                    "update_mask",
                    "\"stage\" cannot be updated: a group's stage is set at creation and never changes",
                );
                m.paths.retain(|p| p != "stage");
            }
            let paths = v.mask_paths(
                mask.as_ref(),
                &["display_name", "description", "claim_mappings"],
            );
            let has = |p: &str| paths.iter().any(|x| x == p);
            let name = has("display_name")
                .then(|| v.required_text("group.display_name", &g.display_name, NAME_MAX));
            let description = has("description").then(|| {
                v.optional_multi_line_text("group.description", &g.description, DESCRIPTION_MAX)
            });
            let mappings =
                has("claim_mappings").then(|| claim_mappings(v, a.org, &g.claim_mappings));
            Some((id?, name, description, mappings))
        })?;
        self.change_group(&a, id, Foreign::default(), |d| {
            rules::groups::update_group(
                d,
                id,
                name.clone(),
                description.clone(),
                mappings.clone(),
                etag(&g.etag),
            )
            .map(drop)
        })
        .await
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let a = self
            .enter(request, method!("Groups/DeleteGroup"), "name", |r| &r.name)
            .await?;
        let id = command(|v| group_id(v, "name", a.org, &a.req.name))?;
        let auth = authorize(&a.entry, &a.handle.read(), id, Access::Manage)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::groups::delete_group(d, id, etag(&a.req.etag))
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::DeleteGroupResponse {}, c.seq))
    }

    async fn add_group_members(
        &self,
        request: Request<pb::AddGroupMembersRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let a = self
            .enter(request, method!("Groups/AddGroupMembers"), "group", |r| {
                &r.group
            })
            .await?;
        let change = command(|v| members_change(v, a.org, &a.req.group, &a.req.users))?;
        let GroupChange {
            group,
            items,
            foreign,
        } = change;
        self.change_group(&a, group, foreign, |d| {
            rules::groups::add_members(d, group, &items)
        })
        .await
    }

    async fn remove_group_members(
        &self,
        request: Request<pb::RemoveGroupMembersRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let a = self
            .enter(
                request,
                method!("Groups/RemoveGroupMembers"),
                "group",
                |r| &r.group,
            )
            .await?;
        let change = command(|v| members_change(v, a.org, &a.req.group, &a.req.users))?;
        let GroupChange {
            group,
            items,
            foreign,
        } = change;
        self.change_group(&a, group, foreign, |d| {
            rules::groups::remove_members(d, group, &items)
        })
        .await
    }

    async fn add_group_roles(
        &self,
        request: Request<pb::AddGroupRolesRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let a = self
            .enter(request, method!("Groups/AddGroupRoles"), "group", |r| {
                &r.group
            })
            .await?;
        let change = command(|v| add_roles_change(v, a.org, &a.req))?;
        let GroupChange {
            group,
            items,
            foreign,
        } = change;
        self.change_group(&a, group, foreign, |d| {
            rules::groups::add_app_roles(d, group, &items)
        })
        .await
    }

    async fn remove_group_roles(
        &self,
        request: Request<pb::RemoveGroupRolesRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let a = self
            .enter(request, method!("Groups/RemoveGroupRoles"), "group", |r| {
                &r.group
            })
            .await?;
        let change = command(|v| remove_roles_change(v, a.org, &a.req))?;
        let GroupChange {
            group,
            items,
            foreign,
        } = change;
        self.change_group(&a, group, foreign, |d| {
            rules::groups::remove_app_roles(d, group, &items)
        })
        .await
    }

    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        let a = self
            .enter(request, method!("Groups/ListGroupMembers"), "group", |r| {
                &r.group
            })
            .await?;
        let (id, size, after) = command(|v| {
            let id = group_id(v, "group", a.org, &a.req.group);
            let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let after: Option<MemberCursor> = v.page_cursor("page_token", &a.req.page_token);
            if let (Some(c), Some(id)) = (after.as_ref(), id)
                && c.group != id
            {
                v.add("page_token", "was made for another group");
            }
            Some((id?, size, after))
        })?;
        let st = a.handle.read();
        authorize(&a.entry, &st, id, Access::View)?;
        let rows = st.members_by_email(id, after.as_ref().map(|c| (c.email.as_str(), c.id)));
        let next_page_token = next_token(&rows, size, |(email, uid)| MemberCursor {
            email: (*email).to_owned(),
            id: *uid,
            group: id,
        });
        let page = || rows.iter().take(size).map(|(_, uid)| *uid);
        let users = page().map(|uid| fmt::user(a.org, uid)).collect();
        let members = page()
            .filter_map(|uid| st.membership(id, uid))
            .map(|m| convert::group_member(a.org, &m))
            .collect();
        Ok(respond(
            pb::ListGroupMembersResponse {
                users,
                next_page_token,
                members,
            },
            st.seq,
        ))
    }
}
