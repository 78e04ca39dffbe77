//! The connection commits write through: one dedicated connection on SQLite, a pooled one on
//! PostgreSQL ([`Writer`]), and when it may be reused after a commit ([`WriterConnection`]).

use crate::core::store::StoreError;

/// The connection the general commit path writes through.
///
/// SQLite has one writer at a time, and a pooled connection pays for it on every commit: its
/// page cache is invalidated by whichever connection wrote last (the commit re-reads every
/// page it touches), and going back to the pool costs a ping on the connection's worker
/// thread. So SQLite commits through one dedicated connection, kept out of the pool, whose
/// cache stays warm. PostgreSQL writes in parallel across organizations: its commits take
/// connections from the pool.
///
/// A dedicated connection is put back only after an operation that ran to its end (committed,
/// or failed with a database error, its transaction rolled back). When a commit is cancelled
/// mid-statement or fails on the connection itself, the connection is dropped (closed) and
/// the next commit opens another.
pub(crate) enum Writer<DB: sqlx::Database> {
    Dedicated(tokio::sync::Mutex<Option<DB::Connection>>),
    Pooled,
}

impl<DB: sqlx::Database> std::fmt::Debug for Writer<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dedicated(_) => "Writer::Dedicated",
            Self::Pooled => "Writer::Pooled",
        })
    }
}

impl<DB: sqlx::Database> Writer<DB> {
    pub(crate) fn dedicated() -> Self {
        Self::Dedicated(tokio::sync::Mutex::new(None))
    }

    /// The connection to commit through (waits while another commit holds the dedicated one).
    pub(crate) async fn acquire(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<WriterConnection<'_, DB>, sqlx::Error> {
        match self {
            Self::Pooled => Ok(WriterConnection::Pooled(pool.acquire().await?)),
            Self::Dedicated(slot) => {
                let mut slot = slot.lock().await;
                let conn = match slot.take() {
                    Some(conn) => conn,
                    None => pool.acquire().await?.detach(),
                };
                Ok(WriterConnection::Dedicated {
                    slot,
                    conn,
                    discarded: false,
                })
            }
        }
    }
}

/// A connection acquired from a [`Writer`].
pub(crate) enum WriterConnection<'a, DB: sqlx::Database> {
    Pooled(sqlx::pool::PoolConnection<DB>),
    Dedicated {
        slot: tokio::sync::MutexGuard<'a, Option<DB::Connection>>,
        conn: DB::Connection,
        /// Set by [`WriterConnection::discard`]: not put back.
        discarded: bool,
    },
}

impl<DB: sqlx::Database> WriterConnection<'_, DB> {
    pub(crate) fn get(&mut self) -> &mut DB::Connection {
        match self {
            Self::Pooled(conn) => conn,
            Self::Dedicated { conn, .. } => conn,
        }
    }

    /// The connection is in an unknown state: close it rather than reuse it (a pooled one is
    /// tested by the pool when it goes back).
    pub(crate) fn discard(&mut self) {
        if let Self::Dedicated { discarded, .. } = self {
            *discarded = true;
        }
    }

    /// Gives the connection back after `result`: a dedicated connection is kept unless the
    /// error came from the connection rather than from the database (a constraint, a failed
    /// compare-and-set), in which case it is closed and the next commit opens another.
    pub(crate) fn release<T>(self, result: &Result<T, StoreError>) {
        let reusable = match result {
            Ok(_)
            | Err(
                StoreError::Conflict
                | StoreError::DuplicateRequest
                | StoreError::Database(sqlx::Error::Database(_)),
            ) => true,
            Err(_) => false,
        };
        if let Self::Dedicated {
            mut slot,
            conn,
            discarded: false,
        } = self
            && reusable
        {
            *slot = Some(conn);
        }
    }
}
