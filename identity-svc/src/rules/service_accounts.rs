//! The rules of service accounts: unique names, deletion with their assignments and tokens,
//! issuing a token.

use shared::secrets::{TokenEncoding, hash_token, new_token};
use uuid::Uuid;

use crate::core::Draft;
use crate::core::{SecretOp, TokenKind, TokenRecord};
use crate::domain::model::{Assignment, Entity, Micros, Principal, ServiceAccount};
use crate::domain::names::fmt;
use crate::error::Error;
use crate::rules::access::remove_assignment;
use crate::rules::lookups::org_id;

/// Creates a service account.
pub fn create_service_account(d: &mut Draft<'_>, name: String) -> Result<ServiceAccount, Error> {
    if d.state()
        .service_accounts
        .values()
        .any(|s| s.display_name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::exists(
            "SERVICE_ACCOUNT_EXISTS",
            format!("a service account named {name} exists"),
        ));
    }
    let s = ServiceAccount {
        id: Uuid::now_v7(),
        display_name: name,
        create_time: d.now,
    };
    d.change(
        "service_account.created",
        fmt::service_account(org_id(d), s.id),
        None,
        Some(Entity::ServiceAccount(s.clone())),
        Vec::new(),
    );
    Ok(s)
}

/// Deletes a service account with its assignments and tokens.
pub fn delete_service_account(d: &mut Draft<'_>, id: Uuid) -> Result<(), Error> {
    let s = d
        .state()
        .service_accounts
        .get(&id)
        .cloned()
        .ok_or_else(|| Error::NotFound(fmt::service_account(org_id(d), id)))?;
    let p = Principal::ServiceAccount(id);
    let assignments: Vec<Assignment> = d
        .state()
        .assignments
        .get(&p)
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    for a in assignments {
        remove_assignment(d, a);
    }
    d.change(
        "service_account.deleted",
        fmt::service_account(org_id(d), id),
        Some(Entity::ServiceAccount(s)),
        None,
        Vec::new(),
    );
    d.secret(SecretOp::RevokeTokensOf {
        principal: p,
        at: d.now,
    });
    Ok(())
}

/// Issues a service-account token; returns its record and secret.
pub fn create_service_account_token(
    d: &mut Draft<'_>,
    id: Uuid,
    ttl: Micros,
) -> Result<(TokenRecord, String), Error> {
    if !d.state().service_accounts.contains_key(&id) {
        return Err(Error::NotFound(fmt::service_account(org_id(d), id)));
    }
    let secret = new_token(
        crate::auth::SERVICE_ACCOUNT_PREFIX,
        TokenEncoding::Base64Url,
    );
    let t = TokenRecord {
        id: Uuid::now_v7(),
        hash: hash_token(&secret),
        kind: TokenKind::ServiceAccount,
        org: org_id(d),
        principal: Principal::ServiceAccount(id),
        create_time: d.now,
        expire_time: d.now + ttl,
        revoke_time: None,
    };
    d.secret(SecretOp::PutToken(t.clone()));
    Ok((t, secret))
}
