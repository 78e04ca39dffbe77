//! Errors of the portal API, in the domain's words (made by the rules and the handlers): the
//! shared kit's [`ServiceError`](shared::errors::ServiceError), whose one mapping to
//! `tonic::Status` gives a `google.rpc.ErrorInfo` reason (domain [`ERROR_DOMAIN`]) and, for bad
//! requests, a `google.rpc.BadRequest` naming every bad field. The bad fields are collected in
//! the kit's [`Violations`] (re-exported here), which converts into
//! [`Error::InvalidArgument`](shared::errors::ServiceError::InvalidArgument). What is the
//! portal's own is how its store's and authentication's errors read as API errors.

use std::fmt;

use shared::errors::ServiceKinds;
pub use shared::violations::Violations;
use tonic::Status;

use crate::auth::AuthError;
use crate::auth::authenticate::ACTING_FOR;
use crate::store::StoreError;

/// `google.rpc.ErrorInfo` domain of this service.
pub const ERROR_DOMAIN: &str = "portal.odc";

/// Reason: an ODC-derived record cannot be edited or removed here.
pub const ODC_MANAGED: &str = "ODC_MANAGED";
/// Reason: the last company admin cannot be removed or demoted.
pub const LAST_COMPANY_ADMIN: &str = "LAST_COMPANY_ADMIN";
/// Reason: a team member with this email exists.
pub const MEMBER_EXISTS: &str = "MEMBER_EXISTS";

/// Why a request failed.
pub type Error = shared::errors::ServiceError<Own>;

/// The portal has no kinds of error of its own (every error is one of the kit's generic kinds);
/// this type, which has no values, names the domain it reports under.
#[derive(Debug)]
pub enum Own {}

impl fmt::Display for Own {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Own {}

impl ServiceKinds for Own {
    const DOMAIN: &'static str = ERROR_DOMAIN;

    fn into_status(self) -> Status {
        match self {}
    }
}

/// A member changed by someone else between our read and our write.
pub fn concurrent() -> Error {
    Error::Aborted("the record changed concurrently; read it again and retry".into())
}

impl From<StoreError> for Error {
    /// A write that lost a race is a stale etag; a referenced row that is missing is NOT_FOUND;
    /// any other storage failure is an opaque INTERNAL.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => concurrent(),
            StoreError::NotFound => Error::NotFound("the record".into()),
            e => Error::Store(Box::new(e)),
        }
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => Error::Unauthenticated(m),
            AuthError::PermissionDenied(m) => Error::PermissionDenied(m),
            AuthError::ActingFor(m) => Error::field(ACTING_FOR, m),
            AuthError::Internal(m) => Error::Internal(m),
        }
    }
}

/// Maps an error to a status with its `ErrorInfo` reason (and `BadRequest`): the kit's one
/// mapping.
pub fn to_status(e: Error) -> Status {
    e.into_status()
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        to_status(e.into())
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        to_status(e.into())
    }
}

#[cfg(test)]
mod tests {
    /// The codec answers undecodable requests in the domain of the package; it must be ours.
    #[test]
    fn the_codec_reports_in_this_domain() {
        assert_eq!(
            shared::codec::error_domain("portal.v1"),
            super::ERROR_DOMAIN
        );
    }
}
