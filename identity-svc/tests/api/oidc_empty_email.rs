//! Profiles without an email (ODC's empty email): an external provider auto-creates one when
//! another user holds the token's address and the provider did not link the sign-in to them,
//! or when the token has no email; such a user is reached again by (provider, subject), lists
//! and pages by id among the other empty emails, holds end-user access but no member role,
//! and can be given a free email once.

use serde_json::json;
use shared::proto::identity::v1 as pb;
use shared::testkit::oidc_provider::Provider;
use tonic::Code;

use crate::api_tests;
use crate::helpers::*;
use crate::oidc::{CLIENT, app_for_oidc, create_provider, create_user, provider_req, sign_in};

api_tests!(
    a_taken_or_missing_email_creates_a_profile_without_one,
    users_without_an_email_page_by_id_and_hold_no_member_role,
    update_user_gives_a_user_without_an_email_one_once,
);

/// The taken address of these tests.
const TAKEN: &str = "taken@empty.example";

/// A provider (trusting every email, linking none, auto-creating), an app for it, its admin
/// and a user holding [`TAKEN`]; `None` when the provider package is missing.
async fn setup(
    backend: Backend,
    test: &str,
) -> Option<(Provider, TestApp, Session, pb::IdentityProvider)> {
    let op = Provider::start(test, 3600).await?;
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Empty").await;
    create_user(&app, &admin, TAKEN).await;
    let p = create_provider(
        &app,
        &admin,
        provider_req(
            &admin.org,
            &op.issuer(),
            pb::EmailTrust::All,
            pb::ProfileLinking::None,
            true,
        ),
    )
    .await;
    Some((op, app, admin, p))
}

/// Signs `sub` in (its claims set first); the response.
async fn sign_in_as(
    app: &TestApp,
    op: &Provider,
    p: &pb::IdentityProvider,
    sub: &str,
    claims: serde_json::Value,
) -> Result<pb::SignInWithIdentityProviderResponse, tonic::Status> {
    op.set_user(sub, claims).await;
    sign_in(app, &p.name, op.id_token(CLIENT, sub, "n").await, "n").await
}

/// The user `sub` of a taken address becomes (created by its first sign-in).
async fn clash(
    app: &TestApp,
    op: &Provider,
    p: &pb::IdentityProvider,
    sub: &str,
) -> pb::SignInWithIdentityProviderResponse {
    let claims = json!({"email": TAKEN, "email_verified": true, "name": sub});
    sign_in_as(app, op, p, sub, claims).await.unwrap()
}

async fn get_user(app: &TestApp, admin: &Session, name: &str) -> pb::User {
    app.users(Some(&admin.token))
        .get_user(pb::GetUserRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn a_taken_or_missing_email_creates_a_profile_without_one(backend: Backend) {
    let Some((op, app, admin, p)) = setup(backend, "empty_email_created").await else {
        return;
    };
    let first = clash(&app, &op, &p, "p1").await;
    assert!(first.user_created);
    let u1 = first.user.unwrap();
    assert_eq!(u1.email, "", "another user holds the address");
    assert_eq!(u1.state(), pb::UserState::Active);
    assert!(!u1.is_member);
    let profile = &u1.provider_profiles[0];
    assert_eq!(
        (profile.subject.as_str(), profile.email.as_str()),
        ("p1", TAKEN),
        "the provider profile keeps the token's address"
    );
    assert!(!first.session_token.is_empty());

    // The same subject reaches the same user; another subject with the address is another one.
    let again = clash(&app, &op, &p, "p1").await;
    assert!(!again.user_created);
    assert_eq!(again.user.unwrap().name, u1.name);
    let u2 = clash(&app, &op, &p, "p2").await.user.unwrap();
    assert_ne!(u2.name, u1.name);
    assert_eq!(u2.email, "");

    // No email claim at all: also a profile without one.
    let none = sign_in_as(&app, &op, &p, "p3", json!({"name": "No Mail"}))
        .await
        .unwrap();
    assert!(none.user_created);
    let u3 = none.user.unwrap();
    assert_eq!(
        (u3.email.as_str(), u3.display_name.as_str()),
        ("", "No Mail")
    );

    let got = get_user(&app, &admin, &u1.name).await;
    assert_eq!(got.email, "");
    assert_eq!(got.provider_profiles.len(), 1);
    // The holder of the address is untouched, and nobody logs in with an empty email.
    let r = app
        .users(None)
        .login(pb::LoginRequest {
            organization: admin.org.clone(),
            email: String::new(),
            password: PASSWORD.into(),
        })
        .await;
    assert_bad_field(r, "email");

    // The change events carry the empty email like Get does.
    let events = app
        .audit(Some(&admin.token))
        .list_change_events(pb::ListChangeEventsRequest {
            parent: admin.org.clone(),
            target: u1.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let created = events.iter().find(|e| e.action == "user.created").unwrap();
    let Some(pb::resource::Kind::User(after)) = created.after.as_ref().and_then(|r| r.kind.clone())
    else {
        panic!("user.created carries the user: {created:?}");
    };
    assert_eq!(after.email, "");
}

/// Every user of the organization in ListUsers order, a page of one at a time.
async fn pages_of_one(app: &TestApp, admin: &Session, prefix: &str) -> Vec<pb::User> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .users(Some(&admin.token))
            .list_users(pb::ListUsersRequest {
                parent: admin.org.clone(),
                page_size: 1,
                page_token: token,
                email_prefix: prefix.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.users.len() <= 1);
        out.extend(page.users);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The id part of a user's name (the order among users without an email).
fn id_of(u: &pb::User) -> &str {
    u.name.rsplit('/').next().unwrap()
}

async fn users_without_an_email_page_by_id_and_hold_no_member_role(backend: Backend) {
    let Some((op, app, admin, p)) = setup(backend, "empty_email_paging").await else {
        return;
    };
    let mut empty = Vec::new();
    for sub in ["a", "b", "c", "d"] {
        empty.push(clash(&app, &op, &p, sub).await.user.unwrap());
    }
    empty.sort_by(|x, y| id_of(x).cmp(id_of(y)));

    let listed = pages_of_one(&app, &admin, "").await;
    let names: Vec<&str> = listed.iter().map(|u| u.name.as_str()).collect();
    let mut expected: Vec<&str> = empty.iter().map(|u| u.name.as_str()).collect();
    let admin_user = get_user(&app, &admin, &admin.user).await;
    let mut emails: Vec<&pb::User> = listed.iter().filter(|u| !u.email.is_empty()).collect();
    emails.sort_by(|x, y| x.email.cmp(&y.email));
    expected.extend(emails.iter().map(|u| u.name.as_str()));
    assert_eq!(names, expected, "empty emails first, by id, then by email");
    assert_eq!(
        listed.len(),
        6,
        "four without an email, the admin and {TAKEN}"
    );
    assert!(names.contains(&admin_user.name.as_str()));
    let taken = pages_of_one(&app, &admin, "taken").await;
    assert_eq!(
        taken.len(),
        1,
        "an email prefix leaves the empty emails out"
    );

    let snapshot = app
        .audit(Some(&admin.token))
        .get_snapshot(pb::GetSnapshotRequest {
            parent: admin.org.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let in_snapshot: Vec<&str> = snapshot.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(in_snapshot, expected);

    no_member_role_but_end_user_access(&app, &admin, &empty).await;
}

/// An organization or app role is refused to a user without an email; an end-user grant and
/// groups are fine, and a group's members page by id among empty emails.
async fn no_member_role_but_end_user_access(app: &TestApp, admin: &Session, empty: &[pb::User]) {
    let shop = app.app(admin, "Shop").await;
    let scopes = [
        pb::scope::Kind::Organization(true),
        pb::scope::Kind::App(shop.clone()),
    ];
    for kind in scopes {
        let r = app
            .access(Some(&admin.token))
            .assign_role(pb::AssignRoleRequest {
                parent: admin.org.clone(),
                principal: empty[0].name.clone(),
                role: role(&admin.org, "developer"),
                scope: Some(pb::Scope { kind: Some(kind) }),
                grant_period: None,
            })
            .await;
        assert_code(r, Code::FailedPrecondition, Some("EMAIL_REQUIRED"));
    }
    assert!(!get_user(app, admin, &empty[0].name).await.is_member);

    let buyer = app.end_user_role(admin, &shop, "Buyer").await;
    app.access(Some(&admin.token))
        .grant_end_user_role(pb::GrantEndUserRoleRequest {
            parent: admin.org.clone(),
            grant: Some(pb::EndUserRoleGrant {
                user: empty[0].name.clone(),
                end_user_role: buyer,
                stage: stage(&admin.org, "development"),
            }),
        })
        .await
        .unwrap();
    let groups = app.groups(Some(&admin.token));
    let group = groups
        .clone()
        .create_group(pb::CreateGroupRequest {
            parent: admin.org.clone(),
            group: Some(pb::Group {
                display_name: "Customers".into(),
                stage: stage(&admin.org, "development"),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    groups
        .clone()
        .add_group_members(pb::AddGroupMembersRequest {
            group: group.clone(),
            users: empty.iter().map(|u| u.name.clone()).collect(),
        })
        .await
        .unwrap();
    assert!(get_user(app, admin, &empty[0].name).await.is_end_user);
    let mut members = Vec::new();
    let mut token = String::new();
    loop {
        let page = groups
            .clone()
            .list_group_members(pb::ListGroupMembersRequest {
                group: group.clone(),
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        members.extend(page.users);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = empty.iter().map(|u| u.name.clone()).collect();
    assert_eq!(members, expected);
}

fn set_email(user: &str, email: &str) -> pb::UpdateUserRequest {
    pb::UpdateUserRequest {
        user: Some(pb::User {
            name: user.into(),
            email: email.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["email".into()],
        }),
    }
}

async fn update_user_gives_a_user_without_an_email_one_once(backend: Backend) {
    let Some((op, app, admin, p)) = setup(backend, "empty_email_update").await else {
        return;
    };
    let signed = clash(&app, &op, &p, "p1").await;
    let u = signed.user.unwrap();
    let users = app.users(Some(&admin.token));

    let r = users.clone().update_user(set_email(&u.name, TAKEN)).await;
    assert_code(r, Code::AlreadyExists, Some("EMAIL_TAKEN"));
    assert_bad_field(
        users.clone().update_user(set_email(&u.name, "")).await,
        "user.email",
    );
    assert_bad_field(
        users
            .clone()
            .update_user(set_email(&u.name, "not mail"))
            .await,
        "user.email",
    );
    // The user themselves may rename, not set an email.
    let own = app.users(Some(&signed.session_token));
    let r = own
        .clone()
        .update_user(set_email(&u.name, "me@empty.example"))
        .await;
    assert_code(r, Code::PermissionDenied, None);
    // An update without a mask still changes the display name only.
    let renamed = own
        .clone()
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                name: u.name.clone(),
                display_name: "Pat".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (renamed.email.as_str(), renamed.display_name.as_str()),
        ("", "Pat")
    );
    assert_eq!(
        get_user(&app, &admin, &u.name).await.email,
        "",
        "refusals changed nothing"
    );

    let given = users
        .clone()
        .update_user(set_email(&u.name, " Pat@Empty.example "))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(given.email, "pat@empty.example");
    assert_eq!(given.display_name, "Pat", "the mask names only email");
    users
        .clone()
        .update_user(set_email(&u.name, "pat@empty.example"))
        .await
        .unwrap();
    let r = users
        .clone()
        .update_user(set_email(&u.name, "other@empty.example"))
        .await;
    assert_code(r, Code::FailedPrecondition, Some("EMAIL_ALREADY_SET"));

    // Now a member role is possible; then the provider's token, whose address is not theirs,
    // no longer signs them in.
    app.access(Some(&admin.token))
        .assign_role(pb::AssignRoleRequest {
            parent: admin.org.clone(),
            principal: u.name.clone(),
            role: role(&admin.org, "developer"),
            scope: Some(pb::Scope {
                kind: Some(pb::scope::Kind::Organization(true)),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    let claims = json!({"email": TAKEN, "email_verified": true});
    let r = sign_in_as(&app, &op, &p, "p1", claims).await;
    assert_code(r, Code::Unauthenticated, Some("EMAIL_NOT_VERIFIED"));
}
