//! Mapped group memberships (R48) in the Customer Portal. Groups carry end-user roles only, and
//! the portal's records come from organization roles only (`../shared/seeds/004`), so portal-sync
//! treats a MAPPED membership exactly as an ASSIGNED one: it follows the membership's events
//! (added, re-typed, removed by a sign-in) without error and derives no record from either. A
//! person signed in through a provider becomes a portal member only through an organization
//! role, and a sign-in that then drops their mapped memberships leaves that record alone.

use serde_json::json;
use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::oidc_provider::Provider;

use crate::harness::*;
use crate::sync::{Setup, caught_up, fresh_derivation, records, setup};

crate::e2e_tests!(portal_sync_follows_mapped_memberships_like_assigned_ones);

/// The client id the organization registers the provider with.
pub(crate) const CLIENT: &str = "odc-portal";

fn stage(s: &Setup) -> String {
    format!("{}/stages/development", s.org.name)
}

/// A provider for the development stage's end-users that trusts every email, links nobody
/// and creates profiles.
pub(crate) async fn provider(w: &World, s: &Setup, issuer: String) -> String {
    w.id_providers(Some(&s.org.admin_token))
        .create_identity_provider(id::CreateIdentityProviderRequest {
            parent: s.org.name.clone(),
            identity_provider: Some(id::IdentityProvider {
                display_name: "Corporate SSO".into(),
                issuer,
                client_id: CLIENT.into(),
                email_trust: id::EmailTrust::All.into(),
                profile_linking: id::ProfileLinking::None.into(),
                auto_create_profiles: true,
                assignment: Some(id::identity_provider::Assignment::Stage(stage(s))),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// A group that maps claim `groups` holding `eng` and grants an end-user role of an app.
async fn mapped_group(w: &World, s: &Setup, provider: &str) -> String {
    let mut apps = w.id_apps(&s.org.admin_token);
    let app = apps
        .create_app(id::CreateAppRequest {
            parent: s.org.name.clone(),
            app: Some(id::App {
                display_name: "Orders".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let viewer = apps
        .create_end_user_role(id::CreateEndUserRoleRequest {
            parent: app,
            end_user_role: Some(id::EndUserRole {
                display_name: "Viewer".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let mut groups = w.id_groups(&s.org.admin_token);
    let group = groups
        .create_group(id::CreateGroupRequest {
            parent: s.org.name.clone(),
            group: Some(id::Group {
                display_name: "Engineers".into(),
                stage: stage(s),
                claim_mappings: vec![id::ClaimMapping {
                    identity_provider: provider.to_owned(),
                    claim: "groups".into(),
                    value: "eng".into(),
                    value_delimiter: ",".into(),
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    groups
        .add_group_roles(id::AddGroupRolesRequest {
            group: group.clone(),
            end_user_roles: vec![id::EndUserRoleInStage {
                end_user_role: viewer,
                stage: String::new(),
            }],
        })
        .await
        .unwrap();
    group
}

/// Gives `sub` the claims `claims` at the provider and signs them in with a fresh ID token;
/// the user.
pub(crate) async fn sign_in(
    w: &World,
    op: &Provider,
    provider: &str,
    sub: &str,
    claims: serde_json::Value,
) -> id::User {
    op.set_user(sub, claims).await;
    w.id_providers(None)
        .sign_in_with_identity_provider(id::SignInWithIdentityProviderRequest {
            identity_provider: provider.to_owned(),
            id_token: op.id_token(CLIENT, sub, "n").await,
            nonce: "n".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

/// The group's members and their membership types.
async fn members(w: &World, s: &Setup, group: &str) -> Vec<(String, Vec<i32>)> {
    let r = w
        .id_groups(&s.org.admin_token)
        .list_group_members(id::ListGroupMembersRequest {
            group: group.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.members.into_iter().map(|m| (m.user, m.types)).collect()
}

/// Waits for portal-sync to apply everything identity committed, and checks the sync is
/// healthy: syncing, no error.
pub(crate) async fn healthy(w: &World, s: &Setup) {
    caught_up(w, s).await;
    let st = w
        .sync(&w.portal_operator)
        .get_sync_status(portal::GetSyncStatusRequest {
            infrastructure: s.infra.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.last_error, "", "{st:?}");
    assert_eq!(st.health(), portal::SyncHealth::Syncing, "{st:?}");
}

/// Once [`healthy`], checks the records are `expected` and equal a fresh derivation from
/// identity's snapshot.
async fn portal_shows(w: &World, s: &Setup, expected: &[(&str, portal::InfrastructurePermission)]) {
    healthy(w, s).await;
    let got = records(w, s).await;
    let want = expected
        .iter()
        .map(|(e, p)| ((*e).to_owned(), *p))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got, fresh_derivation(w, s).await);
}

async fn portal_sync_follows_mapped_memberships_like_assigned_ones(b: Backend) {
    use portal::InfrastructurePermission::{
        InfrastructureAdmin as ADMIN, InfrastructureMember as MEMBER,
    };
    let Some(op) = Provider::start("mapped::portal_sync_follows_mapped_memberships", 3600).await
    else {
        return;
    };
    let w = World::start(b).await;
    let s = setup(&w).await;
    let p = provider(&w, &s, op.issuer()).await;
    let group = mapped_group(&w, &s, &p).await;
    let admin_only = [("admin@acme.example", ADMIN)];
    portal_shows(&w, &s, &admin_only).await;
    let (mapped, assigned) = (
        i32::from(id::MembershipType::Mapped),
        i32::from(id::MembershipType::Assigned),
    );

    // Two people sign in; the claim maps one of them into the group: no portal record.
    let m1_claims = json!({"email": "m1@acme.example", "groups": "qa, eng"});
    let m1 = sign_in(&w, &op, &p, "m1", m1_claims.clone()).await.name;
    let m2_claims = json!({"email": "m2@acme.example", "groups": "qa"});
    let m2 = sign_in(&w, &op, &p, "m2", m2_claims).await.name;
    assert_eq!(
        members(&w, &s, &group).await,
        vec![(m1.clone(), vec![mapped])]
    );
    portal_shows(&w, &s, &admin_only).await;

    // An ASSIGNED member, and the mapped one made ASSIGNED too: still no record.
    w.id_groups(&s.org.admin_token)
        .add_group_members(id::AddGroupMembersRequest {
            group: group.clone(),
            users: vec![m1.clone(), m2.clone()],
        })
        .await
        .unwrap();
    let mut both = members(&w, &s, &group).await;
    both.sort();
    let mut expected = vec![
        (m1.clone(), vec![assigned, mapped]),
        (m2.clone(), vec![assigned]),
    ];
    expected.sort();
    assert_eq!(both, expected);
    portal_shows(&w, &s, &admin_only).await;

    // An organization role makes m1 a portal member; the next sign-in drops the MAPPED type
    // (a member is never mapped) and the record stays, like the ASSIGNED membership.
    w.id_access(&s.org.admin_token)
        .assign_role(id::AssignRoleRequest {
            parent: s.org.name.clone(),
            principal: m1.clone(),
            role: format!("{}/roles/developer", s.org.name),
            scope: Some(id::Scope {
                kind: Some(id::scope::Kind::Organization(true)),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    let with_m1 = [("admin@acme.example", ADMIN), ("m1@acme.example", MEMBER)];
    portal_shows(&w, &s, &with_m1).await;
    assert_eq!(sign_in(&w, &op, &p, "m1", m1_claims).await.name, m1);
    let mut after = members(&w, &s, &group).await;
    after.sort();
    let mut expected = vec![(m1.clone(), vec![assigned]), (m2.clone(), vec![assigned])];
    expected.sort();
    assert_eq!(after, expected);
    portal_shows(&w, &s, &with_m1).await;

    // m2's claims change and m2 is mapped too; then m2 is removed by hand, keeping the MAPPED
    // type; then the claim goes away and the sign-in removes the membership: no record at
    // any point.
    let m2_claims = json!({"email": "m2@acme.example", "groups": ["eng"]});
    sign_in(&w, &op, &p, "m2", m2_claims).await;
    w.id_groups(&s.org.admin_token)
        .remove_group_members(id::RemoveGroupMembersRequest {
            group: group.clone(),
            users: vec![m2.clone()],
        })
        .await
        .unwrap();
    assert!(
        members(&w, &s, &group)
            .await
            .contains(&(m2.clone(), vec![mapped]))
    );
    portal_shows(&w, &s, &with_m1).await;
    sign_in(&w, &op, &p, "m2", json!({"email": "m2@acme.example"})).await;
    assert_eq!(members(&w, &s, &group).await, vec![(m1, vec![assigned])]);
    portal_shows(&w, &s, &with_m1).await;
}
