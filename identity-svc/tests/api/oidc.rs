//! External identity providers: CRUD with etags, masks and change events, and sign-in with ID
//! tokens a real OpenID provider issued (`shared::testkit::oidc_provider`): discovery and JWKS,
//! key rotation, refusals with their reasons, ODC's linking rules for each `email_trust`,
//! auto-creation, invited → active. Profiles without an email: `oidc_empty_email.rs`.

use std::time::Duration;

use serde_json::json;
use shared::proto::identity::v1 as pb;
use tonic::Code;

use crate::api_tests;
use crate::helpers::*;
use shared::testkit::oidc_provider::Provider;

/// The client id the organization is registered with.
pub(crate) const CLIENT: &str = "odc-portal";

api_tests!(
    identity_providers_have_crud_with_etags_masks_and_events,
    identity_providers_need_manage_authentication,
    sign_in_links_by_email_only_when_the_email_is_trusted,
    auto_create_makes_an_end_user_and_keeps_the_profile,
    an_invited_user_signing_in_becomes_active,
    refuses_wrong_audience_issuer_nonce_and_expired_tokens,
    a_rotated_key_is_fetched_once_per_bound,
);

/// The app with the settings a local http provider needs.
pub(crate) async fn app_for_oidc(backend: Backend) -> TestApp {
    let mut app = spawn_app(backend).await;
    app.stop().await;
    app.tweak = Some(Box::new(|s| {
        s.oidc.allow_http_issuers = true;
        s.oidc.jwks_refetch_min_secs = 10;
    }));
    app.start().await;
    app
}

pub(crate) fn provider_req(
    org: &str,
    issuer: &str,
    trust: pb::EmailTrust,
    linking: pb::ProfileLinking,
    auto_create: bool,
) -> pb::CreateIdentityProviderRequest {
    pb::CreateIdentityProviderRequest {
        parent: org.to_owned(),
        identity_provider: Some(pb::IdentityProvider {
            display_name: "Corporate SSO".into(),
            issuer: issuer.to_owned(),
            client_id: CLIENT.into(),
            email_trust: trust.into(),
            profile_linking: linking.into(),
            auto_create_profiles: auto_create,
            assignment: Some(pb::identity_provider::Assignment::Stage(stage(
                org,
                "development",
            ))),
            ..Default::default()
        }),
    }
}

pub(crate) async fn create_provider(
    app: &TestApp,
    admin: &Session,
    req: pb::CreateIdentityProviderRequest,
) -> pb::IdentityProvider {
    app.identity_providers(Some(&admin.token))
        .create_identity_provider(req)
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn sign_in(
    app: &TestApp,
    provider: &str,
    id_token: String,
    nonce: &str,
) -> Result<pb::SignInWithIdentityProviderResponse, tonic::Status> {
    app.identity_providers(None)
        .sign_in_with_identity_provider(pb::SignInWithIdentityProviderRequest {
            identity_provider: provider.to_owned(),
            id_token,
            nonce: nonce.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn set_trust(app: &TestApp, admin: &Session, p: &pb::IdentityProvider, t: pb::EmailTrust) {
    app.identity_providers(Some(&admin.token))
        .update_identity_provider(pb::UpdateIdentityProviderRequest {
            identity_provider: Some(pb::IdentityProvider {
                name: p.name.clone(),
                email_trust: t.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email_trust".into()],
            }),
        })
        .await
        .unwrap();
}

pub(crate) async fn create_user(app: &TestApp, admin: &Session, email: &str) -> pb::User {
    app.users(Some(&admin.token))
        .create_user(pb::CreateUserRequest {
            parent: admin.org.clone(),
            user: Some(pb::User {
                email: email.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn identity_providers_have_crud_with_etags_masks_and_events(backend: Backend) {
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Idp").await;
    let mut c = app.identity_providers(Some(&admin.token));
    let req = provider_req(
        &admin.org,
        "https://login.example.com",
        pb::EmailTrust::VerifiedClaim,
        pb::ProfileLinking::Email,
        false,
    );
    let p = create_provider(&app, &admin, req.clone()).await;
    assert!(
        p.name
            .starts_with(&format!("{}/identityProviders/", admin.org))
    );
    assert_code(
        c.create_identity_provider(req.clone()).await,
        Code::AlreadyExists,
        Some("IDENTITY_PROVIDER_EXISTS"),
    );
    let mut bad = req.clone();
    bad.identity_provider.as_mut().unwrap().issuer = "not a url".into();
    assert_bad_field(
        c.create_identity_provider(bad).await,
        "identity_provider.issuer",
    );
    let mut bad = req.clone();
    bad.identity_provider.as_mut().unwrap().assignment = None;
    assert_bad_field(
        c.create_identity_provider(bad).await,
        "identity_provider.assignment",
    );

    let got = c
        .get_identity_provider(pb::GetIdentityProviderRequest {
            name: p.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, p);
    let update = |etag: &str| pb::UpdateIdentityProviderRequest {
        identity_provider: Some(pb::IdentityProvider {
            name: p.name.clone(),
            display_name: "Renamed".into(),
            assignment: Some(pb::identity_provider::Assignment::OrganizationScope(true)),
            etag: etag.to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into(), "organization_scope".into()],
        }),
    };
    let updated = c
        .update_identity_provider(update(&p.etag))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "Renamed");
    assert_eq!(updated.issuer, p.issuer, "outside the mask: unchanged");
    assert_eq!(
        updated.assignment,
        Some(pb::identity_provider::Assignment::OrganizationScope(true))
    );
    assert_code(
        c.update_identity_provider(update(&p.etag)).await,
        Code::Aborted,
        None,
    );
    let list = c
        .list_identity_providers(pb::ListIdentityProvidersRequest {
            parent: admin.org.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.identity_providers, vec![updated.clone()]);
    c.delete_identity_provider(pb::DeleteIdentityProviderRequest {
        name: p.name.clone(),
        etag: updated.etag.clone(),
    })
    .await
    .unwrap();
    assert_code(
        c.get_identity_provider(pb::GetIdentityProviderRequest {
            name: p.name.clone(),
        })
        .await,
        Code::NotFound,
        None,
    );
    let events = app
        .audit(Some(&admin.token))
        .list_change_events(pb::ListChangeEventsRequest {
            parent: admin.org.clone(),
            target: p.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "identity_provider.created",
            "identity_provider.updated",
            "identity_provider.deleted"
        ]
    );
    let typed = events[1].after.as_ref().and_then(|r| r.kind.clone());
    assert_eq!(typed, Some(pb::resource::Kind::IdentityProvider(updated)));
    a_stage_with_an_identity_provider_stays(&app, &admin).await;
}

/// A stage an identity provider is assigned to cannot be deleted.
async fn a_stage_with_an_identity_provider_stays(app: &TestApp, admin: &Session) {
    let mut req = provider_req(
        &admin.org,
        "https://qa-login.example.com",
        pb::EmailTrust::None,
        pb::ProfileLinking::None,
        false,
    );
    let p = req.identity_provider.as_mut().unwrap();
    p.display_name = "QA SSO".into();
    p.assignment = Some(pb::identity_provider::Assignment::Stage(stage(
        &admin.org, "qa",
    )));
    create_provider(app, admin, req).await;
    let r = app
        .stages(Some(&admin.token))
        .delete_stage(pb::DeleteStageRequest {
            name: stage(&admin.org, "qa"),
        })
        .await;
    assert_code(r, Code::FailedPrecondition, Some("STAGE_IN_USE"));
}

async fn identity_providers_need_manage_authentication(backend: Backend) {
    let app = app_for_oidc(backend).await;
    let admin = app.admin("IdpAuth").await;
    let dev = app.member(&admin, "dev@idpauth.example", "developer").await;
    let req = provider_req(
        &admin.org,
        "https://login.example.com",
        pb::EmailTrust::None,
        pb::ProfileLinking::None,
        false,
    );
    assert_code(
        app.identity_providers(Some(&dev.token))
            .create_identity_provider(req)
            .await,
        Code::PermissionDenied,
        None,
    );
    assert_code(
        app.identity_providers(Some(&dev.token))
            .list_identity_providers(pb::ListIdentityProvidersRequest {
                parent: admin.org.clone(),
            })
            .await,
        Code::PermissionDenied,
        None,
    );
}

async fn sign_in_links_by_email_only_when_the_email_is_trusted(backend: Backend) {
    let Some(op) = Provider::start("sign_in_links_by_email", 3600).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Link").await;
    let existing = create_user(&app, &admin, "ana@link.example").await;
    let p = create_provider(
        &app,
        &admin,
        provider_req(
            &admin.org,
            &op.issuer(),
            pb::EmailTrust::None,
            pb::ProfileLinking::Email,
            false,
        ),
    )
    .await;
    let op = &op;
    let token = move |sub: &'static str| async move { op.id_token(CLIENT, sub, "n").await };
    op.set_user(
        "unverified",
        json!({"email": "Ana@link.example", "email_verified": false}),
    )
    .await;
    op.set_user(
        "verified",
        json!({"email": "ana@link.example", "email_verified": true}),
    )
    .await;

    // NONE: never trusted, so never linked (and no auto-creation here).
    let r = sign_in(&app, &p.name, token("verified").await, "n").await;
    assert_code(r, Code::Unauthenticated, Some("NO_LINKED_USER"));
    // VERIFIED_CLAIM: only with email_verified.
    set_trust(&app, &admin, &p, pb::EmailTrust::VerifiedClaim).await;
    let r = sign_in(&app, &p.name, token("unverified").await, "n").await;
    assert_code(r, Code::Unauthenticated, Some("NO_LINKED_USER"));
    let r = sign_in(&app, &p.name, token("verified").await, "n")
        .await
        .unwrap();
    assert_eq!(r.user.as_ref().unwrap().name, existing.name);
    assert!(!r.user_created);
    // ALL: the unverified email links too.
    set_trust(&app, &admin, &p, pb::EmailTrust::All).await;
    let r = sign_in(&app, &p.name, token("unverified").await, "n")
        .await
        .unwrap();
    let user = r.user.unwrap();
    assert_eq!(user.name, existing.name);
    let mut subjects: Vec<_> = user
        .provider_profiles
        .iter()
        .map(|x| x.subject.as_str())
        .collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["unverified", "verified"]);
    // The session works.
    let me = app
        .users(Some(&r.session_token))
        .get_user(pb::GetUserRequest {
            name: existing.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.provider_profiles.len(), 2);

    // A member (organization role) is let in only with a trusted email: under NONE, a profile
    // already linked is refused.
    let member_email = "admin@link.example";
    op.set_user(
        "admin",
        json!({"email": member_email, "email_verified": true}),
    )
    .await;
    let r = sign_in(&app, &p.name, token("admin").await, "n")
        .await
        .unwrap();
    assert!(r.user.unwrap().is_member, "roles stay as assigned");
    set_trust(&app, &admin, &p, pb::EmailTrust::None).await;
    let r = sign_in(&app, &p.name, token("admin").await, "n").await;
    assert_code(r, Code::Unauthenticated, Some("EMAIL_NOT_VERIFIED"));
    // An inactive user is refused.
    app.users(Some(&admin.token))
        .deactivate_user(pb::DeactivateUserRequest {
            name: existing.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = sign_in(&app, &p.name, token("verified").await, "n").await;
    assert_code(r, Code::Unauthenticated, Some("USER_INACTIVE"));
}

async fn auto_create_makes_an_end_user_and_keeps_the_profile(backend: Backend) {
    let Some(op) = Provider::start("auto_create", 3600).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Auto").await;
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
    op.set_user(
        "new-person",
        json!({"email": "new@auto.example", "email_verified": true, "name": "New Person",
               "preferred_username": "newp"}),
    )
    .await;
    let first = sign_in(
        &app,
        &p.name,
        op.id_token(CLIENT, "new-person", "a").await,
        "a",
    )
    .await
    .unwrap();
    assert!(first.user_created);
    let user = first.user.unwrap();
    assert_eq!(user.email, "new@auto.example");
    assert_eq!(user.display_name, "New Person");
    assert_eq!(user.state(), pb::UserState::Active);
    assert!(
        !user.is_member,
        "a sign-in never grants organization access"
    );
    let profile = &user.provider_profiles[0];
    assert_eq!(
        (profile.subject.as_str(), profile.username.as_str()),
        ("new-person", "newp")
    );
    assert_eq!(profile.identity_provider, p.name);

    app.clock.advance(Duration::from_secs(5));
    let again = sign_in(
        &app,
        &p.name,
        op.id_token(CLIENT, "new-person", "b").await,
        "b",
    )
    .await
    .unwrap();
    assert!(!again.user_created);
    let again_user = again.user.unwrap();
    assert_eq!(again_user.name, user.name);
    let later = &again_user.provider_profiles[0];
    assert_eq!(later.first_login_time, profile.first_login_time);
    assert!(
        later.last_login_time.as_ref().unwrap().seconds
            > profile.last_login_time.as_ref().unwrap().seconds
    );

    // An address another user holds: `oidc_empty_email.rs`.

    let events = app
        .audit(Some(&admin.token))
        .list_change_events(pb::ListChangeEventsRequest {
            parent: admin.org.clone(),
            actor: p.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.created",
            "provider_profile.linked",
            "provider_profile.signed_in"
        ]
    );
}

async fn an_invited_user_signing_in_becomes_active(backend: Backend) {
    let Some(op) = Provider::start("invited_becomes_active", 3600).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Invited").await;
    let invited = app
        .users(Some(&admin.token))
        .invite_user(pb::InviteUserRequest {
            parent: admin.org.clone(),
            email: "guest@invited.example".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invited.state(), pb::UserState::Invited);
    let invitation = app.invitation_token("guest@invited.example");
    let p = create_provider(
        &app,
        &admin,
        provider_req(
            &admin.org,
            &op.issuer(),
            pb::EmailTrust::VerifiedClaim,
            pb::ProfileLinking::Email,
            false,
        ),
    )
    .await;
    op.set_user(
        "guest",
        json!({"email": "guest@invited.example", "email_verified": true}),
    )
    .await;
    let r = sign_in(&app, &p.name, op.id_token(CLIENT, "guest", "x").await, "x")
        .await
        .unwrap();
    let user = r.user.unwrap();
    assert_eq!(user.name, invited.name);
    assert_eq!(user.state(), pb::UserState::Active);
    assert!(user.invitation_expire_time.is_none());
    // The invitation is used up.
    let accept = app
        .users(None)
        .accept_invitation(pb::AcceptInvitationRequest {
            invitation_token: invitation,
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await;
    assert_code(accept, Code::Unauthenticated, None);
}

async fn refuses_wrong_audience_issuer_nonce_and_expired_tokens(backend: Backend) {
    let Some(op) = Provider::start("refusals", 120).await else {
        return;
    };
    let Some(other) = Provider::start("refusals (second issuer)", 120).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Refuse").await;
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
    op.set_user("u1", json!({"email": "u1@refuse.example"}))
        .await;
    other
        .set_user("u1", json!({"email": "u1@refuse.example"}))
        .await;
    let cases = [
        (
            op.id_token("another-client", "u1", "n").await,
            "n",
            "WRONG_AUDIENCE",
        ),
        (other.id_token(CLIENT, "u1", "n").await, "n", "WRONG_ISSUER"),
        (op.id_token(CLIENT, "u1", "n").await, "m", "WRONG_NONCE"),
        ("not.a.token".to_owned(), "", "MALFORMED_TOKEN"),
    ];
    for (token, nonce, reason) in cases {
        let r = sign_in(&app, &p.name, token, nonce).await;
        assert_code(r, Code::Unauthenticated, Some(reason));
    }
    let unknown = format!("{}/identityProviders/{}", admin.org, uuid::Uuid::now_v7());
    let r = sign_in(&app, &unknown, op.id_token(CLIENT, "u1", "n").await, "n").await;
    assert_code(r, Code::Unauthenticated, Some("UNKNOWN_IDENTITY_PROVIDER"));

    // Another audience is accepted once the provider allows it.
    app.identity_providers(Some(&admin.token))
        .update_identity_provider(pb::UpdateIdentityProviderRequest {
            identity_provider: Some(pb::IdentityProvider {
                name: p.name.clone(),
                allowed_audiences: vec!["another-client".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["allowed_audiences".into()],
            }),
        })
        .await
        .unwrap();
    let token = op.id_token("another-client", "u1", "n").await;
    sign_in(&app, &p.name, token.clone(), "n").await.unwrap();
    // Well past its 120 s of lifetime and the 60 s of skew, the same token has expired.
    app.clock.advance(Duration::from_secs(400));
    let r = sign_in(&app, &p.name, token, "n").await;
    assert_code(r, Code::Unauthenticated, Some("TOKEN_EXPIRED"));
}

async fn a_rotated_key_is_fetched_once_per_bound(backend: Backend) {
    let Some(mut op) = Provider::start("key_rotation", 3600).await else {
        return;
    };
    let app = app_for_oidc(backend).await;
    let admin = app.admin("Rotate").await;
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
    op.set_user("r1", json!({"email": "r1@rotate.example"}))
        .await;
    sign_in(&app, &p.name, op.id_token(CLIENT, "r1", "n").await, "n")
        .await
        .unwrap();
    // A new signing key: the cached key set no longer verifies the provider's tokens.
    op.restart().await;
    op.set_user("r1", json!({"email": "r1@rotate.example"}))
        .await;
    let token = op.id_token(CLIENT, "r1", "n").await;
    // Within the refetch bound (10 s since the last fetch) the key set is not fetched again.
    let r = sign_in(&app, &p.name, token.clone(), "n").await;
    assert_code(r, Code::Unauthenticated, Some("BAD_SIGNATURE"));
    app.clock.advance(Duration::from_secs(11));
    let r = sign_in(&app, &p.name, token, "n").await.unwrap();
    assert!(!r.user_created, "the same person, the same profile");
}
