//! The one SQL implementation of [`Store`](super::Store), shared by SQLite and PostgreSQL.
//!
//! The schema (`migrations/{sqlite,postgres}/0001_init.sql`, the same text) uses only TEXT and
//! BIGINT, and every statement below is written in the dialect both databases accept (`$N`
//! placeholders, `ON CONFLICT .. DO UPDATE`), so the two backends differ only in their pool
//! type. [`impl_sql_store!`] expands to `impl Store for $Store` with this single body; the
//! conversions between rows and domain types are plain functions in this module. One exception:
//! a commit batch without credential changes is written on PostgreSQL as one statement
//! (data-modifying `WITH` over arrays, see `PgStore::commit_in_one_statement`), which SQLite
//! cannot express; the body asks the backend first and otherwise writes the batch in a
//! transaction, one multi-row statement per table.
//!
//! Why a macro rather than `impl<DB: Database>`: a generic implementation needs an
//! `Executor`/`Encode`/`Decode` bound for every column type and on every method, and its error
//! messages become unreadable; the macro keeps the SQL in one place with concrete types.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use uuid::Uuid;

use super::{
    Commit, Credentials, EventRecord, InvitationToken, StoreError, TokenKind, TokenRecord,
};
use crate::domain::model::{Entity, Micros, Principal};

/// Builds the migrator of embedded migrations `(version, description, sql)`.
///
/// `sqlx::migrate!` is only available with sqlx's `macros`/`derive` features, which the
/// workspace leaves off (they would compile the drivers a second time for the proc-macro).
/// The migrations are embedded with `include_str!` instead and recorded exactly as
/// `migrate!` would record them (same version, description and SHA-384 checksum), so either
/// way of embedding can migrate a database created by the other. A new migration file must be
/// added to the backend's list.
pub(super) fn embedded_migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// A unique violation means another writer got there first: [`StoreError::Conflict`].
pub(super) fn unique_to_conflict(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(error),
    }
}

/// A sequence number or count as a BIGINT.
pub(super) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} exceeds BIGINT")))
}

/// A BIGINT as a sequence number.
pub(super) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative sequence {value}")))
}

/// A row limit as a BIGINT (larger than any table can be).
pub(super) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored uuid.
pub(super) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("bad uuid {text:?}: {e}")))
}

/// The `principal` column: `user:<uuid>` or `service_account:<uuid>`.
pub(super) fn principal_to_text(principal: Principal) -> String {
    match principal {
        Principal::User(id) => format!("user:{id}"),
        Principal::ServiceAccount(id) => format!("service_account:{id}"),
    }
}

/// Reads the `principal` column.
pub(super) fn principal_from_text(text: &str) -> Result<Principal, StoreError> {
    match text.split_once(':') {
        Some(("user", id)) => Ok(Principal::User(parse_uuid(id)?)),
        Some(("service_account", id)) => Ok(Principal::ServiceAccount(parse_uuid(id)?)),
        _ => Err(StoreError::Corrupt(format!("bad principal {text:?}"))),
    }
}

/// The `kind` column of `tokens`.
pub(super) fn token_kind_to_text(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Session => "session",
        TokenKind::ServiceAccount => "service_account",
    }
}

fn token_kind_from_text(text: &str) -> Result<TokenKind, StoreError> {
    match text {
        "session" => Ok(TokenKind::Session),
        "service_account" => Ok(TokenKind::ServiceAccount),
        _ => Err(StoreError::Corrupt(format!("bad token kind {text:?}"))),
    }
}

/// An entity as stored (`entities.data`, `events.before`/`after`).
pub(super) fn entity_to_json(entity: &Entity) -> Result<String, StoreError> {
    serde_json::to_string(entity).map_err(|e| StoreError::Corrupt(format!("entity to JSON: {e}")))
}

/// Reads a stored entity.
pub(super) fn entity_from_json(json: &str) -> Result<Entity, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("bad entity JSON: {e}")))
}

/// The `affected_users` column, a JSON array.
pub(super) fn users_to_json(users: &[Uuid]) -> Result<String, StoreError> {
    serde_json::to_string(users).map_err(|e| StoreError::Corrupt(format!("users to JSON: {e}")))
}

/// Rows per multi-row statement of a commit: at most 10 binds per row, so a statement stays far
/// below SQLite's 32,766 and PostgreSQL's 65,535 bind parameters.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// Checks that `commits` form one batch (see [`Store::commit_batch`](super::Store::commit_batch))
/// and returns the sequence after its last commit.
pub(super) fn batch_end(commits: &[Commit<'_>]) -> Result<u64, StoreError> {
    let first = commits
        .first()
        .ok_or_else(|| StoreError::Corrupt("empty commit batch".to_owned()))?;
    let mut seq = first.expected_seq;
    for (i, commit) in commits.iter().enumerate() {
        if commit.org != first.org || commit.expected_seq != seq || (i > 0 && commit.create_org) {
            return Err(StoreError::Corrupt(format!(
                "commit {i} of the batch does not continue it (organization {}, expected \
                 sequence {}, batch at {seq})",
                commit.org, commit.expected_seq
            )));
        }
        let count = u64::try_from(commit.changes.len())
            .map_err(|_| StoreError::Corrupt("too many changes".to_owned()))?;
        seq = seq
            .checked_add(count)
            .ok_or_else(|| StoreError::Corrupt("sequence overflow".to_owned()))?;
    }
    Ok(seq)
}

/// One `events` row to insert.
pub(super) struct NewEvent<'a> {
    pub seq: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
    pub affected_users: String,
    pub request_id: Option<&'a str>,
    pub time: Micros,
}

/// The rows a batch of commits writes, each entity document serialized once.
pub(super) struct BatchRows<'a> {
    /// Every change's event, in sequence order.
    pub events: Vec<NewEvent<'a>>,
    /// `entities` keys the batch leaves without a row.
    pub deletes: Vec<(&'static str, String)>,
    /// `entities` keys the batch leaves with a row: the document is the `after` of that event.
    pub upserts: Vec<(&'static str, String, usize)>,
    /// Idempotency keys with the target of their commit's first change.
    pub requests: Vec<(&'a str, &'a str)>,
}

impl<'a> BatchRows<'a> {
    /// The rows of `commits`, which [`batch_end`] accepted.
    pub(super) fn new(commits: &'a [Commit<'a>]) -> Result<Self, StoreError> {
        let mut events = Vec::with_capacity(commits.iter().map(|c| c.changes.len()).sum());
        // The last write of each key wins: applying the changes one by one deletes the old
        // key of a change unless the entity is replaced in place, then writes the new one.
        let mut net: std::collections::BTreeMap<(&'static str, String), Option<usize>> =
            std::collections::BTreeMap::new();
        let mut requests = Vec::new();
        for commit in commits {
            if let (Some(request_id), Some(first)) = (commit.request_id, commit.changes.first()) {
                requests.push((request_id, first.target.as_str()));
            }
            let mut seq = commit.expected_seq;
            for change in commit.changes {
                let index = events.len();
                seq += 1;
                if let Some(before) = &change.before {
                    let replaced_in_place = change.after.as_ref().is_some_and(|after| {
                        after.kind() == before.kind() && after.key() == before.key()
                    });
                    if !replaced_in_place {
                        net.insert((before.kind(), before.key()), None);
                    }
                }
                if let Some(after) = &change.after {
                    net.insert((after.kind(), after.key()), Some(index));
                }
                events.push(NewEvent {
                    seq: to_i64(seq)?,
                    actor: commit.actor,
                    action: &change.action,
                    target: &change.target,
                    before: change.before.as_ref().map(entity_to_json).transpose()?,
                    after: change.after.as_ref().map(entity_to_json).transpose()?,
                    affected_users: users_to_json(&change.affected_users)?,
                    request_id: commit.request_id,
                    time: commit.time,
                });
            }
        }
        let mut deletes = Vec::new();
        let mut upserts = Vec::new();
        for ((kind, key), write) in net {
            match write {
                Some(index) => upserts.push((kind, key, index)),
                None => deletes.push((kind, key)),
            }
        }
        Ok(Self {
            events,
            deletes,
            upserts,
            requests,
        })
    }
}

/// Columns of [`EventRow`], in order.
pub(super) const EVENT_COLUMNS: &str =
    "seq, actor, action, target, before, after, affected_users, request_id, time";

/// `events` columns: seq, actor, action, target, before, after, affected_users, request_id,
/// time.
pub(super) type EventRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
);

/// Decodes an event of `org`.
pub(super) fn event_from_row(org: Uuid, row: EventRow) -> Result<EventRecord, StoreError> {
    let (seq, actor, action, target, before, after, affected_users, request_id, time) = row;
    Ok(EventRecord {
        org,
        seq: to_u64(seq)?,
        actor,
        action,
        target,
        before: before.as_deref().map(entity_from_json).transpose()?,
        after: after.as_deref().map(entity_from_json).transpose()?,
        affected_users: serde_json::from_str(&affected_users)
            .map_err(|e| StoreError::Corrupt(format!("bad affected_users: {e}")))?,
        request_id,
        time,
    })
}

/// `tokens` columns: id, hash, kind, org_id, principal, create_time, expire_time, revoke_time.
pub(super) type TokenRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
);

/// Decodes a token.
pub(super) fn token_from_row(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (id, hash, kind, org, principal, create_time, expire_time, revoke_time) = row;
    Ok(TokenRecord {
        id: parse_uuid(&id)?,
        hash,
        kind: token_kind_from_text(&kind)?,
        org: parse_uuid(&org)?,
        principal: principal_from_text(&principal)?,
        create_time,
        expire_time,
        revoke_time,
    })
}

/// `invitation_tokens` columns: org_id, invitation_id, user_id, expire_time.
pub(super) type InvitationRow = (String, String, String, i64);

/// Decodes an invitation token.
pub(super) fn invitation_from_row(row: InvitationRow) -> Result<InvitationToken, StoreError> {
    let (org, invitation, user, expire_time) = row;
    Ok(InvitationToken {
        org: parse_uuid(&org)?,
        invitation: parse_uuid(&invitation)?,
        user: parse_uuid(&user)?,
        expire_time,
    })
}

/// Decodes credentials (password_hash, failed_logins, locked_until).
pub(super) fn credentials_from_row(
    (password_hash, failed_logins, locked_until): (Option<String>, i64, Option<Micros>),
) -> Result<Credentials, StoreError> {
    Ok(Credentials {
        password_hash,
        failed_logins: u32::try_from(failed_logins)
            .map_err(|_| StoreError::Corrupt(format!("bad failed_logins {failed_logins}")))?,
        locked_until,
    })
}

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
pub(super) enum Writer<DB: sqlx::Database> {
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
    pub(super) fn dedicated() -> Self {
        Self::Dedicated(tokio::sync::Mutex::new(None))
    }

    /// The connection to commit through (waits while another commit holds the dedicated one).
    pub(super) async fn acquire(
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
pub(super) enum WriterConnection<'a, DB: sqlx::Database> {
    Pooled(sqlx::pool::PoolConnection<DB>),
    Dedicated {
        slot: tokio::sync::MutexGuard<'a, Option<DB::Connection>>,
        conn: DB::Connection,
        /// Set by [`WriterConnection::discard`]: not put back.
        discarded: bool,
    },
}

impl<DB: sqlx::Database> WriterConnection<'_, DB> {
    pub(super) fn get(&mut self) -> &mut DB::Connection {
        match self {
            Self::Pooled(conn) => conn,
            Self::Dedicated { conn, .. } => conn,
        }
    }

    /// The connection is in an unknown state: close it rather than reuse it (a pooled one is
    /// tested by the pool when it goes back).
    pub(super) fn discard(&mut self) {
        if let Self::Dedicated { discarded, .. } = self {
            *discarded = true;
        }
    }

    /// Gives the connection back after `result`: a dedicated connection is kept unless the
    /// error came from the connection rather than from the database (a constraint, a failed
    /// compare-and-set), in which case it is closed and the next commit opens another.
    pub(super) fn release<T>(self, result: &Result<T, StoreError>) {
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

/// `impl Store for $store` over `self.pool`, a pool of database `$db`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::core::store::Store for $store {
            async fn organization_ids(
                &self,
            ) -> Result<Vec<::uuid::Uuid>, $crate::core::store::StoreError> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT org_id FROM org_sequences ORDER BY org_id")
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter()
                    .map(|(id,)| $crate::core::store::sql::parse_uuid(id))
                    .collect()
            }

            async fn load_organization(
                &self,
                org: ::uuid::Uuid,
            ) -> Result<Option<$crate::core::store::LoadedOrg>, $crate::core::store::StoreError> {
                let mut entities = Vec::new();
                let seq = self
                    .load_organization_into(org, &mut |e| entities.push(e))
                    .await?;
                Ok(seq.map(|seq| $crate::core::store::LoadedOrg { org, seq, entities }))
            }

            #[tracing::instrument(skip_all, fields(org = %org))]
            async fn load_organization_into(
                &self,
                org: ::uuid::Uuid,
                sink: &mut (dyn FnMut($crate::domain::model::Entity) + Send),
            ) -> Result<Option<u64>, $crate::core::store::StoreError> {
                // One statement, hence one snapshot: the sequence and the entities agree.
                // Rows are decoded as they arrive and handed over one by one.
                let org_id = org.to_string();
                let mut rows = sqlx::query_as::<_, (i64, Option<String>)>(
                    "SELECT s.seq, e.data FROM org_sequences s \
                     LEFT JOIN entities e ON e.org_id = s.org_id \
                     WHERE s.org_id = $1 ORDER BY e.kind, e.key",
                )
                .bind(&org_id)
                .fetch(&self.pool);
                let mut seq = None;
                while let Some(row) = ::tokio_stream::StreamExt::next(&mut rows).await {
                    let (s, data) = row?;
                    seq.get_or_insert(s);
                    if let Some(data) = data {
                        sink($crate::core::store::sql::entity_from_json(&data)?);
                    }
                }
                seq.map($crate::core::store::sql::to_u64).transpose()
            }

            #[tracing::instrument(
                                skip_all,
                                fields(
                                    org = %commits.first().map(|c| c.org).unwrap_or_default(),
                                    expected_seq = commits.first().map_or(0, |c| c.expected_seq),
                                    commits = commits.len(),
                                )
                            )]
            async fn commit_batch(
                &self,
                commits: &[$crate::core::store::Commit<'_>],
            ) -> Result<u64, $crate::core::store::StoreError> {
                let new_seq = $crate::core::store::sql::batch_end(commits)?;
                let first = &commits[0];
                if !first.create_org
                    && commits
                        .iter()
                        .all(|c| c.changes.is_empty() && c.secrets.is_empty())
                {
                    return Ok(first.expected_seq);
                }
                let rows = $crate::core::store::sql::BatchRows::new(commits)?;
                let mut writer = self.writer.acquire(&self.pool).await?;
                let result = match Self::commit_in_one_statement(
                    &mut writer,
                    commits,
                    &rows,
                    new_seq,
                )
                .await
                {
                    Ok(Some(seq)) => Ok(seq),
                    Ok(None) => {
                        Self::commit_in_transaction(writer.get(), commits, &rows, new_seq).await
                    }
                    Err(e) => Err(e),
                };
                writer.release(&result);
                result
            }

            async fn events_after(
                &self,
                org: ::uuid::Uuid,
                after: u64,
                limit: usize,
            ) -> Result<Vec<$crate::core::store::EventRecord>, $crate::core::store::StoreError> {
                self.list_events(org, &$crate::core::store::EventFilter::default(), after, limit)
                    .await
            }

            async fn list_events(
                &self,
                org: ::uuid::Uuid,
                filter: &$crate::core::store::EventFilter,
                after: u64,
                limit: usize,
            ) -> Result<Vec<$crate::core::store::EventRecord>, $crate::core::store::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT ");
                query.push($crate::core::store::sql::EVENT_COLUMNS);
                query.push(" FROM events WHERE org_id = ");
                query.push_bind(org.to_string());
                query.push(" AND seq > ");
                query.push_bind($crate::core::store::sql::to_i64(after)?);
                if let Some(actor) = &filter.actor {
                    query.push(" AND actor = ").push_bind(actor.clone());
                }
                if let Some(target) = &filter.target {
                    query.push(" AND target = ").push_bind(target.clone());
                }
                if let Some(action) = &filter.action {
                    query.push(" AND action = ").push_bind(action.clone());
                }
                if let Some(start) = filter.start_time {
                    query.push(" AND time >= ").push_bind(start);
                }
                if let Some(end) = filter.end_time {
                    query.push(" AND time < ").push_bind(end);
                }
                query.push(" ORDER BY seq LIMIT ");
                query.push_bind($crate::core::store::sql::limit(limit));
                let rows: Vec<$crate::core::store::sql::EventRow> =
                    query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| $crate::core::store::sql::event_from_row(org, row))
                    .collect()
            }

            async fn find_request(
                &self,
                org: ::uuid::Uuid,
                request_id: &str,
            ) -> Result<Option<String>, $crate::core::store::StoreError> {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT target FROM request_ids WHERE org_id = $1 AND request_id = $2",
                )
                .bind(org.to_string())
                .bind(request_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(target,)| target))
            }

            async fn find_token(
                &self,
                hash: &str,
            ) -> Result<Option<$crate::core::store::TokenRecord>, $crate::core::store::StoreError> {
                let row: Option<$crate::core::store::sql::TokenRow> = sqlx::query_as(
                    "SELECT id, hash, kind, org_id, principal, create_time, expire_time, \
                     revoke_time FROM tokens WHERE hash = $1",
                )
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map($crate::core::store::sql::token_from_row).transpose()
            }

            async fn insert_token(
                &self,
                token: &$crate::core::store::TokenRecord,
            ) -> Result<(), $crate::core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO tokens (id, hash, kind, org_id, principal, create_time, \
                     expire_time, revoke_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(token.id.to_string())
                .bind(&token.hash)
                .bind($crate::core::store::sql::token_kind_to_text(token.kind))
                .bind(token.org.to_string())
                .bind($crate::core::store::sql::principal_to_text(token.principal))
                .bind(token.create_time)
                .bind(token.expire_time)
                .bind(token.revoke_time)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn revoke_token(
                &self,
                id: ::uuid::Uuid,
                at: $crate::domain::model::Micros,
            ) -> Result<bool, $crate::core::store::StoreError> {
                let updated = sqlx::query(
                    "UPDATE tokens SET revoke_time = $1 WHERE id = $2 AND revoke_time IS NULL",
                )
                .bind(at)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
                Ok(updated.rows_affected() == 1)
            }

            async fn list_tokens(
                &self,
                org: ::uuid::Uuid,
                principal: $crate::domain::model::Principal,
            ) -> Result<Vec<$crate::core::store::TokenRecord>, $crate::core::store::StoreError> {
                let rows: Vec<$crate::core::store::sql::TokenRow> = sqlx::query_as(
                    "SELECT id, hash, kind, org_id, principal, create_time, expire_time, \
                     revoke_time FROM tokens WHERE org_id = $1 AND principal = $2 \
                     ORDER BY create_time DESC, id DESC",
                )
                .bind(org.to_string())
                .bind($crate::core::store::sql::principal_to_text(principal))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map($crate::core::store::sql::token_from_row)
                    .collect()
            }

            async fn find_invitation_token(
                &self,
                hash: &str,
            ) -> Result<Option<$crate::core::store::InvitationToken>, $crate::core::store::StoreError> {
                let row: Option<$crate::core::store::sql::InvitationRow> = sqlx::query_as(
                    "SELECT org_id, invitation_id, user_id, expire_time \
                     FROM invitation_tokens WHERE hash = $1",
                )
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map($crate::core::store::sql::invitation_from_row).transpose()
            }

            async fn credentials(
                &self,
                org: ::uuid::Uuid,
                user: ::uuid::Uuid,
            ) -> Result<$crate::core::store::Credentials, $crate::core::store::StoreError> {
                let row: Option<(Option<String>, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT password_hash, failed_logins, locked_until \
                     FROM credentials WHERE org_id = $1 AND user_id = $2",
                )
                .bind(org.to_string())
                .bind(user.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.map($crate::core::store::sql::credentials_from_row)
                    .transpose()
                    .map(Option::unwrap_or_default)
            }

            async fn set_login_failures(
                &self,
                org: ::uuid::Uuid,
                user: ::uuid::Uuid,
                failed_logins: u32,
                locked_until: Option<$crate::domain::model::Micros>,
            ) -> Result<(), $crate::core::store::StoreError> {
                sqlx::query(
                    "INSERT INTO credentials (org_id, user_id, failed_logins, locked_until) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, user_id) DO UPDATE \
                     SET failed_logins = excluded.failed_logins, \
                     locked_until = excluded.locked_until",
                )
                .bind(org.to_string())
                .bind(user.to_string())
                .bind(i64::from(failed_logins))
                .bind(locked_until)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn sequences(
                &self,
            ) -> Result<Vec<(::uuid::Uuid, u64)>, $crate::core::store::StoreError> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT org_id, seq FROM org_sequences")
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter()
                    .map(|(id, seq)| {
                        Ok((
                            $crate::core::store::sql::parse_uuid(id)?,
                            $crate::core::store::sql::to_u64(*seq)?,
                        ))
                    })
                    .collect()
            }

            async fn revoked_since(
                &self,
                since: $crate::domain::model::Micros,
            ) -> Result<Vec<::uuid::Uuid>, $crate::core::store::StoreError> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT id FROM tokens WHERE revoke_time >= $1")
                        .bind(since)
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter()
                    .map(|(id,)| $crate::core::store::sql::parse_uuid(id))
                    .collect()
            }
        }

        impl $store {
            /// The general commit path: the batch in one transaction on `conn`, one
            /// multi-row statement per table.
            async fn commit_in_transaction(
                conn: &mut <$db as sqlx::Database>::Connection,
                commits: &[$crate::core::store::Commit<'_>],
                rows: &$crate::core::store::sql::BatchRows<'_>,
                new_seq: u64,
            ) -> Result<u64, $crate::core::store::StoreError> {
                use $crate::core::store::sql::{ROWS_PER_STATEMENT, principal_to_text, to_i64};
                use $crate::core::store::{SecretOp, StoreError};
                use sqlx::Connection as _;

                let first = &commits[0];
                let org = first.org.to_string();
                let conflict = $crate::core::store::sql::unique_to_conflict;

                let mut tx = conn.begin().await?;
                // The sequence row is written first, once for the whole batch: on SQLite a
                // deferred transaction whose first statement writes takes the write lock at
                // once (no lock upgrade that could fail with SQLITE_BUSY); on PostgreSQL the
                // row lock orders the commits of the organization, and a commit that waited
                // re-reads the row and fails the compare-and-set.
                if first.create_org {
                    sqlx::query("INSERT INTO org_sequences (org_id, seq) VALUES ($1, $2)")
                        .bind(&org)
                        .bind(to_i64(new_seq)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(conflict)?;
                } else {
                    let updated = sqlx::query(
                        "UPDATE org_sequences SET seq = $1 WHERE org_id = $2 AND seq = $3",
                    )
                    .bind(to_i64(new_seq)?)
                    .bind(&org)
                    .bind(to_i64(first.expected_seq)?)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() != 1 {
                        return Err(StoreError::Conflict);
                    }
                }

                // The net effect on `entities` (one write per key), then the events, several
                // rows per statement: a commit of one change is one statement per table.
                for chunk in rows.deletes.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new("");
                    Self::push_deletes(&mut query, &org, chunk);
                    query.build().execute(&mut *tx).await?;
                }
                for chunk in rows.upserts.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new("");
                    Self::push_upserts(&mut query, &org, chunk, rows);
                    query.build().execute(&mut *tx).await?;
                }
                for chunk in rows.events.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new("");
                    Self::push_events(&mut query, &org, chunk);
                    query.build().execute(&mut *tx).await.map_err(conflict)?;
                }
                for chunk in rows.requests.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new("");
                    Self::push_requests(&mut query, &org, chunk);
                    query.build().execute(&mut *tx).await.map_err(|e| match e {
                        sqlx::Error::Database(db) if db.is_unique_violation() => {
                            StoreError::DuplicateRequest
                        }
                        e => StoreError::Database(e),
                    })?;
                }

                for op in commits.iter().flat_map(|c| c.secrets) {
                    let query = match op {
                        SecretOp::SetPassword { user, hash } => sqlx::query(
                            "INSERT INTO credentials (org_id, user_id, password_hash) \
                             VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) \
                             DO UPDATE SET password_hash = excluded.password_hash",
                        )
                        .bind(&org)
                        .bind(user.to_string())
                        .bind(hash),
                        SecretOp::PutInvitationToken {
                            hash,
                            invitation,
                            user,
                            expire_time,
                        } => sqlx::query(
                            "INSERT INTO invitation_tokens \
                             (hash, invitation_id, org_id, user_id, expire_time) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(hash)
                        .bind(invitation.to_string())
                        .bind(&org)
                        .bind(user.to_string())
                        .bind(*expire_time),
                        SecretOp::DeleteInvitationTokens { user } => sqlx::query(
                            "DELETE FROM invitation_tokens WHERE org_id = $1 AND user_id = $2",
                        )
                        .bind(&org)
                        .bind(user.to_string()),
                        SecretOp::PutToken(token) => sqlx::query(
                            "INSERT INTO tokens (id, hash, kind, org_id, principal, \
                             create_time, expire_time, revoke_time) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(token.id.to_string())
                        .bind(&token.hash)
                        .bind($crate::core::store::sql::token_kind_to_text(token.kind))
                        .bind(token.org.to_string())
                        .bind(principal_to_text(token.principal))
                        .bind(token.create_time)
                        .bind(token.expire_time)
                        .bind(token.revoke_time),
                        SecretOp::RevokeTokensOf { principal, at } => sqlx::query(
                            "UPDATE tokens SET revoke_time = $1 \
                             WHERE org_id = $2 AND principal = $3 AND revoke_time IS NULL",
                        )
                        .bind(*at)
                        .bind(&org)
                        .bind(principal_to_text(*principal)),
                        SecretOp::RevokeToken { id, at } => sqlx::query(
                            "UPDATE tokens SET revoke_time = $1 \
                             WHERE id = $2 AND org_id = $3 AND revoke_time IS NULL",
                        )
                        .bind(*at)
                        .bind(id.to_string())
                        .bind(&org),
                        SecretOp::DeleteCredentials { user } => sqlx::query(
                            "DELETE FROM credentials WHERE org_id = $1 AND user_id = $2",
                        )
                        .bind(&org)
                        .bind(user.to_string()),
                    };
                    query.execute(&mut *tx).await.map_err(conflict)?;
                }

                tx.commit().await?;
                Ok(new_seq)
            }

            /// `DELETE` of the `entities` rows of `chunk`.
            fn push_deletes<'q>(
                query: &mut sqlx::QueryBuilder<$db>,
                org: &'q str,
                chunk: &'q [(&'static str, String)],
            ) {
                query.push("DELETE FROM entities WHERE org_id = ");
                query.push_bind(org).push(" AND (");
                for (i, (kind, key)) in chunk.iter().enumerate() {
                    if i > 0 {
                        query.push(" OR ");
                    }
                    query.push("(kind = ").push_bind(*kind);
                    query.push(" AND key = ").push_bind(key.as_str()).push(")");
                }
                query.push(")");
            }

            /// `INSERT .. ON CONFLICT DO UPDATE` of the `entities` rows of `chunk`.
            fn push_upserts<'q>(
                query: &mut sqlx::QueryBuilder<$db>,
                org: &'q str,
                chunk: &'q [(&'static str, String, usize)],
                rows: &'q $crate::core::store::sql::BatchRows<'_>,
            ) {
                query.push("INSERT INTO entities (org_id, kind, key, data) ");
                query.push_values(chunk, |mut row, (kind, key, data)| {
                    row.push_bind(org)
                        .push_bind(*kind)
                        .push_bind(key.as_str())
                        .push_bind(rows.events[*data].after.as_deref());
                });
                query.push(" ON CONFLICT (org_id, kind, key) DO UPDATE SET data = excluded.data");
            }

            /// `INSERT` of the `events` rows of `chunk`.
            fn push_events<'q>(
                query: &mut sqlx::QueryBuilder<$db>,
                org: &'q str,
                chunk: &'q [$crate::core::store::sql::NewEvent<'_>],
            ) {
                query.push(
                    "INSERT INTO events (org_id, seq, actor, action, target, before, \
                     after, affected_users, request_id, time) ",
                );
                query.push_values(chunk, |mut row, e| {
                    row.push_bind(org)
                        .push_bind(e.seq)
                        .push_bind(e.actor)
                        .push_bind(e.action)
                        .push_bind(e.target)
                        .push_bind(e.before.as_deref())
                        .push_bind(e.after.as_deref())
                        .push_bind(e.affected_users.as_str())
                        .push_bind(e.request_id)
                        .push_bind(e.time);
                });
            }

            /// `INSERT` of the `request_ids` rows of `chunk`.
            fn push_requests<'q>(
                query: &mut sqlx::QueryBuilder<$db>,
                org: &'q str,
                chunk: &'q [(&str, &str)],
            ) {
                query.push("INSERT INTO request_ids (org_id, request_id, target) ");
                query.push_values(chunk, |mut row, (request_id, target)| {
                    row.push_bind(org).push_bind(*request_id).push_bind(*target);
                });
            }
        }
    };
}

pub(super) use impl_sql_store;

#[cfg(test)]
mod tests {
    /// Every file of `migrations/<backend>` is embedded in the backend's list, with the version
    /// and description `sqlx::migrate!` would give it (`0003_tokens_revoke_time.sql` → 3,
    /// "tokens revoke time"), and its text is the file's. A migration file that is not in the
    /// list would silently never run.
    #[test]
    fn every_migration_file_is_embedded() {
        for (backend, embedded) in [
            ("sqlite", super::super::sqlite::MIGRATIONS),
            ("postgres", super::super::postgres::MIGRATIONS),
        ] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| {
                    let path = entry.unwrap().path();
                    let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
                    let (version, description) = name.split_once('_').unwrap();
                    (
                        version.parse().unwrap(),
                        description.replace('_', " "),
                        std::fs::read_to_string(&path).unwrap(),
                    )
                })
                .collect();
            files.sort();
            let listed: Vec<(i64, String, String)> = embedded
                .iter()
                .map(|&(v, d, sql)| (v, d.to_owned(), sql.to_owned()))
                .collect();
            assert_eq!(listed, files, "migrations of {backend}");
        }
    }
}
