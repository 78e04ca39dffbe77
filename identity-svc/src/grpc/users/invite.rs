//! InviteUser's request as a typed invitation, and what inviting needs (the permissions over
//! each access the invitation carries).

use std::collections::BTreeSet;

use shared::email::Email;
use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use uuid::Uuid;

use crate::auth::Need;
use crate::domain::names;
use crate::domain::permissions::catalog::keys;
use crate::domain::state::OrgState;
use crate::rules;

/// The invitation of an InviteUser request of organization `org`.
pub(super) fn parse_invite(
    v: &mut Violations,
    org: Uuid,
    r: &pb::InviteUserRequest,
) -> Option<rules::invitations::Invite> {
    let email = v.check("email", Email::parse(&r.email));
    let display_name = v.optional_text("display_name", &r.display_name, 100);
    let organization_role = if r.organization_role.is_empty() {
        None
    } else {
        v.check(
            "organization_role",
            names::role_id_of(org, &r.organization_role)
                .ok_or("must be organizations/{organization}/roles/{role}"),
        )
    };
    let mut app_roles = Vec::new();
    for (i, x) in r.app_roles.iter().enumerate() {
        let app = v.check(
            &format!("app_roles[{i}].app"),
            names::app(&x.app)
                .filter(|(o, _)| *o == org)
                .map(|(_, a)| a)
                .ok_or("must be organizations/{organization}/apps/{app}"),
        );
        let role = v.check(
            &format!("app_roles[{i}].role"),
            names::role_id_of(org, &x.role)
                .ok_or("must be organizations/{organization}/roles/{role}"),
        );
        if let (Some(app), Some(role)) = (app, role) {
            app_roles.push((app, role));
        }
    }
    let apps: BTreeSet<Uuid> = app_roles.iter().map(|(a, _)| *a).collect();
    if apps.len() != app_roles.len() {
        v.add("app_roles", "at most one role per app");
    }
    let end_user_roles = parse_end_user_roles(v, org, &r.end_user_roles, "end_user_roles");
    let mut groups = Vec::new();
    for (i, g) in r.groups.iter().enumerate() {
        if let Some(id) = v.check(
            &format!("groups[{i}]"),
            names::group(g)
                .filter(|(o, _)| *o == org)
                .map(|(_, g)| g)
                .ok_or("must be organizations/{organization}/groups/{group}"),
        ) {
            groups.push(id);
        }
    }
    Some(rules::invitations::Invite {
        email: email?,
        display_name,
        organization_role,
        app_roles,
        end_user_roles,
        groups,
    })
}

/// What inviting needs: the permissions over each access the invitation carries, or
/// `users.manage` when it carries none.
pub(super) fn invite_needs(st: &OrgState, invite: &rules::invitations::Invite) -> Need {
    let mut needs = Vec::new();
    if invite.organization_role.is_some() || !invite.app_roles.is_empty() {
        needs.push(Need::Perm(keys::USERS_MANAGE_MEMBER_ACCESS, None, None));
    }
    for (role, stage) in &invite.end_user_roles {
        let app = st.end_user_roles.get(role).map(|r| r.app);
        needs.push(Need::Perm(
            keys::END_USERS_MANAGE_ACCESS,
            Some(stage.clone()),
            app,
        ));
    }
    for g in &invite.groups {
        if let Some(g) = st.groups.get(g) {
            needs.push(Need::Perm(
                keys::END_USERS_MANAGE_GROUPS,
                Some(g.stage.clone()),
                None,
            ));
        }
    }
    if needs.is_empty() {
        needs.push(Need::Perm(keys::USERS_MANAGE, None, None));
    }
    Need::All(needs)
}

/// Parses (end-user role, stage) pairs of organization `org`.
fn parse_end_user_roles(
    v: &mut Violations,
    org: Uuid,
    items: &[pb::EndUserRoleInStage],
    field: &str,
) -> Vec<(Uuid, String)> {
    let mut out = Vec::new();
    for (i, x) in items.iter().enumerate() {
        let role = v.check(
            &format!("{field}[{i}].end_user_role"),
            names::end_user_role(&x.end_user_role)
                .filter(|(o, _, _)| *o == org)
                .map(|(_, _, r)| r)
                .ok_or("must be organizations/{organization}/apps/{app}/endUserRoles/{role}"),
        );
        let stage = v.check(
            &format!("{field}[{i}].stage"),
            names::stage(&x.stage)
                .filter(|(o, _)| *o == org)
                .map(|(_, s)| s)
                .ok_or("must be organizations/{organization}/stages/{stage}"),
        );
        if let (Some(r), Some(s)) = (role, stage) {
            out.push((r, s));
        }
    }
    out
}
