//! External sign-in and the portal: users an OpenID provider creates without an email (ODC's
//! empty email) flow through identity's snapshot and feed without making the sync report an
//! error or stop; they have no portal record until identity gives them an email and a role.

use serde_json::json;
use shared::proto::identity::v1 as id;
use shared::proto::portal::v1 as portal;
use shared::testkit::oidc_provider::Provider;

use crate::harness::*;
use crate::mapped::{healthy, provider, sign_in};
use crate::sync::{invite, records, setup};

crate::e2e_tests!(users_without_an_email_keep_the_sync_healthy);

async fn users_without_an_email_keep_the_sync_healthy(b: Backend) {
    let Some(op) = Provider::start("e2e_users_without_an_email", 3600).await else {
        return;
    };
    let w = World::start(b).await;
    let s = setup(&w).await;
    invite(&w, &s, "dev@acme.example", Some("developer")).await;
    let p = provider(&w, &s, op.issuer()).await;
    healthy(&w, &s).await;
    let before = records(&w, &s).await;
    assert!(before.contains_key("dev@acme.example"));

    // The member's address from a provider that does not link: a profile without an email;
    // and a token without any email.
    let taken = json!({"email": "dev@acme.example", "email_verified": true});
    let pat = sign_in(&w, &op, &p, "pat", taken).await;
    assert_eq!(pat.email, "");
    let nomail = sign_in(&w, &op, &p, "nomail", json!({"name": "No Mail"})).await;
    assert_eq!(nomail.email, "");
    healthy(&w, &s).await;
    assert_eq!(
        records(&w, &s).await,
        before,
        "no record for users without an email"
    );

    // A snapshot holding them (Resync) is read as well.
    w.sync(&w.portal_operator)
        .resync(portal::ResyncRequest {
            infrastructure: s.infra.clone(),
        })
        .await
        .unwrap();
    healthy(&w, &s).await;
    assert_eq!(records(&w, &s).await, before);

    // Given an email and a member role, the user gets a record like anyone.
    w.id_users(Some(&s.org.admin_token))
        .update_user(id::UpdateUserRequest {
            user: Some(id::User {
                name: pat.name.clone(),
                email: "pat@acme.example".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
        })
        .await
        .unwrap();
    w.id_access(&s.org.admin_token)
        .assign_role(id::AssignRoleRequest {
            parent: s.org.name.clone(),
            principal: pat.name,
            role: format!("{}/roles/developer", s.org.name),
            scope: Some(id::Scope {
                kind: Some(id::scope::Kind::Organization(true)),
            }),
            grant_period: None,
        })
        .await
        .unwrap();
    healthy(&w, &s).await;
    let after = records(&w, &s).await;
    assert_eq!(
        after.get("pat@acme.example"),
        before.get("dev@acme.example"),
        "a developer's record"
    );
    assert_eq!(after.len(), before.len() + 1);
}
