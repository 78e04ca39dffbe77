//! Domain → protobuf encodings: the resources as Get and List return them.
//!
//! `events` encodes change events, whose resources reuse these encodings.

use shared::proto::identity::v1 as pb;
use uuid::Uuid;

use super::ts;
use crate::auth::principal_name;
use crate::core::TokenRecord;
use crate::domain::model::{
    App, Assignment, EmailTrust, EndUserGrant, EndUserRole, GrantPhase, Group, IdentityProvider,
    IdpAssignment, Micros, Organization, ProfileLinking, ProviderProfile, Role, ScopeKey,
    ServiceAccount, Stage, StagePurpose, User, UserState,
};
use crate::domain::names::fmt;
use crate::domain::permissions::engine::Reason;
use crate::domain::state::OrgState;

mod events;

pub use events::{event, group_member};

/// Organization.
pub fn organization(o: &Organization) -> pb::Organization {
    pb::Organization {
        name: fmt::org(o.id),
        display_name: o.display_name.clone(),
        create_time: ts(o.create_time),
        update_time: ts(o.update_time),
        etag: o.rev.to_string(),
    }
}

/// Stage.
pub fn stage(org: Uuid, s: &Stage) -> pb::Stage {
    pb::Stage {
        name: fmt::stage(org, &s.key),
        display_name: s.display_name.clone(),
        order: i32::try_from(s.order).unwrap_or(i32::MAX),
        purpose: match s.purpose {
            StagePurpose::Development => pb::StagePurpose::Development,
            StagePurpose::NonProduction => pb::StagePurpose::NonProduction,
            StagePurpose::Production => pb::StagePurpose::Production,
        }
        .into(),
        etag: s.rev.to_string(),
    }
}

/// Every stage in order.
pub fn stages(st: &OrgState) -> pb::ListStagesResponse {
    pb::ListStagesResponse {
        stages: st
            .ordered_stages()
            .into_iter()
            .map(|s| stage(st.org.id, s))
            .collect(),
    }
}

/// App.
pub fn app(org: Uuid, a: &App) -> pb::App {
    pb::App {
        name: fmt::app(org, a.id),
        display_name: a.display_name.clone(),
        create_time: ts(a.create_time),
    }
}

/// End-user role.
pub fn end_user_role(org: Uuid, r: &EndUserRole) -> pb::EndUserRole {
    pb::EndUserRole {
        name: fmt::end_user_role(org, r.app, r.id),
        display_name: r.display_name.clone(),
    }
}

/// End-user role name by id (empty when unknown).
pub fn end_user_role_name(st: &OrgState, id: Uuid) -> String {
    st.end_user_roles
        .get(&id)
        .map(|r| fmt::end_user_role(st.org.id, r.app, r.id))
        .unwrap_or_default()
}

/// User, with its facets.
pub fn user(st: &OrgState, u: &User) -> pb::User {
    pb::User {
        is_member: st.is_member(u.id),
        is_end_user: st.is_end_user(u.id),
        invitation_expire_time: st.invitations.get(&u.id).and_then(|i| ts(i.expire_time)),
        provider_profiles: st
            .user_provider_profiles
            .get(&u.id)
            .into_iter()
            .flatten()
            .filter_map(|k| st.provider_profiles.get(k))
            .map(|p| provider_profile(st.org.id, p))
            .collect(),
        ..user_fields(st.org.id, u)
    }
}

/// A user's profile at an identity provider.
pub fn provider_profile(org: Uuid, p: &ProviderProfile) -> pb::ProviderProfile {
    pb::ProviderProfile {
        identity_provider: fmt::identity_provider(org, p.provider),
        user: fmt::user(org, p.user),
        subject: p.subject.clone(),
        username: p.username.clone(),
        email: p.email.clone(),
        email_verified: p.email_verified,
        first_login_time: ts(p.first_login_time),
        last_login_time: ts(p.last_login_time),
    }
}

/// Identity provider.
pub fn identity_provider(org: Uuid, p: &IdentityProvider) -> pb::IdentityProvider {
    use pb::identity_provider::Assignment;
    pb::IdentityProvider {
        name: fmt::identity_provider(org, p.id),
        display_name: p.display_name.clone(),
        issuer: p.issuer.clone(),
        client_id: p.client_id.clone(),
        allowed_audiences: p.allowed_audiences.clone(),
        email_trust: match p.email_trust {
            EmailTrust::None => pb::EmailTrust::None,
            EmailTrust::VerifiedClaim => pb::EmailTrust::VerifiedClaim,
            EmailTrust::All => pb::EmailTrust::All,
        }
        .into(),
        profile_linking: match p.profile_linking {
            ProfileLinking::Email => pb::ProfileLinking::Email,
            ProfileLinking::Username => pb::ProfileLinking::Username,
            ProfileLinking::None => pb::ProfileLinking::None,
        }
        .into(),
        auto_create_profiles: p.auto_create_profiles,
        assignment: Some(match &p.assignment {
            IdpAssignment::Organization => Assignment::OrganizationScope(true),
            IdpAssignment::Stage(k) => Assignment::Stage(fmt::stage(org, k)),
        }),
        create_time: ts(p.create_time),
        update_time: ts(p.update_time),
        etag: p.rev.to_string(),
    }
}

/// A user's own fields; the facets, which other resources decide, are left unset.
pub fn user_fields(org: Uuid, u: &User) -> pb::User {
    pb::User {
        name: fmt::user(org, u.id),
        email: u.email.to_string(),
        display_name: u.display_name.clone(),
        state: match u.state {
            UserState::Invited => pb::UserState::Invited,
            UserState::Active => pb::UserState::Active,
            UserState::Inactive => pb::UserState::Inactive,
        }
        .into(),
        is_member: false,
        is_end_user: false,
        invitation_expire_time: None,
        provider_profiles: Vec::new(),
        invitation_delivery: None,
        create_time: ts(u.create_time),
        update_time: ts(u.update_time),
        etag: u.rev.to_string(),
    }
}

/// Role, with its assignment count.
pub fn role(st: &OrgState, r: &Role) -> pb::Role {
    pb::Role {
        assignment_count: i32::try_from(
            st.role_holders
                .get(&r.id)
                .map_or(0, std::collections::BTreeSet::len),
        )
        .unwrap_or(i32::MAX),
        ..role_fields(st.org.id, r)
    }
}

/// A role's own fields; the assignment count, which the assignments decide, is left at 0.
pub fn role_fields(org: Uuid, r: &Role) -> pb::Role {
    pb::Role {
        name: fmt::role(org, &r.id),
        display_name: r.display_name.clone(),
        description: r.description.clone(),
        built_in: r.built_in,
        grants: r
            .grants
            .iter()
            .map(|g| pb::PermissionGrant {
                permission: g.permission.clone(),
                stages: g
                    .stages
                    .iter()
                    .flatten()
                    .map(|s| fmt::stage(org, s))
                    .collect(),
            })
            .collect(),
        assignment_count: 0,
        create_time: ts(r.create_time),
        update_time: ts(r.update_time),
        etag: r.rev.to_string(),
    }
}

/// `organizations/{org}/{collection}/{id}`, spelled as `names::fmt` spells it but without the
/// formatting machinery: the answers of CheckPermission and ListPermissionHolders carry several
/// such names per reason.
fn org_child_name(org: Uuid, collection: &str, id: &str) -> String {
    const ORGS: &str = "organizations/";
    let mut s = String::with_capacity(
        ORGS.len() + uuid::fmt::Hyphenated::LENGTH + collection.len() + id.len() + 2,
    );
    s.push_str(ORGS);
    s.push_str(org.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    s.push('/');
    s.push_str(collection);
    s.push('/');
    s.push_str(id);
    s
}

/// Scope.
pub fn scope(org: Uuid, s: ScopeKey) -> pb::Scope {
    pb::Scope {
        kind: Some(match s {
            ScopeKey::Organization => pb::scope::Kind::Organization(true),
            ScopeKey::App(a) => pb::scope::Kind::App(org_child_name(
                org,
                "apps",
                a.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
            )),
        }),
    }
}

/// Role assignment.
/// As committed: the state is the committed phase (change events, snapshots).
pub fn assignment(org: Uuid, a: &Assignment) -> pb::RoleAssignment {
    with_state(org, a, a.phase)
}

/// As answered at `now`: an ACTIVE grant whose end has passed is EXPIRED (AssignRole,
/// ListRoleAssignments).
pub fn assignment_at(org: Uuid, a: &Assignment, now: Micros) -> pb::RoleAssignment {
    with_state(org, a, a.phase_at(now))
}

fn with_state(org: Uuid, a: &Assignment, phase: GrantPhase) -> pb::RoleAssignment {
    let state = match phase {
        GrantPhase::Scheduled => pb::GrantState::Scheduled,
        GrantPhase::Active => pb::GrantState::Active,
        GrantPhase::Expired => pb::GrantState::Expired,
    };
    pb::RoleAssignment {
        principal: principal_name(org, a.principal),
        role: fmt::role(org, &a.role),
        scope: Some(scope(org, a.scope)),
        create_time: ts(a.create_time),
        grant_period: a.period.map(|p| pb::GrantPeriod {
            start_time: p.start.and_then(ts),
            end_time: p.end.and_then(ts),
        }),
        state: state.into(),
    }
}

/// Direct end-user role grant.
pub fn end_user_grant(org: Uuid, g: &EndUserGrant) -> pb::EndUserRoleGrant {
    pb::EndUserRoleGrant {
        user: fmt::user(org, g.user),
        end_user_role: fmt::end_user_role(org, g.app, g.end_user_role),
        stage: fmt::stage(org, &g.stage),
    }
}

/// An access reason.
pub fn reason(org: Uuid, r: &Reason<'_>) -> pb::AccessReason {
    pb::AccessReason {
        role: org_child_name(org, "roles", r.role),
        scope: Some(scope(org, r.scope)),
        implication_chain: r.chain.iter().map(|s| (*s).to_owned()).collect(),
        stages: r
            .stages
            .into_iter()
            .flatten()
            .map(|s| org_child_name(org, "stages", s))
            .collect(),
    }
}

/// Group with its roles, apps and member count.
pub fn group(st: &OrgState, g: &Group) -> pb::Group {
    let org = st.org.id;
    let roles: Vec<Uuid> = st
        .group_roles
        .get(&g.id)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let mut apps: Vec<String> = roles
        .iter()
        .filter_map(|r| st.end_user_roles.get(r).map(|r| fmt::app(org, r.app)))
        .collect();
    apps.sort();
    apps.dedup();
    pb::Group {
        end_user_roles: roles.iter().map(|r| end_user_role_name(st, *r)).collect(),
        apps,
        member_count: i32::try_from(
            st.group_members
                .get(&g.id)
                .map_or(0, crate::domain::state::SortedSet::len),
        )
        .unwrap_or(i32::MAX),
        ..group_fields(org, g)
    }
}

/// A group's own fields; its roles, apps and member count, which its group roles and members
/// decide, are left empty.
pub fn group_fields(org: Uuid, g: &Group) -> pb::Group {
    pb::Group {
        name: fmt::group(org, g.id),
        display_name: g.display_name.clone(),
        description: g.description.clone(),
        stage: fmt::stage(org, &g.stage),
        end_user_roles: Vec::new(),
        apps: Vec::new(),
        member_count: 0,
        create_time: ts(g.create_time),
        update_time: ts(g.update_time),
        etag: g.rev.to_string(),
        claim_mappings: g
            .claim_mappings
            .iter()
            .map(|m| pb::ClaimMapping {
                identity_provider: fmt::identity_provider(org, m.provider),
                claim: m.claim.clone(),
                value: m.value.clone(),
                value_delimiter: m.delimiter.clone(),
            })
            .collect(),
    }
}

/// Service account.
pub fn service_account(org: Uuid, s: &ServiceAccount) -> pb::ServiceAccount {
    pb::ServiceAccount {
        name: fmt::service_account(org, s.id),
        display_name: s.display_name.clone(),
        create_time: ts(s.create_time),
    }
}

/// Service-account token metadata.
pub fn token(t: &TokenRecord) -> pb::ServiceAccountToken {
    let sa = match t.principal {
        crate::domain::model::Principal::ServiceAccount(s) => s,
        crate::domain::model::Principal::User(u) => u,
    };
    pb::ServiceAccountToken {
        name: fmt::service_account_token(t.org, sa, t.id),
        create_time: ts(t.create_time),
        expire_time: ts(t.expire_time),
        revoke_time: t.revoke_time.and_then(ts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_built_directly_are_the_names_of_names_fmt() {
        let org = Uuid::new_v4();
        let app = Uuid::new_v4();
        for role in ["administrator", "developer", &Uuid::new_v4().to_string()] {
            assert_eq!(org_child_name(org, "roles", role), fmt::role(org, role));
        }
        for stage in ["development", "qa", "production", "x"] {
            assert_eq!(org_child_name(org, "stages", stage), fmt::stage(org, stage));
        }
        assert_eq!(
            scope(org, ScopeKey::App(app)).kind,
            Some(pb::scope::Kind::App(fmt::app(org, app)))
        );
        let stages = std::collections::BTreeSet::from(["qa".to_owned(), "production".to_owned()]);
        let r = reason(
            org,
            &Reason {
                role: "developer",
                scope: ScopeKey::App(app),
                chain: &["asset.change", "asset.debug"],
                stages: Some(&stages),
            },
        );
        assert_eq!(r.role, fmt::role(org, "developer"));
        assert_eq!(r.implication_chain, vec!["asset.change", "asset.debug"]);
        assert_eq!(
            r.stages,
            vec![fmt::stage(org, "production"), fmt::stage(org, "qa")]
        );
    }
}
