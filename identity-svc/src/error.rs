//! Errors of the service, in the domain's words ([`Error`]); bad request fields are collected
//! with the shared [`Violations`]. The gRPC layer maps each error to one status code with a
//! stable `google.rpc.ErrorInfo` reason.
//!
//! Imports nothing of ours but the domain: the core converts its store's errors into
//! [`Error::Store`].

use shared::violations::Violations;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad fields: (field path, what is wrong). Nothing was changed.
    #[error("invalid argument")]
    InvalidArgument(Violations),
    /// Something named does not exist (or is not visible).
    #[error("{0} not found")]
    NotFound(String),
    /// A unique name or key is taken.
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
    /// The etag sent does not match.
    #[error("{0}")]
    Aborted(String),
    /// A concurrent request with the same `request_id` committed first (or is committing);
    /// nothing of this one was written. Create handlers answer it with the first request's
    /// result (`Api::replayed`, which also brings the state up to that commit).
    #[error("a request with this request_id was just applied; retry to get its result")]
    DuplicateRequest,
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many attempts.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A cursor beyond the end.
    #[error("{0}")]
    OutOfRange(String),
    /// Not possible right now; retrying may succeed (e.g. a consistency token this replica
    /// could not apply in time).
    #[error("{0}")]
    Unavailable(String),
    /// A long-lived call (WatchChanges) was ended by the server (shutting down, or its feed
    /// closed); the client resumes from the last item it received.
    #[error("{0}")]
    Interrupted(String),
    /// Storage failed.
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
    /// Anything else unexpected (logged, answered as INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl From<Violations> for Error {
    fn from(v: Violations) -> Self {
        Error::InvalidArgument(v)
    }
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

    /// A taken name.
    pub fn exists(reason: &'static str, message: impl Into<String>) -> Self {
        Error::AlreadyExists {
            reason,
            message: message.into(),
        }
    }
}
