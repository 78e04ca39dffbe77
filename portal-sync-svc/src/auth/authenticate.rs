//! Authentication of a call: the bearer token (operator or service) and, for the rules that
//! act for a person, the acting person named in `x-acting-for`.

use tonic::metadata::MetadataMap;

use super::AuthError;
use super::rules::{Rule, rule};
use super::tokens::{TokenKind, Tokens};
use crate::domain::model::Email;

/// Metadata key naming the person a service acts for.
pub const ACTING_FOR: &str = "x-acting-for";

/// Who is calling, once authenticated for an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The platform operator.
    Operator,
    /// A service acting for no one (service-level RPCs).
    Service,
    /// A service acting for this person (`x-acting-for`).
    Person(Email),
}

/// Authenticates the bearer token of a call to `method` and, for the rules that act for a
/// person, reads `x-acting-for`.
pub fn authenticate(tokens: &Tokens, md: &MetadataMap, method: &str) -> Result<Caller, AuthError> {
    let rule = rule(method).ok_or_else(|| AuthError::Internal(format!("no rule for {method}")))?;
    if md.get("authorization").is_none() {
        return Err(AuthError::Unauthenticated(
            "this call needs `authorization: Bearer <token>`".into(),
        ));
    }
    let token = shared::auth::bearer_token_from_metadata(md).ok_or_else(|| {
        AuthError::Unauthenticated("the authorization header must be `Bearer <token>`".into())
    })?;
    let kind = tokens
        .identify(token)
        .ok_or_else(|| AuthError::Unauthenticated("the bearer token is not valid".into()))?;
    match kind {
        TokenKind::Operator if rule.operator_may() => Ok(Caller::Operator),
        TokenKind::Operator => Err(AuthError::PermissionDenied(
            "the operator token cannot make this call: it is made by a service (for a person \
             named in x-acting-for)"
                .into(),
        )),
        TokenKind::Service if rule == Rule::Operator => Err(AuthError::PermissionDenied(
            "this call needs the operator token".into(),
        )),
        TokenKind::Service if rule.wants_person() => acting_for(md).map(Caller::Person),
        TokenKind::Service => Ok(Caller::Service),
    }
}

/// The person named in `x-acting-for`.
fn acting_for(md: &MetadataMap) -> Result<Email, AuthError> {
    let raw = md
        .get(ACTING_FOR)
        .ok_or_else(|| {
            AuthError::ActingFor("is required: the email of the person acted for".into())
        })?
        .to_str()
        .map_err(|_| AuthError::ActingFor("must be an email address".into()))?;
    Email::parse(raw).map_err(|e| AuthError::ActingFor(e.to_owned()))
}
