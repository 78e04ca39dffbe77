//! Rich gRPC errors (AIP-193): a status code and message for humans, plus machine-readable
//! `google.rpc` details that clients can branch on.
//!
//! * [`status`] attaches a `google.rpc.ErrorInfo { reason, domain }` — the stable identifier
//!   of *why* a call failed (`USER_EMAIL_TAKEN`), independent of the message wording.
//! * [`FieldViolations`] collects **all** problems of a request into one `google.rpc.BadRequest`
//!   instead of failing on the first, so a client can fix every field in one round trip.
//! * [`internal`] logs an unexpected error with its cause chain and returns an opaque
//!   `INTERNAL`, so that database or I/O details never reach callers.
//!
//! * [`ServiceError`] is the error both services answer with: the generic gRPC kinds (bad
//!   fields, not found, taken, refused, stale etag, denied, unauthenticated, storage, internal)
//!   and, as [`ServiceError::Own`], the kinds only one service has ([`ServiceKinds`]); its one
//!   mapping to a status is [`ServiceError::into_status`].
//!
//! The domain is a parameter because each service reports errors under its own name.

use std::collections::HashMap;
use std::error::Error;
use std::fmt::{self, Display};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use crate::violations::Violations;

/// `ErrorInfo.reason` used by [`FieldViolations`].
pub const INVALID_ARGUMENT_REASON: &str = "INVALID_ARGUMENT";
/// `ErrorInfo.reason` used by [`internal`].
pub const INTERNAL_REASON: &str = "INTERNAL";

/// A `Status` with `code` and `message` carrying `google.rpc.ErrorInfo { reason, domain }`.
///
/// `reason` should be a constant `UPPER_SNAKE_CASE` identifier, unique within `domain`
/// (for example the service's DNS-like name).
pub fn status(domain: &str, code: Code, reason: &str, message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, domain, HashMap::new());
    Status::with_error_details(code, message, details)
}

/// Like [`status`], with a `google.rpc.RetryInfo { retry_delay }` as well: the call was refused
/// for now (too many calls, a full queue) and may be retried after `retry_delay`.
pub fn status_with_retry(
    domain: &str,
    code: Code,
    reason: &str,
    message: impl Into<String>,
    retry_delay: std::time::Duration,
) -> Status {
    let mut details = ErrorDetails::new();
    details
        .set_error_info(reason, domain, HashMap::new())
        .set_retry_info(Some(retry_delay));
    Status::with_error_details(code, message, details)
}

/// Logs `error` with its whole `source()` chain and returns an opaque `INTERNAL` status
/// (message `internal error`, `ErrorInfo.reason` [`INTERNAL_REASON`]).
pub fn internal(domain: &str, error: &(dyn Error + 'static)) -> Status {
    tracing::error!(error = %ErrorChain(error), "internal error");
    status(domain, Code::Internal, INTERNAL_REASON, "internal error")
}

/// A storage failure: UNAVAILABLE with a `RetryInfo` when the database is out of reach for
/// now (`crate::unavailable`), otherwise an opaque INTERNAL; both logged with their causes.
fn store_failure(domain: &str, error: &(dyn Error + 'static)) -> Status {
    #[cfg(feature = "migrations")]
    if crate::unavailable::is_database_unavailable(error) {
        tracing::warn!(error = %ErrorChain(error), "the database is out of reach");
        return status_with_retry(
            domain,
            Code::Unavailable,
            crate::unavailable::REASON,
            "the database cannot be reached right now; retry shortly",
            crate::unavailable::RETRY_AFTER,
        );
    }
    internal(domain, error)
}

/// Displays an error followed by its causes: `outer: middle: root`.
struct ErrorChain<'a>(&'a (dyn Error + 'static));

impl Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Collects invalid request fields and turns them into one `INVALID_ARGUMENT` status with a
/// `google.rpc.BadRequest` (one `FieldViolation` per [`add`](Self::add)) and an
/// `ErrorInfo { reason: "INVALID_ARGUMENT", domain }`.
///
/// ```
/// # use shared::errors::FieldViolations;
/// let mut violations = FieldViolations::new("identity.example");
/// let age: Option<u8> = violations.check("age", "x".parse::<u8>());
/// violations.add("email", "must not be empty");
/// let status = violations.into_result().unwrap_err();
/// assert_eq!(status.message(), "request has invalid fields: age, email");
/// # assert!(age.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct FieldViolations {
    domain: String,
    violations: Vec<FieldViolation>,
}

impl FieldViolations {
    /// An empty collector reporting under `domain` (see [`status`]).
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            violations: Vec::new(),
        }
    }

    /// Records that `field` (a dotted path into the request, e.g. `user.email`) is invalid
    /// because of `description`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) -> &mut Self {
        self.violations
            .push(FieldViolation::new(field, description));
        self
    }

    /// Passes through the value of `result`, or records its error (by its `Display`) as a
    /// violation of `field` and returns `None`; handy to keep parsing the other fields.
    pub fn check<T, E: Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    /// `true` when no violation was recorded.
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// Number of recorded violations.
    pub fn len(&self) -> usize {
        self.violations.len()
    }

    /// `Ok(())` when nothing was recorded, otherwise the status of [`into_status`](Self::into_status).
    pub fn into_result(self) -> Result<(), Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    /// The `INVALID_ARGUMENT` status, whose message lists the distinct invalid fields in the
    /// order they were added: `request has invalid fields: email, name`.
    pub fn into_status(self) -> Status {
        let mut fields: Vec<&str> = Vec::new();
        for violation in &self.violations {
            if !fields.contains(&violation.field.as_str()) {
                fields.push(&violation.field);
            }
        }
        let message = format!("request has invalid fields: {}", fields.join(", "));
        let mut details = ErrorDetails::new();
        details.set_bad_request(self.violations).set_error_info(
            INVALID_ARGUMENT_REASON,
            self.domain,
            HashMap::new(),
        );
        Status::with_error_details(Code::InvalidArgument, message, details)
    }
}

/// Why a request failed: the kinds of error every service has, plus a service's own kinds
/// (`K`, which also names the `ErrorInfo` domain). Each maps to one status code with a stable
/// `ErrorInfo` reason ([`into_status`](Self::into_status)).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError<K: ServiceKinds> {
    /// Bad fields: (field path, what is wrong). Nothing was changed.
    #[error("invalid argument: {0}")]
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
    /// The etag sent does not match, or the record changed meanwhile.
    #[error("{0}")]
    Aborted(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Storage failed (logged with its causes; answered UNAVAILABLE with a `RetryInfo` when the
    /// database is out of reach, otherwise as an opaque INTERNAL).
    #[error(transparent)]
    Store(Box<dyn Error + Send + Sync>),
    /// Anything else unexpected (logged, answered as INTERNAL).
    #[error("{0}")]
    Internal(String),
    /// A kind only this service has.
    #[error(transparent)]
    Own(K),
}

/// What a service adds to [`ServiceError`]: the `ErrorInfo` domain it reports under and the
/// kinds of error only it has, with their statuses. A service without kinds of its own uses
/// an enum without variants.
pub trait ServiceKinds: Error + Send + Sync + 'static {
    /// `google.rpc.ErrorInfo.domain` of every status of the service (its DNS-like name).
    const DOMAIN: &'static str;

    /// The status of one of the service's own kinds.
    fn into_status(self) -> Status;
}

/// `ErrorInfo.reason` of [`ServiceError::NotFound`].
pub const NOT_FOUND_REASON: &str = "NOT_FOUND";
/// `ErrorInfo.reason` of [`ServiceError::Aborted`].
pub const STALE_ETAG_REASON: &str = "STALE_ETAG";
/// `ErrorInfo.reason` of [`ServiceError::PermissionDenied`].
pub const PERMISSION_DENIED_REASON: &str = "PERMISSION_DENIED";
/// `ErrorInfo.reason` of [`ServiceError::Unauthenticated`].
pub const UNAUTHENTICATED_REASON: &str = "UNAUTHENTICATED";

impl<K: ServiceKinds> ServiceError<K> {
    /// One bad field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(Violations::one(field, description))
    }

    /// A failed precondition.
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    /// A taken name.
    pub fn exists(reason: &'static str, message: impl Into<String>) -> Self {
        Self::AlreadyExists {
            reason,
            message: message.into(),
        }
    }

    /// The typed command parsed from a request, or every bad field of it. A request is
    /// converted once, so a handler never meets a half-checked field.
    ///
    /// `parsed` is `None` only when a field it is made of failed its check, which recorded why
    /// in `violations`. A parser that returns `None` without recording anything is a bug of the
    /// service, not bad input: it is answered as INTERNAL (and logged), never as an
    /// INVALID_ARGUMENT naming no field.
    pub fn command<T>(violations: Violations, parsed: Option<T>) -> Result<T, Self> {
        violations.finish()?;
        parsed.ok_or_else(|| Self::Internal("a request parser failed without saying why".into()))
    }

    /// The status: code, message, `ErrorInfo { reason, domain: K::DOMAIN }` (and the
    /// `BadRequest` of bad fields). Storage and internal errors are logged and answered as an
    /// opaque INTERNAL.
    pub fn into_status(self) -> Status {
        let domain = K::DOMAIN;
        match self {
            Self::InvalidArgument(v) => v.into_status(domain),
            Self::NotFound(what) => status(
                domain,
                Code::NotFound,
                NOT_FOUND_REASON,
                format!("{what} not found"),
            ),
            Self::AlreadyExists { reason, message } => {
                status(domain, Code::AlreadyExists, reason, message)
            }
            Self::FailedPrecondition { reason, message } => {
                status(domain, Code::FailedPrecondition, reason, message)
            }
            Self::Aborted(m) => status(domain, Code::Aborted, STALE_ETAG_REASON, m),
            Self::PermissionDenied(m) => {
                status(domain, Code::PermissionDenied, PERMISSION_DENIED_REASON, m)
            }
            Self::Unauthenticated(m) => {
                status(domain, Code::Unauthenticated, UNAUTHENTICATED_REASON, m)
            }
            Self::Store(e) => store_failure(domain, &*e),
            Self::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                status(domain, Code::Internal, INTERNAL_REASON, "internal error")
            }
            Self::Own(kind) => kind.into_status(),
        }
    }
}

impl<K: ServiceKinds> From<Violations> for ServiceError<K> {
    fn from(v: Violations) -> Self {
        Self::InvalidArgument(v)
    }
}

impl<K: ServiceKinds> From<ServiceError<K>> for Status {
    fn from(e: ServiceError<K>) -> Self {
        e.into_status()
    }
}

impl Violations {
    /// The `INVALID_ARGUMENT` status: a `google.rpc.BadRequest` with one `FieldViolation` per
    /// recorded field and an `ErrorInfo { reason: "INVALID_ARGUMENT", domain }`. (Here, beside
    /// the other statuses, so that `violations` stays free of gRPC.)
    pub fn into_status(self, domain: &str) -> tonic::Status {
        let mut v = FieldViolations::new(domain);
        for (field, description) in Vec::<(String, String)>::from(self) {
            v.add(field, description);
        }
        v.into_status()
    }
}

#[cfg(test)]
mod tests;
