//! Errors of the portal API, in the domain's words (made by the rules and the handlers), and their one mapping to `tonic::Status`
//! with a `google.rpc.ErrorInfo` reason (domain [`ERROR_DOMAIN`]) and, for bad requests, a
//! `google.rpc.BadRequest` naming every bad field. The bad fields are collected in the shared
//! kit's [`Violations`] (re-exported here), which converts into [`Error::InvalidArgument`].

use shared::errors::status;
pub use shared::violations::Violations;
use tonic::{Code, Status};

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
/// Reason: the etag sent is stale, or the record changed concurrently.
pub const STALE_ETAG: &str = "STALE_ETAG";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad fields: (field path, what is wrong). Nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(Violations),
    /// Something named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique key is taken.
    #[error("{message}")]
    AlreadyExists {
        /// Stable reason code.
        reason: &'static str,
        /// What is taken.
        message: String,
    },
    /// The request is valid but the current state refuses it.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable reason code.
        reason: &'static str,
        /// Why.
        message: String,
    },
    /// The etag sent does not match, or the record changed meanwhile.
    #[error("{0}")]
    Aborted(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else unexpected (logged, answered as INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// One bad field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(Violations::one(field, description))
    }

    /// A failed precondition.
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    /// A member changed by someone else between our read and our write.
    pub fn concurrent() -> Self {
        Error::Aborted("the record changed concurrently; read it again and retry".into())
    }
}

impl From<Violations> for Error {
    fn from(v: Violations) -> Self {
        Error::InvalidArgument(v)
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

/// Maps an error to a status with its `ErrorInfo` reason (and `BadRequest`).
pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(v) => v.into_status(ERROR_DOMAIN),
        Error::NotFound(what) => status(
            ERROR_DOMAIN,
            Code::NotFound,
            "NOT_FOUND",
            format!("{what} not found"),
        ),
        Error::AlreadyExists { reason, message } => {
            status(ERROR_DOMAIN, Code::AlreadyExists, reason, message)
        }
        Error::FailedPrecondition { reason, message } => {
            status(ERROR_DOMAIN, Code::FailedPrecondition, reason, message)
        }
        Error::Aborted(m) => status(ERROR_DOMAIN, Code::Aborted, STALE_ETAG, m),
        Error::PermissionDenied(m) => {
            status(ERROR_DOMAIN, Code::PermissionDenied, "PERMISSION_DENIED", m)
        }
        Error::Unauthenticated(m) => {
            status(ERROR_DOMAIN, Code::Unauthenticated, "UNAUTHENTICATED", m)
        }
        Error::Store(StoreError::Conflict) => to_status(Error::concurrent()),
        Error::Store(StoreError::NotFound) => to_status(Error::NotFound("the record".into())),
        Error::Store(e) => shared::errors::internal(ERROR_DOMAIN, &e),
        Error::Internal(m) => {
            tracing::error!(error = %m, "internal error");
            status(
                ERROR_DOMAIN,
                Code::Internal,
                shared::errors::INTERNAL_REASON,
                "internal error",
            )
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        to_status(e)
    }
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
