//! `identity.v1.Access`.

use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::audit::time_filter;
use super::{
    Admitted, Api, DEFAULT_PAGE, MAX_PAGE, command, convert, parse_scope, respond, to_status,
};
use crate::auth::{Entry, Need, principal_name};
use crate::domain::model::{GrantPeriod, Principal, ScopeKey};
use crate::domain::names;
use crate::domain::permissions::catalog::{self, PermissionDef, keys};
use crate::domain::permissions::engine::{self, Denial};
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::method;
use crate::rules;

fn principal_field(v: &mut Violations, field: &str, org: Uuid, name: &str) -> Option<Principal> {
    v.check(
        field,
        names::principal_of(org, name)
            .ok_or("must be organizations/{organization}/users/{user} or .../serviceAccounts/{account} of this organization"),
    )
}

/// A checked permission query: the permission, the stage key (borrowed from the request) and
/// the app.
struct Query<'a> {
    def: &'static PermissionDef,
    stage: Option<&'a str>,
    app: Option<Uuid>,
}

fn query<'a>(
    v: &mut Violations,
    org: Uuid,
    permission: &str,
    stage: &'a str,
    app: &str,
) -> Option<Query<'a>> {
    let def = v.check(
        "permission",
        catalog::resolve(permission.trim()).ok_or("unknown permission key"),
    );
    let stage = if stage.is_empty() {
        None
    } else {
        v.check(
            "stage",
            names::stage_of(org, stage)
                .ok_or("must be organizations/{organization}/stages/{stage}"),
        )
    };
    let app = if app.is_empty() {
        None
    } else {
        v.check(
            "app",
            names::app_of(org, app).ok_or("must be organizations/{organization}/apps/{app}"),
        )
    };
    let def = def?;
    if def.stage_scopable && stage.is_none() {
        v.add(
            "stage",
            format!("{} is limited per stage: name the stage to check", def.key),
        );
        return None;
    }
    Some(Query {
        def,
        stage: if def.stage_scopable { stage } else { None },
        app,
    })
}

/// The grant period of AssignRole (`None` when not given). A bad timestamp is recorded in `v`,
/// which refuses the request; whether the end is after the start and ahead is for the rules.
fn grant_period(v: &mut Violations, p: Option<&pb::GrantPeriod>) -> Option<GrantPeriod> {
    let p = p?;
    Some(GrantPeriod {
        start: time_filter(v, "grant_period.start_time", p.start_time.as_ref()),
        end: time_filter(v, "grant_period.end_time", p.end_time.as_ref()),
    })
}

/// Checks that the stage and app of a query exist.
fn exists(st: &OrgState, q: &Query<'_>) -> Result<(), Error> {
    if let Some(s) = q.stage {
        rules::lookups::stage(st, s)?;
    }
    if let Some(a) = q.app {
        rules::lookups::app(st, a)?;
    }
    Ok(())
}

/// Who may look at `subject`'s access: themselves, or a service account, or users.view_members.
/// The cheap alternatives come first: `Any` stops at the first that holds, so a service
/// account or a principal asking about itself never pays for a permission decision.
fn inspect(subject: Principal) -> Need {
    Need::Any(vec![
        Need::Is(subject),
        Need::ServiceAccount,
        Need::Perm(keys::USERS_VIEW_MEMBERS, None, None),
    ])
}

/// `require(inspect(subject))`, without building the need in the common cases: a caller asking
/// about itself, or a service account, passes `inspect` at once (the same answer).
fn may_inspect(entry: &Entry, st: &OrgState, subject: Principal) -> Result<(), Error> {
    match entry.principal() {
        Some(p) if p == subject || matches!(p, Principal::ServiceAccount(_)) => Ok(()),
        _ => entry.require(st, &inspect(subject)).map(|_| ()),
    }
}

/// The principal a read is about: the named one, or the caller.
fn subject<T>(a: &Admitted<T>, v: &mut Violations, name: &str) -> Option<Principal> {
    if name.is_empty() {
        let p = a.entry.principal();
        if p.is_none() {
            v.add(
                "principal",
                "is required when the caller is not a principal",
            );
        }
        p
    } else {
        principal_field(v, "principal", a.org, name)
    }
}

#[tonic::async_trait]
impl pb::access_server::Access for Api {
    async fn assign_role(
        &self,
        request: Request<pb::AssignRoleRequest>,
    ) -> Result<Response<pb::RoleAssignment>, Status> {
        let a = self
            .enter(request, method!("Access/AssignRole"), "parent", |r| {
                &r.parent
            })
            .await?;
        let (p, role, scope, period) = command(|v| {
            let p = principal_field(v, "principal", a.org, &a.req.principal);
            let role = v.check(
                "role",
                names::role_id_of(a.org, &a.req.role)
                    .ok_or("must be organizations/{organization}/roles/{role}"),
            );
            let scope = v.check("scope", parse_scope(a.org, a.req.scope.as_ref()));
            let period = grant_period(v, a.req.grant_period.as_ref());
            Some((p?, role?, scope?, period))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::access::assign_role(d, p, &role, scope, period)
            })
            .await
            .map_err(to_status)?;
        let answer = convert::assignment_at(a.org, &c.value, self.core.now());
        Ok(respond(answer, c.seq))
    }

    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Result<Response<pb::RevokeRoleResponse>, Status> {
        let a = self
            .enter(request, method!("Access/RevokeRole"), "parent", |r| {
                &r.parent
            })
            .await?;
        let (p, scope) = command(|v| {
            let p = principal_field(v, "principal", a.org, &a.req.principal);
            let scope = v.check("scope", parse_scope(a.org, a.req.scope.as_ref()));
            Some((p?, scope?))
        })?;
        let auth = a.entry.authorized().map_err(to_status)?;
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::access::revoke_role(d, p, scope)
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::RevokeRoleResponse {}, c.seq))
    }

    async fn list_role_assignments(
        &self,
        request: Request<pb::ListRoleAssignmentsRequest>,
    ) -> Result<Response<pb::ListRoleAssignmentsResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Access/ListRoleAssignments"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        // Each filter: `Some(None)` when not given, `None` when bad (recorded).
        let (p, role, size, after) = command(|v| {
            let p = if a.req.principal.is_empty() {
                Some(None)
            } else {
                principal_field(v, "principal", a.org, &a.req.principal).map(Some)
            };
            let role = if a.req.role.is_empty() {
                Some(None)
            } else {
                v.check(
                    "role",
                    names::role_id_of(a.org, &a.req.role)
                        .ok_or("must be organizations/{organization}/roles/{role}"),
                )
                .map(Some)
            };
            let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let after: Option<(Principal, ScopeKey)> =
                v.page_cursor("page_token", &a.req.page_token);
            Some((p?, role?, size, after))
        })?;
        let st = a.handle.read();
        let need = match p {
            Some(p) => Need::Any(vec![
                Need::Is(p),
                Need::Perm(keys::USERS_VIEW_MEMBERS, None, None),
            ]),
            None => Need::Perm(keys::USERS_VIEW_MEMBERS, None, None),
        };
        a.entry.require(&st, &need).map_err(to_status)?;
        let (out, more) = st.assignments_page(p, role.as_deref(), after, size);
        let next_page_token = if more {
            out.last()
                .map(|x| shared::page_token::encode(&(x.principal, x.scope)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let role_assignments = out
            .into_iter()
            .map(|x| convert::assignment_at(a.org, x, a.entry.now()))
            .collect();
        Ok(respond(
            pb::ListRoleAssignmentsResponse {
                role_assignments,
                next_page_token,
            },
            st.seq,
        ))
    }

    async fn grant_end_user_role(
        &self,
        request: Request<pb::GrantEndUserRoleRequest>,
    ) -> Result<Response<pb::EndUserRoleGrant>, Status> {
        let a = self
            .enter(request, method!("Access/GrantEndUserRole"), "parent", |r| {
                &r.parent
            })
            .await?;
        let (user, role, stage) = command(|v| end_user_grant(v, a.org, a.req.grant.as_ref()))?;
        let auth = {
            let st = a.handle.read();
            let app = st.end_user_roles.get(&role).map(|r| r.app);
            a.entry
                .require(
                    &st,
                    &Need::Perm(keys::END_USERS_MANAGE_ACCESS, Some(stage.clone()), app),
                )
                .map_err(to_status)?
        };
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::access::grant_end_user_role(d, user, role, &stage)
            })
            .await
            .map_err(to_status)?;
        let st = a.handle.read();
        Ok(respond(
            pb::EndUserRoleGrant {
                user: names::fmt::user(a.org, user),
                end_user_role: convert::end_user_role_name(&st, role),
                stage: names::fmt::stage(a.org, &stage),
            },
            c.seq,
        ))
    }

    async fn revoke_end_user_role(
        &self,
        request: Request<pb::RevokeEndUserRoleRequest>,
    ) -> Result<Response<pb::RevokeEndUserRoleResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Access/RevokeEndUserRole"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let (user, role, stage) = command(|v| end_user_grant(v, a.org, a.req.grant.as_ref()))?;
        let auth = {
            let st = a.handle.read();
            let app = st.end_user_roles.get(&role).map(|r| r.app);
            a.entry
                .require(
                    &st,
                    &Need::Perm(keys::END_USERS_MANAGE_ACCESS, Some(stage.clone()), app),
                )
                .map_err(to_status)?
        };
        let c = self
            .core
            .mutate(&auth, a.org, None, |d| {
                rules::access::revoke_end_user_role(d, user, role, &stage)
            })
            .await
            .map_err(to_status)?;
        Ok(respond(pb::RevokeEndUserRoleResponse {}, c.seq))
    }

    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        let a = self
            .enter(request, method!("Access/CheckPermission"), "parent", |r| {
                &r.parent
            })
            .await?;
        let (subject, q) = command(|v| {
            let subject = subject(&a, v, &a.req.principal);
            let q = query(v, a.org, &a.req.permission, &a.req.stage, &a.req.app);
            Some((subject?, q?))
        })?;
        let st = a.handle.read();
        may_inspect(&a.entry, &st, subject).map_err(to_status)?;
        // `decide` is pure and looks the principal up anyway: an unknown principal is
        // NOT_FOUND (before an unknown stage or app), as `rules::lookups::principal` says.
        let d = engine::decide(&st, subject, q.def, q.stage, q.app, a.entry.now());
        if d.denial == Some(Denial::NoPrincipal) {
            rules::lookups::principal(&st, subject).map_err(to_status)?;
        }
        exists(&st, &q).map_err(to_status)?;
        Ok(respond(
            pb::CheckPermissionResponse {
                allowed: d.allowed,
                reasons: d
                    .reasons
                    .iter()
                    .map(|r| convert::reason(a.org, r))
                    .collect(),
                denial_reason: d.denial.map(|x| x.message()).unwrap_or_default(),
            },
            st.seq,
        ))
    }

    async fn list_effective_permissions(
        &self,
        request: Request<pb::ListEffectivePermissionsRequest>,
    ) -> Result<Response<pb::ListEffectivePermissionsResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Access/ListEffectivePermissions"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let subject = command(|v| subject(&a, v, &a.req.principal))?;
        let st = a.handle.read();
        may_inspect(&a.entry, &st, subject).map_err(to_status)?;
        rules::lookups::principal(&st, subject).map_err(to_status)?;
        let permissions = engine::effective(&st, subject, a.entry.now())
            .into_iter()
            .map(|e| pb::EffectivePermission {
                permission: e.permission.to_owned(),
                scope: Some(convert::scope(a.org, e.scope)),
                stages: e
                    .stages
                    .iter()
                    .flatten()
                    .map(|s| names::fmt::stage(a.org, s))
                    .collect(),
                reasons: e
                    .reasons
                    .iter()
                    .map(|r| convert::reason(a.org, r))
                    .collect(),
            })
            .collect();
        Ok(respond(
            pb::ListEffectivePermissionsResponse {
                active: st.is_active(subject),
                permissions,
            },
            st.seq,
        ))
    }

    async fn list_permission_holders(
        &self,
        request: Request<pb::ListPermissionHoldersRequest>,
    ) -> Result<Response<pb::ListPermissionHoldersResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("Access/ListPermissionHolders"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let (q, size, after) = command(|v| {
            let q = query(v, a.org, &a.req.permission, &a.req.stage, &a.req.app);
            let size = v.page_size("page_size", a.req.page_size, DEFAULT_PAGE, MAX_PAGE);
            let after: Option<Principal> = v.page_cursor("page_token", &a.req.page_token);
            Some((q?, size, after))
        })?;
        let st = a.handle.read();
        // The cheap alternative first (`Any` stops at the first that holds).
        let need = Need::Any(vec![
            Need::ServiceAccount,
            Need::Perm(keys::USERS_VIEW_MEMBERS, None, None),
        ]);
        a.entry.require(&st, &need).map_err(to_status)?;
        exists(&st, &q).map_err(to_status)?;
        let (page, more) = engine::holders(&st, q.def, q.stage, q.app, after, size, a.entry.now());
        let next_page_token = if more {
            page.last()
                .map(|(p, _)| shared::page_token::encode(p))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let holders = page
            .iter()
            .map(|(p, reasons)| pb::PermissionHolder {
                principal: principal_name(a.org, *p),
                reasons: reasons.iter().map(|r| convert::reason(a.org, r)).collect(),
            })
            .collect();
        Ok(respond(
            pb::ListPermissionHoldersResponse {
                holders,
                next_page_token,
            },
            st.seq,
        ))
    }

    async fn check_end_user_role(
        &self,
        request: Request<pb::CheckEndUserRoleRequest>,
    ) -> Result<Response<pb::CheckEndUserRoleResponse>, Status> {
        let a = self
            .enter(request, method!("Access/CheckEndUserRole"), "parent", |r| {
                &r.parent
            })
            .await?;
        let grant = pb::EndUserRoleGrant {
            user: a.req.user.clone(),
            end_user_role: a.req.end_user_role.clone(),
            stage: a.req.stage.clone(),
        };
        let (user, role, stage) = command(|v| end_user_grant(v, a.org, Some(&grant)))?;
        let st = a.handle.read();
        let app = rules::lookups::end_user_role(&st, role)
            .map_err(to_status)?
            .app;
        let need = Need::Any(vec![
            Need::Is(Principal::User(user)),
            Need::Perm(keys::END_USERS_VIEW, Some(stage.clone()), Some(app)),
        ]);
        a.entry.require(&st, &need).map_err(to_status)?;
        rules::lookups::user(&st, user).map_err(to_status)?;
        rules::lookups::stage(&st, &stage).map_err(to_status)?;
        let h = st.end_user_role_holding(user, role, &stage);
        Ok(respond(
            pb::CheckEndUserRoleResponse {
                has_role: h.has_role(),
                direct: h.direct,
                groups: h
                    .groups
                    .iter()
                    .map(|g| names::fmt::group(a.org, *g))
                    .collect(),
                active: h.active,
            },
            st.seq,
        ))
    }

    async fn noop(
        &self,
        request: Request<pb::NoopRequest>,
    ) -> Result<Response<pb::NoopResponse>, Status> {
        let a = self
            .enter(request, method!("Access/Noop"), "parent", |r| &r.parent)
            .await?;
        a.entry.authorized().map_err(to_status)?;
        Ok(Response::new(pb::NoopResponse {}))
    }
}

/// Decodes a (user, end-user role, stage) triple of organization `org`.
fn end_user_grant(
    v: &mut Violations,
    org: Uuid,
    g: Option<&pb::EndUserRoleGrant>,
) -> Option<(Uuid, Uuid, String)> {
    let g = g.cloned().unwrap_or_default();
    let user = v.check(
        "grant.user",
        names::user(&g.user)
            .filter(|(o, _)| *o == org)
            .map(|(_, u)| u)
            .ok_or("must be organizations/{organization}/users/{user}"),
    );
    let role = match names::end_user_role(&g.end_user_role).filter(|(o, _, _)| *o == org) {
        Some((_, _, r)) => Some(r),
        None if names::role(&g.end_user_role).is_some() => {
            v.add("grant.end_user_role", "is an organization role; an end-user role is organizations/{organization}/apps/{app}/endUserRoles/{role}");
            None
        }
        None => {
            v.add(
                "grant.end_user_role",
                "must be organizations/{organization}/apps/{app}/endUserRoles/{role}",
            );
            None
        }
    };
    let stage = v.check(
        "grant.stage",
        names::stage(&g.stage)
            .filter(|(o, _)| *o == org)
            .map(|(_, s)| s)
            .ok_or("must be organizations/{organization}/stages/{stage}"),
    );
    Some((user?, role?, stage?))
}
