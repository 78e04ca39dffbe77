//! Errors of the service, in the domain's words ([`Error`]): the shared kit's
//! [`ServiceError`](shared::errors::ServiceError) (bad fields collected in [`Violations`], not
//! found, taken, refused, stale etag, denied, unauthenticated, storage, internal) plus the kinds
//! only identity has ([`Own`]). The kit maps each error to one status code with a stable
//! `google.rpc.ErrorInfo` reason under [`ERROR_DOMAIN`].
//!
//! Imports nothing of ours but the domain: the core converts its store's errors into
//! [`Error::Store`](shared::errors::ServiceError::Store).

use shared::errors::{ServiceKinds, status, status_with_retry};
pub use shared::violations::Violations;
use tonic::{Code, Status};

/// `google.rpc.ErrorInfo` domain of this service.
pub const ERROR_DOMAIN: &str = "identity.odc";

/// `ErrorInfo.reason` of a call refused by the per-address rate limit.
pub const ADDRESS_RATE: &str = "TOO_MANY_REQUESTS";
/// `ErrorInfo.reason` of a call refused because the password-hashing pool is full.
pub const HASHING_BUSY: &str = "SERVER_BUSY";
/// `ErrorInfo.reason` of a login refused because the account waits after wrong passwords.
pub const LOCKED_OUT: &str = "LOCKED_OUT";

/// Why a request failed.
pub type Error = shared::errors::ServiceError<Own>;

/// The kinds of error only identity has.
#[derive(Debug, thiserror::Error)]
pub enum Own {
    /// A concurrent request with the same `request_id` committed first (or is committing);
    /// nothing of this one was written. Create handlers answer it with the first request's
    /// result (`Api::replayed`, which also brings the state up to that commit).
    #[error("a request with this request_id was just applied; retry to get its result")]
    DuplicateRequest,
    /// Refused for now, before doing the work: too many calls from one client address
    /// ([`ADDRESS_RATE`]), the password-hashing pool full ([`HASHING_BUSY`]), or an account
    /// waiting after repeated wrong passwords ([`LOCKED_OUT`]). Answered as RESOURCE_EXHAUSTED
    /// with `ErrorInfo { reason }` and `RetryInfo { retry_delay: retry_after }`.
    #[error("{message}")]
    Throttled {
        /// Stable reason code: one of the three above.
        reason: &'static str,
        /// Why, for humans.
        message: String,
        /// When a retry may succeed.
        retry_after: std::time::Duration,
    },
    /// A cursor beyond the end.
    #[error("{0}")]
    OutOfRange(String),
    /// Not possible right now; retrying may succeed (e.g. a consistency token this replica
    /// could not apply in time).
    #[error("{0}")]
    Unavailable(String),
    /// The database failed while a commit was under way: it may or may not have been
    /// written. UNAVAILABLE with a `RetryInfo` (reason `COMMIT_OUTCOME_UNKNOWN`): a retry with the
    /// same `request_id` answers with the first attempt's result if it was written.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A long-lived call (WatchChanges) was ended by the server (shutting down, or its feed
    /// closed); the client resumes from the last item it received.
    #[error("{0}")]
    Interrupted(String),
    /// A long-lived call's caller lost its access while the call was open (WatchChanges):
    /// UNAUTHENTICATED (its token or its principal ended), or PERMISSION_DENIED when `denied`
    /// (the permission the call needs is gone). `reason` names the cause.
    #[error("{message}")]
    AccessEnded {
        /// The `ErrorInfo` reason, e.g. `TOKEN_REVOKED`.
        reason: &'static str,
        /// What ended, for the operator.
        message: String,
        /// The permission was lost (the principal and its token are still valid).
        denied: bool,
    },
}

impl ServiceKinds for Own {
    const DOMAIN: &'static str = ERROR_DOMAIN;

    fn into_status(self) -> Status {
        match self {
            e @ Own::DuplicateRequest => status(
                ERROR_DOMAIN,
                Code::Aborted,
                "DUPLICATE_REQUEST_ID",
                e.to_string(),
            ),
            Own::Throttled {
                reason,
                message,
                retry_after,
            } => status_with_retry(
                ERROR_DOMAIN,
                Code::ResourceExhausted,
                reason,
                message,
                retry_after,
            ),
            Own::OutOfRange(m) => status(ERROR_DOMAIN, Code::OutOfRange, "OUT_OF_RANGE", m),
            Own::Unavailable(m) => status(ERROR_DOMAIN, Code::Unavailable, "NOT_CAUGHT_UP", m),
            Own::OutcomeUnknown(m) => status_with_retry(
                ERROR_DOMAIN,
                Code::Unavailable,
                "COMMIT_OUTCOME_UNKNOWN",
                m,
                shared::unavailable::RETRY_AFTER,
            ),
            Own::Interrupted(m) => Status::unavailable(m),
            Own::AccessEnded {
                reason,
                message,
                denied,
            } => {
                let code = if denied {
                    Code::PermissionDenied
                } else {
                    Code::Unauthenticated
                };
                status(ERROR_DOMAIN, code, reason, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The codec answers undecodable requests in the domain of the package; it must be ours.
    #[test]
    fn the_codec_reports_in_this_domain() {
        assert_eq!(
            shared::codec::error_domain("identity.v1"),
            super::ERROR_DOMAIN
        );
    }
}
