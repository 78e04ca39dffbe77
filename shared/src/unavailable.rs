//! Which storage failures are the database being out of reach for now (stopped, restarting,
//! refusing connections, the network between), as opposed to a bug or bad data: those are
//! answered UNAVAILABLE with a `RetryInfo` instead of INTERNAL, so a client retries them (with
//! its `request_id` where the call has one) and an operator's dashboards tell an outage from a
//! defect.

use std::error::Error;
use std::time::Duration;

/// How long a client should wait before retrying a call refused because the database was out of
/// reach: the services' health probes notice an outage about as fast.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long a call waits for a database connection (the pool's acquire timeout; sqlx's
/// default is 30 s, during which it keeps trying to connect to a stopped server) before it is
/// answered UNAVAILABLE: longer than any wait for a busy pool we measured, short enough that
/// a client's own deadline does not run out first.
pub const CONNECTION_WAIT: Duration = Duration::from_secs(5);

/// `ErrorInfo.reason` of a call refused because the database was out of reach.
pub const REASON: &str = "DATABASE_UNAVAILABLE";

/// Whether `error` or one of its causes says the database could not be reached or went away
/// (connection refused or reset, pool timed out, server shutting down or starting, too many
/// connections; SQLite: the file is busy or locked).
pub fn is_database_unavailable(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<sqlx::Error>() {
            return transient(e);
        }
        next = e.source();
    }
    false
}

fn transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| transient_code(&code)),
        _ => false,
    }
}

/// PostgreSQL: class 08 (connection exception), 57P01–57P03 (shutting down, crashed, starting),
/// 53300 (too many connections), 25006 (read-only: a failover in progress). SQLite: BUSY and
/// LOCKED with their extended codes.
fn transient_code(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "25006" | "5" | "6" | "261" | "262" | "517"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("store failed")]
    struct Wrapped(#[source] sqlx::Error);

    #[test]
    fn a_lost_connection_under_another_error_is_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(is_database_unavailable(&Wrapped(sqlx::Error::Io(io))));
        assert!(is_database_unavailable(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn other_failures_are_not() {
        assert!(!is_database_unavailable(&Wrapped(sqlx::Error::RowNotFound)));
        let io = std::io::Error::other("not sqlx");
        assert!(!is_database_unavailable(&io));
        assert!(transient_code("08006") && transient_code("57P01") && transient_code("5"));
        assert!(!transient_code("23505") && !transient_code("19"));
    }
}
