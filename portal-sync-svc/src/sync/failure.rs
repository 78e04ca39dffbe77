//! What a failed run of a worker means to the operator: one sentence for `last_error` (never a
//! debug dump, never the token), the sync's health, the refusals metric, and the wait before
//! the next try (capped exponential back-off with jitter).

use std::time::Duration;

use rand::RngExt as _;
use tonic::Code;
use tonic_types::StatusExt as _;

/// Counter of identity's refusals of an infrastructure's token (a call or an open change feed
/// answered UNAUTHENTICATED or PERMISSION_DENIED), labelled `code`.
pub const REFUSALS_TOTAL: &str = "portal_sync_identity_refusals_total";

/// How one infrastructure's sync is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncHealth {
    /// No worker has run yet.
    #[default]
    Unknown,
    /// Snapshot taken, following the change feed.
    Syncing,
    /// The last run failed for a reason that may pass (identity unreachable, a database
    /// error); retrying with back-off.
    Retrying,
    /// Identity refused the infrastructure's token: it needs a valid one
    /// (`Companies.SetIdentityToken`) or the permission back; retrying with back-off.
    Refused,
}

/// A failed run, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// The sentence for `last_error`.
    pub(super) text: String,
    /// Identity refused the token.
    pub(super) refused: bool,
    /// A refusal that does not say why (identity does not tell a revoked token from an unknown
    /// one when a call starts): the cause reported by an earlier refusal still stands.
    pub(super) vague: bool,
}

impl Failure {
    fn other(text: String) -> Self {
        Self {
            text,
            refused: false,
            vague: false,
        }
    }

    /// A failure of a call to identity (or of its open change feed); counts refusals.
    pub(super) fn from_status(status: &tonic::Status) -> Self {
        let reason = status.get_details_error_info().map(|i| i.reason);
        let code = status.code();
        let (cause, vague) = match (code, reason.as_deref()) {
            (Code::Unauthenticated, Some("TOKEN_REVOKED")) => ("it was revoked", false),
            (Code::Unauthenticated, Some("TOKEN_EXPIRED")) => ("it expired", false),
            (Code::Unauthenticated, Some("SERVICE_ACCOUNT_DELETED")) => {
                ("its service account was deleted", false)
            }
            (Code::Unauthenticated, Some("USER_DEACTIVATED")) => {
                ("its user was deactivated", false)
            }
            (Code::Unauthenticated, Some("USER_DELETED")) => ("its user was deleted", false),
            (Code::Unauthenticated, Some("SESSION_LOGGED_OUT")) => {
                ("its session was logged out", false)
            }
            (Code::Unauthenticated, _) => ("it is revoked, expired or unknown", true),
            (Code::PermissionDenied, _) => {
                ("it lacks org.view_audit_trail in the organization", false)
            }
            _ => {
                return Self::other(format!(
                    "identity answered {}: {}; retrying",
                    code_name(code),
                    status.message()
                ));
            }
        };
        let code = code_name(code);
        ::metrics::counter!(REFUSALS_TOTAL, "code" => code.clone()).increment(1);
        let why = match reason {
            Some(r) if r != code => format!("{code}, {r}"),
            _ => code,
        };
        Self {
            text: format!(
                "identity refused the infrastructure's token: {cause} ({why}); set a valid \
                 service-account token with Companies.SetIdentityToken (retrying meanwhile)"
            ),
            refused: true,
            vague,
        }
    }

    /// Identity could not be reached.
    pub(super) fn unreachable(url: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::other(format!(
            "identity at {url} is unreachable: {}; retrying",
            chain(error)
        ))
    }

    /// The portal's own database failed.
    pub(super) fn store(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::other(format!(
            "the portal database failed: {}; retrying",
            chain(error)
        ))
    }

    /// Anything else that ended a run.
    pub(super) fn other_run(what: &str) -> Self {
        Self::other(format!("{what}; retrying"))
    }
}

/// An error and its causes: `outer: inner`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A status code as the gRPC specification spells it: `PERMISSION_DENIED`.
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Capped exponential back-off with jitter: each wait is drawn between half the current delay
/// and the delay (so retries never come in a tight loop, and workers failing together spread
/// out); the delay doubles after each failure up to `max`, and starts over after progress.
#[derive(Debug)]
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
}

impl Backoff {
    /// From `min` (at least 1 ms) up to `max` (at least `min`).
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            delay: min,
        }
    }

    /// The wait before the next try; doubles the delay.
    pub(super) fn next_wait(&mut self) -> Duration {
        let half = self.delay / 2;
        let wait =
            half + rand::rng().random_range(Duration::ZERO..=self.delay.saturating_sub(half));
        self.delay = (self.delay * 2).min(self.max);
        wait
    }

    /// After progress: the next failure waits the shortest delay again.
    pub(super) fn reset(&mut self) {
        self.delay = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_up_to_the_cap_with_jitter_and_start_over_after_progress() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut b = Backoff::new(min, max);
        let mut delay = min;
        for _ in 0..10 {
            let wait = b.next_wait();
            assert!(wait >= delay / 2 && wait <= delay, "{wait:?} for {delay:?}");
            delay = (delay * 2).min(max);
        }
        b.reset();
        assert!(b.next_wait() <= min);
    }

    #[test]
    fn a_refusal_says_why_in_a_sentence_without_debug_output() {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_error_info(
            "TOKEN_REVOKED",
            "identity.odc",
            std::collections::HashMap::new(),
        );
        let revoked = tonic::Status::with_error_details(
            Code::Unauthenticated,
            "the service-account token was revoked",
            details,
        );
        let f = Failure::from_status(&revoked);
        assert!(f.refused && !f.vague);
        assert_eq!(
            f.text,
            "identity refused the infrastructure's token: it was revoked (UNAUTHENTICATED, \
             TOKEN_REVOKED); set a valid service-account token with Companies.SetIdentityToken \
             (retrying meanwhile)"
        );
        let unknown = Failure::from_status(&tonic::Status::unauthenticated("not valid"));
        assert!(unknown.refused && unknown.vague);
        assert!(
            unknown.text.contains("revoked, expired or unknown"),
            "{unknown:?}"
        );
        let down = Failure::from_status(&tonic::Status::unavailable("connection refused"));
        assert!(!down.refused);
        assert_eq!(
            down.text,
            "identity answered UNAVAILABLE: connection refused; retrying"
        );
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
    }
}
