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
//! The domain is a parameter because each service reports errors under its own name.

use std::collections::HashMap;
use std::error::Error;
use std::fmt::{self, Display};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

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

/// Logs `error` with its whole `source()` chain and returns an opaque `INTERNAL` status
/// (message `internal error`, `ErrorInfo.reason` [`INTERNAL_REASON`]).
pub fn internal(domain: &str, error: &(dyn Error + 'static)) -> Status {
    tracing::error!(error = %ErrorChain(error), "internal error");
    status(domain, Code::Internal, INTERNAL_REASON, "internal error")
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

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "test.example";

    #[test]
    fn empty_collector_is_ok() {
        let violations = FieldViolations::new(DOMAIN);
        assert!(violations.is_empty());
        assert!(violations.into_result().is_ok());
    }

    #[test]
    fn violations_round_trip_through_status_details() {
        let mut violations = FieldViolations::new(DOMAIN);
        violations.add("email", "must contain @");
        assert_eq!(violations.check("age", Ok::<_, String>(3)), Some(3));
        assert_eq!(violations.check::<u8, _>("age", Err("too old")), None);
        violations.add("email", "too long");
        assert_eq!(violations.len(), 3);

        let status = violations.into_result().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "request has invalid fields: email, age");

        let bad_request = status.get_details_bad_request().unwrap();
        let got: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("email", "must contain @"),
                ("age", "too old"),
                ("email", "too long")
            ]
        );
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, INVALID_ARGUMENT_REASON);
        assert_eq!(info.domain, DOMAIN);
    }

    #[test]
    fn status_carries_error_info() {
        let status = status(
            DOMAIN,
            Code::AlreadyExists,
            "USER_EMAIL_TAKEN",
            "email is taken",
        );
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(status.message(), "email is taken");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("USER_EMAIL_TAKEN", DOMAIN)
        );
    }

    #[test]
    fn internal_hides_the_cause() {
        let io = std::io::Error::other("disk on fire");
        let status = internal(DOMAIN, &io);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("disk"));
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            INTERNAL_REASON
        );
    }
}
