//! Tests of the status helpers and of the common service error.

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

/// A service with one kind of its own.
#[derive(Debug, thiserror::Error)]
#[error("slow down")]
struct TooFast;

impl ServiceKinds for TooFast {
    const DOMAIN: &'static str = DOMAIN;
    fn into_status(self) -> Status {
        status(
            DOMAIN,
            Code::ResourceExhausted,
            "TOO_FAST",
            self.to_string(),
        )
    }
}

type TestError = ServiceError<TooFast>;

fn reason(status: &Status) -> (String, String) {
    let info = status.get_details_error_info().unwrap();
    (info.reason, info.domain)
}

#[test]
fn service_error_maps_each_kind_under_the_domain() {
    let cases: Vec<(TestError, Code, &str, &str)> = vec![
        (
            TestError::NotFound("users/1".into()),
            Code::NotFound,
            "NOT_FOUND",
            "users/1 not found",
        ),
        (
            TestError::exists("TAKEN", "email is taken"),
            Code::AlreadyExists,
            "TAKEN",
            "email is taken",
        ),
        (
            TestError::precondition("LAST", "last admin"),
            Code::FailedPrecondition,
            "LAST",
            "last admin",
        ),
        (
            TestError::Aborted("stale".into()),
            Code::Aborted,
            "STALE_ETAG",
            "stale",
        ),
        (
            TestError::PermissionDenied("no".into()),
            Code::PermissionDenied,
            "PERMISSION_DENIED",
            "no",
        ),
        (
            TestError::Unauthenticated("who".into()),
            Code::Unauthenticated,
            "UNAUTHENTICATED",
            "who",
        ),
        (
            TestError::Store(Box::new(std::io::Error::other("disk on fire"))),
            Code::Internal,
            INTERNAL_REASON,
            "internal error",
        ),
        (
            TestError::Internal("oops".into()),
            Code::Internal,
            INTERNAL_REASON,
            "internal error",
        ),
        (
            TestError::Own(TooFast),
            Code::ResourceExhausted,
            "TOO_FAST",
            "slow down",
        ),
    ];
    for (error, code, want_reason, message) in cases {
        let status = Status::from(error);
        assert_eq!(status.code(), code);
        assert_eq!(status.message(), message);
        assert_eq!(reason(&status), (want_reason.to_owned(), DOMAIN.to_owned()));
    }
}

#[test]
fn command_is_the_value_or_every_bad_field() {
    assert_eq!(TestError::command(Violations::new(), Some(7)).unwrap(), 7);

    let err = TestError::command::<u8>(Violations::one("name", "is required"), None).unwrap_err();
    let status = err.into_status();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "request has invalid fields: name");
    assert_eq!(reason(&status).1, DOMAIN);

    // A value parsed despite a violation is still refused.
    let err = TestError::command(Violations::one("name", "is required"), Some(1)).unwrap_err();
    assert!(matches!(err, TestError::InvalidArgument(_)));
}

#[test]
fn command_without_value_or_violation_is_internal() {
    let err = TestError::command::<u8>(Violations::new(), None).unwrap_err();
    assert_eq!(err.into_status().code(), Code::Internal);
}

#[test]
fn status_with_retry_carries_error_info_and_retry_info() {
    let s = status_with_retry(
        DOMAIN,
        Code::ResourceExhausted,
        "TOO_FAST",
        "slow down",
        std::time::Duration::from_millis(1500),
    );
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert_eq!(reason(&s), ("TOO_FAST".to_owned(), DOMAIN.to_owned()));
    let retry = s.get_details_retry_info().unwrap();
    assert_eq!(
        retry.retry_delay,
        Some(std::time::Duration::from_millis(1500))
    );
}
