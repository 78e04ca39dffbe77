//! Whether identity answers the sync, as its workers last found: what the health of
//! `portal.v1.Sync` follows. Every worker talks to the same identity, so the latest outcome of
//! any of them stands for all: a call identity answered (even with a refusal) says it is
//! reachable; a connection that fails or an UNAVAILABLE answer says it is not, until a later
//! call gets an answer.

use std::sync::Mutex;

use tonic::Code;

use super::RunError;

/// The latest outcome of the sync's calls to identity.
#[derive(Debug, Default)]
pub(super) struct IdentityContact {
    /// Why identity could not be reached, while that is the latest outcome.
    unreachable: Mutex<Option<String>>,
}

impl IdentityContact {
    /// Identity answered a call.
    pub(super) fn answered(&self) {
        if let Ok(mut u) = self.unreachable.lock() {
            *u = None;
        }
    }

    /// A run ended with `error` (`sentence` is what the status shows): records whether that
    /// says identity is unreachable, answered, or nothing about it (the portal's own
    /// database, a resync).
    pub(super) fn ended(&self, error: &RunError, sentence: &str) {
        let unreachable = match error {
            RunError::Connect(_) => true,
            RunError::Identity(status) => {
                matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
            }
            _ => return,
        };
        if let Ok(mut u) = self.unreachable.lock() {
            *u = unreachable.then(|| sentence.to_owned());
        }
    }

    /// `Err` (why) while the latest outcome is that identity cannot be reached.
    pub(super) fn check(&self) -> Result<(), String> {
        match self.unreachable.lock() {
            Ok(u) => u.as_ref().map_or(Ok(()), |why| Err(why.clone())),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_until_identity_answers_again() {
        let c = IdentityContact::default();
        assert_eq!(c.check(), Ok(()));
        let down = RunError::Identity(tonic::Status::unavailable("tcp connect error"));
        c.ended(
            &down,
            "identity answered UNAVAILABLE: tcp connect error; retrying",
        );
        assert_eq!(
            c.check(),
            Err("identity answered UNAVAILABLE: tcp connect error; retrying".to_owned())
        );
        // The portal's own troubles say nothing about identity.
        c.ended(&RunError::FeedEnded, "the change feed ended; retrying");
        assert!(c.check().is_err());
        // A refusal is an answer.
        c.ended(
            &RunError::Identity(tonic::Status::unauthenticated("revoked")),
            "refused",
        );
        assert_eq!(c.check(), Ok(()));
        c.ended(&down, "down");
        c.answered();
        assert_eq!(c.check(), Ok(()));
    }
}
