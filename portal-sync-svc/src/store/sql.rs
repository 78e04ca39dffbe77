//! The one SQL implementation of [`PortalStore`](super::PortalStore), shared by SQLite and
//! PostgreSQL.
//!
//! The schema (`migrations/{sqlite,postgres}/0001_init.sql`, the same text) uses only TEXT and
//! BIGINT, and every statement below is written in the dialect both databases accept (`$N`
//! placeholders, `ON CONFLICT .. DO UPDATE/NOTHING`, `UPDATE .. RETURNING`), so the two
//! backends differ only in their pool type. [`impl_sql_store!`] expands to
//! `impl PortalStore for $Store` with this single body; the conversions between rows and
//! domain types are plain functions in this module.
//!
//! Every write transaction of a company starts with `reserve_events` — the
//! `UPDATE company_seq .. RETURNING seq` that allocates the sequence numbers of its events —
//! so that on SQLite the transaction takes the write lock with its first statement (no lock
//! upgrade that could fail with SQLITE_BUSY) and on PostgreSQL the row lock orders the
//! company's writers; the events stay gap-free because the sequence and the events commit or
//! roll back together.
//!
//! Why a macro rather than `impl<DB: Database>`: a generic implementation needs an
//! `Executor`/`Encode`/`Decode` bound for every column type and on every method, and its error
//! messages become unreadable; the macro keeps the SQL in one place with concrete types.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use uuid::Uuid;

use super::{MemberChange, StoreError};
use crate::domain::model::{
    Company, Email, InfraKind, Infrastructure, NewEvent, PortalEvent, TeamMember,
};

/// Builds the migrator of embedded migrations `(version, description, sql)`.
///
/// `sqlx::migrate!` is only available with sqlx's `macros`/`derive` features, which the
/// workspace leaves off. The migrations are embedded with `include_str!` instead and recorded
/// exactly as `migrate!` would record them (same version, description and SHA-384 checksum),
/// so either way of embedding can migrate a database created by the other. A new migration
/// file must be added to the backend's list.
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

/// Maps the error of a write: a unique violation means the row (or the company + email) is
/// taken, [`StoreError::Conflict`]; a foreign-key violation means a referenced row is
/// missing, [`StoreError::NotFound`].
pub(super) fn write_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(error),
    }
}

/// A revision or sequence number as a BIGINT.
pub(super) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} exceeds BIGINT")))
}

/// A BIGINT as a revision or sequence number.
pub(super) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative number {value}")))
}

/// A number of events as a BIGINT.
pub(super) fn count_to_i64(count: usize) -> Result<i64, StoreError> {
    i64::try_from(count)
        .map_err(|_| StoreError::Corrupt(format!("{count} events in one transaction")))
}

/// A row limit as a BIGINT (larger than any table can be).
pub(super) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The first of the `count` sequence numbers that end at `last` (the value `reserve_events`
/// read back).
pub(super) fn first_reserved(last: i64, count: usize) -> Result<u64, StoreError> {
    let last = to_u64(last)?;
    let count = u64::try_from(count)
        .map_err(|_| StoreError::Corrupt(format!("{count} events in one transaction")))?;
    (last + 1)
        .checked_sub(count)
        .ok_or_else(|| StoreError::Corrupt(format!("sequence {last} below {count} events")))
}

/// A stored uuid.
pub(super) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("bad uuid {text:?}: {e}")))
}

/// A stored email.
pub(super) fn parse_email(text: &str) -> Result<Email, StoreError> {
    Email::parse(text).map_err(|e| StoreError::Corrupt(format!("bad email {text:?}: {e}")))
}

/// The `kind` column of `infrastructures` (the serde name of the kind).
pub(super) fn kind_to_text(kind: InfraKind) -> &'static str {
    match kind {
        InfraKind::O11Cloud => "o11_cloud",
        InfraKind::O11Hybrid => "o11_hybrid",
        InfraKind::O11SelfManaged => "o11_self_managed",
        InfraKind::O11Sentry => "o11_sentry",
        InfraKind::Odc => "odc",
    }
}

/// Reads the `kind` column of `infrastructures`.
pub(super) fn kind_from_text(text: &str) -> Result<InfraKind, StoreError> {
    match text {
        "o11_cloud" => Ok(InfraKind::O11Cloud),
        "o11_hybrid" => Ok(InfraKind::O11Hybrid),
        "o11_self_managed" => Ok(InfraKind::O11SelfManaged),
        "o11_sentry" => Ok(InfraKind::O11Sentry),
        "odc" => Ok(InfraKind::Odc),
        _ => Err(StoreError::Corrupt(format!(
            "bad infrastructure kind {text:?}"
        ))),
    }
}

/// A document as stored (`members.data`, `support_cases.data`).
pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("to JSON: {e}")))
}

/// Reads a stored document.
pub(super) fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("bad stored JSON: {e}")))
}

/// A change or event for a company other than the batch's: a caller bug, refused before
/// anything is written.
pub(super) fn wrong_company(expected: Uuid, got: Uuid) -> StoreError {
    StoreError::Corrupt(format!(
        "record of company {got} in a write of company {expected}"
    ))
}

/// `companies` columns: id, display_name, create_time.
pub(super) type CompanyRow = (String, String, i64);

/// Decodes a company.
pub(super) fn company_from_row(
    (id, display_name, create_time): CompanyRow,
) -> Result<Company, StoreError> {
    Ok(Company {
        id: parse_uuid(&id)?,
        display_name,
        create_time,
    })
}

/// Columns of [`InfraRow`], in order.
pub(super) const INFRA_COLUMNS: &str =
    "id, company, display_name, kind, identity_org, create_time, identity_token";

/// `infrastructures` columns: id, company, display_name, kind, identity_org, create_time,
/// identity_token.
pub(super) type InfraRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
);

/// Decodes an infrastructure and its identity token.
pub(super) fn infra_from_row(
    row: InfraRow,
) -> Result<(Infrastructure, Option<String>), StoreError> {
    let (id, company, display_name, kind, identity_org, create_time, token) = row;
    let infra = Infrastructure {
        id: parse_uuid(&id)?,
        company: parse_uuid(&company)?,
        display_name,
        kind: kind_from_text(&kind)?,
        identity_org: identity_org.as_deref().map(parse_uuid).transpose()?,
        create_time,
    };
    Ok((infra, token))
}

/// `events` columns: seq, actor, action, target, detail, time.
pub(super) type EventRow = (i64, String, String, String, String, i64);

/// Decodes an event.
pub(super) fn event_from_row(row: EventRow) -> Result<PortalEvent, StoreError> {
    let (seq, actor, action, target, detail, time) = row;
    Ok(PortalEvent {
        seq: to_u64(seq)?,
        event: NewEvent {
            actor,
            action,
            target,
            detail,
        },
        time,
    })
}

/// Largest number of emails bound in one `IN (..)` list (both databases allow far more).
pub(super) const IN_LIST_CHUNK: usize = 500;

/// Bound parameters per multi-row statement at most: below SQLite's limit (32,766 since 3.32)
/// and PostgreSQL's (65,535).
pub(super) const MAX_BINDS: usize = 32_000;

/// Rows per multi-row statement at most. Larger statements save little once a round trip is
/// shared by a thousand rows, and cost more to parse.
pub(super) const MAX_ROWS: usize = 1000;

/// Rows of `binds_per_row` parameters each that one statement may carry (plus a few shared
/// parameters such as the company).
pub(super) const fn rows_per_statement(binds_per_row: usize) -> usize {
    let rows = (MAX_BINDS - SHARED_BINDS) / binds_per_row;
    if rows < MAX_ROWS { rows } else { MAX_ROWS }
}

/// Parameters a multi-row statement may bind besides its rows.
const SHARED_BINDS: usize = 8;

/// Parameters per row of the multi-row statements.
pub(super) const MEMBER_INSERT_BINDS: usize = 5;
/// Parameters per row of the multi-row member update.
pub(super) const MEMBER_UPDATE_BINDS: usize = 5;
/// Parameters per row of the multi-row member delete.
pub(super) const MEMBER_DELETE_BINDS: usize = 2;
/// Parameters per row of the multi-row event insert.
pub(super) const EVENT_BINDS: usize = 7;

/// Consecutive member changes of one kind, with distinct ids, written by one statement.
///
/// [`runs`] cuts a batch into these without reordering anything, so the batch keeps the
/// meaning of its changes applied one by one in order (see the `apply` implementation for why
/// each kind of run is equivalent to its changes written one at a time).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Run<'a> {
    /// New members.
    Insert(Vec<&'a TeamMember>),
    /// Replacements, each with the revision it expects.
    Update(Vec<(&'a TeamMember, u64)>),
    /// Deletions: (id, expected revision).
    Delete(Vec<(Uuid, u64)>),
}

/// Cuts `changes` into runs, in order: a run ends where the kind of change changes, where a
/// member already in the run comes again, or when it is full ([`rows_per_statement`]).
pub(super) fn runs(changes: &[MemberChange]) -> Vec<Run<'_>> {
    let mut out: Vec<Run<'_>> = Vec::new();
    // The members of the last run.
    let mut ids: HashSet<Uuid> = HashSet::new();
    for change in changes {
        let id = match change {
            MemberChange::Upsert { member, .. } => member.id,
            MemberChange::Delete { id, .. } => *id,
        };
        let fresh = ids.insert(id);
        // Appends to the last run when it is of this kind, has room and lacks this member.
        let joined = match (out.last_mut(), change) {
            (
                Some(Run::Insert(v)),
                MemberChange::Upsert {
                    member,
                    expected_rev: None,
                },
            ) if fresh && v.len() < rows_per_statement(MEMBER_INSERT_BINDS) => {
                v.push(member);
                true
            }
            (
                Some(Run::Update(v)),
                MemberChange::Upsert {
                    member,
                    expected_rev: Some(rev),
                },
            ) if fresh && v.len() < rows_per_statement(MEMBER_UPDATE_BINDS) => {
                v.push((member, *rev));
                true
            }
            (
                Some(Run::Delete(v)),
                MemberChange::Delete {
                    id, expected_rev, ..
                },
            ) if fresh && v.len() < rows_per_statement(MEMBER_DELETE_BINDS) => {
                v.push((*id, *expected_rev));
                true
            }
            _ => false,
        };
        if !joined {
            ids.clear();
            ids.insert(id);
            out.push(match change {
                MemberChange::Upsert {
                    member,
                    expected_rev: None,
                } => Run::Insert(vec![member]),
                MemberChange::Upsert {
                    member,
                    expected_rev: Some(rev),
                } => Run::Update(vec![(member, *rev)]),
                MemberChange::Delete {
                    id, expected_rev, ..
                } => Run::Delete(vec![(*id, *expected_rev)]),
            });
        }
    }
    out
}

/// `impl PortalStore for $store` over `self.pool`, a pool of database `$db`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Allocates the sequence numbers of `count` events of `company` and returns the
            /// first. This is the first write of every company transaction (see the module
            /// documentation); an unknown company is [`StoreError::NotFound`].
            async fn reserve_events(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                company: ::uuid::Uuid,
                count: usize,
            ) -> Result<u64, $crate::store::StoreError> {
                let row: Option<(i64,)> = ::sqlx::query_as(
                    "UPDATE company_seq SET seq = seq + $1 WHERE company = $2 RETURNING seq",
                )
                .bind($crate::store::sql::count_to_i64(count)?)
                .bind(company.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                let (last,) = row.ok_or($crate::store::StoreError::NotFound)?;
                $crate::store::sql::first_reserved(last, count)
            }

            /// Inserts `events` of `company` from sequence `first` on, in multi-row INSERTs.
            async fn insert_events(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                company: ::uuid::Uuid,
                first: u64,
                events: &[$crate::domain::model::NewEvent],
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::{EVENT_BINDS, rows_per_statement, to_i64, write_error};

                let company = company.to_string();
                let mut seq = first;
                for chunk in events.chunks(rows_per_statement(EVENT_BINDS)) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    for event in chunk {
                        rows.push((to_i64(seq)?, event));
                        seq += 1;
                    }
                    let mut query = ::sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO events (company, seq, actor, action, target, detail, time) ",
                    );
                    query.push_values(rows, |mut row, (seq, event)| {
                        row.push_bind(company.as_str())
                            .push_bind(seq)
                            .push_bind(event.actor.as_str())
                            .push_bind(event.action.as_str())
                            .push_bind(event.target.as_str())
                            .push_bind(event.detail.as_str())
                            .push_bind(time);
                    });
                    query
                        .build()
                        .execute(&mut *conn)
                        .await
                        .map_err(write_error)?;
                }
                Ok(())
            }

            /// Inserts members (distinct ids, at most [`rows_per_statement`] of them) in one
            /// statement. A taken id or email fails it ([`StoreError::Conflict`]), as it would
            /// fail one of the single-row INSERTs.
            ///
            /// [`rows_per_statement`]: $crate::store::sql::rows_per_statement
            async fn insert_members(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                members: &[&$crate::domain::model::TeamMember],
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::{to_i64, to_json, write_error};

                let mut rows = Vec::with_capacity(members.len());
                for member in members {
                    rows.push((
                        member.company.to_string(),
                        member.id.to_string(),
                        member.email.as_str(),
                        to_json(member)?,
                        to_i64(member.rev)?,
                    ));
                }
                let mut query = ::sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO members (company, id, email, data, rev) ",
                );
                query.push_values(rows, |mut row, (company, id, email, data, rev)| {
                    row.push_bind(company)
                        .push_bind(id)
                        .push_bind(email)
                        .push_bind(data)
                        .push_bind(rev);
                });
                query
                    .build()
                    .execute(&mut *conn)
                    .await
                    .map_err(write_error)?;
                Ok(())
            }

            /// Replaces members of `company` (distinct ids), each only at the revision it
            /// expects; any other revision is [`StoreError::Conflict`].
            ///
            /// The members whose email stays the same go in one `UPDATE .. FROM (VALUES ..)`:
            /// with distinct ids and unchanged emails, those updates cannot interact with each
            /// other or with the rest of the run, so their order does not matter. The others
            /// (an email changes, or the revision differs) are then written one by one, in
            /// their order, with the single-row statement — a change of email can depend on
            /// another one freeing it first.
            async fn update_members(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                company: &str,
                updates: &[(&$crate::domain::model::TeamMember, u64)],
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                use $crate::store::sql::{to_i64, to_json, write_error};

                let mut rows = Vec::with_capacity(updates.len());
                for (member, expected_rev) in updates {
                    rows.push((
                        member.id.to_string(),
                        member.email.as_str(),
                        to_json(member)?,
                        to_i64(member.rev)?,
                        to_i64(*expected_rev)?,
                    ));
                }
                // VALUES columns are column1.. on both databases.
                let mut query = ::sqlx::QueryBuilder::<$db>::new(
                    "UPDATE members SET data = v.column3, rev = v.column4 FROM (",
                );
                query.push_values(&rows, |mut row, (id, email, data, rev, expected)| {
                    row.push_bind(id.as_str())
                        .push_bind(*email)
                        .push_bind(data.as_str())
                        .push_bind(*rev)
                        .push_bind(*expected);
                });
                query.push(") AS v WHERE members.company = ");
                query.push_bind(company);
                query.push(
                    " AND members.id = v.column1 AND members.email = v.column2 \
                     AND members.rev = v.column5 RETURNING id",
                );
                let updated: Vec<(String,)> = query
                    .build_query_as()
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(write_error)?;
                if updated.len() == rows.len() {
                    return Ok(());
                }
                let updated: ::std::collections::HashSet<String> =
                    updated.into_iter().map(|(id,)| id).collect();
                for (id, email, data, rev, expected) in &rows {
                    if updated.contains(id) {
                        continue;
                    }
                    let result = ::sqlx::query(
                        "UPDATE members SET data = $1, email = $2, rev = $3 \
                         WHERE company = $4 AND id = $5 AND rev = $6",
                    )
                    .bind(data.as_str())
                    .bind(*email)
                    .bind(*rev)
                    .bind(company)
                    .bind(id.as_str())
                    .bind(*expected)
                    .execute(&mut *conn)
                    .await
                    .map_err(write_error)?;
                    if result.rows_affected() != 1 {
                        return Err(StoreError::Conflict);
                    }
                }
                Ok(())
            }

            /// Deletes members of `company` (distinct ids) in one statement, each only at the
            /// revision it expects; any other revision (or a missing member) is
            /// [`StoreError::Conflict`].
            async fn delete_members(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                company: &str,
                deletes: &[(::uuid::Uuid, u64)],
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::to_i64;

                let mut rows = Vec::with_capacity(deletes.len());
                for (id, expected_rev) in deletes {
                    rows.push((id.to_string(), to_i64(*expected_rev)?));
                }
                let mut query =
                    ::sqlx::QueryBuilder::<$db>::new("DELETE FROM members WHERE company = ");
                query.push_bind(company);
                query.push(" AND (id, rev) IN (");
                query.push_values(&rows, |mut row, (id, rev)| {
                    row.push_bind(id.as_str()).push_bind(*rev);
                });
                query.push(")");
                let deleted = query.build().execute(&mut *conn).await?;
                if usize::try_from(deleted.rows_affected()).ok() != Some(rows.len()) {
                    return Err($crate::store::StoreError::Conflict);
                }
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::PortalStore for $store {
            async fn create_company(
                &self,
                company: &$crate::domain::model::Company,
                first_admin: &$crate::domain::model::TeamMember,
                event: &$crate::domain::model::NewEvent,
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::write_error;

                if first_admin.company != company.id {
                    return Err($crate::store::sql::wrong_company(
                        company.id,
                        first_admin.company,
                    ));
                }
                let id = company.id.to_string();
                let mut tx = self.pool.begin().await?;
                ::sqlx::query(
                    "INSERT INTO companies (id, display_name, create_time) VALUES ($1, $2, $3)",
                )
                .bind(&id)
                .bind(&company.display_name)
                .bind(company.create_time)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?;
                ::sqlx::query("INSERT INTO company_seq (company, seq) VALUES ($1, 0)")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(write_error)?;
                let first = Self::reserve_events(&mut tx, company.id, 1).await?;
                Self::insert_members(&mut tx, &[first_admin]).await?;
                Self::insert_events(
                    &mut tx,
                    company.id,
                    first,
                    std::slice::from_ref(event),
                    time,
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn company(
                &self,
                id: ::uuid::Uuid,
            ) -> Result<Option<$crate::domain::model::Company>, $crate::store::StoreError> {
                let row: Option<$crate::store::sql::CompanyRow> = ::sqlx::query_as(
                    "SELECT id, display_name, create_time FROM companies WHERE id = $1",
                )
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.map($crate::store::sql::company_from_row).transpose()
            }

            async fn create_infrastructure(
                &self,
                infra: &$crate::domain::model::Infrastructure,
                identity_token: Option<&str>,
                event: &$crate::domain::model::NewEvent,
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let first = Self::reserve_events(&mut tx, infra.company, 1).await?;
                ::sqlx::query(
                    "INSERT INTO infrastructures (id, company, display_name, kind, identity_org, \
                     identity_token, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(infra.id.to_string())
                .bind(infra.company.to_string())
                .bind(&infra.display_name)
                .bind($crate::store::sql::kind_to_text(infra.kind))
                .bind(infra.identity_org.map(|org| org.to_string()))
                .bind(identity_token)
                .bind(infra.create_time)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::sql::write_error)?;
                let events = std::slice::from_ref(event);
                Self::insert_events(&mut tx, infra.company, first, events, time).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_identity_token(
                &self,
                company: ::uuid::Uuid,
                infra: ::uuid::Uuid,
                token: &str,
                event: &$crate::domain::model::NewEvent,
                time: $crate::domain::model::Micros,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let updated = ::sqlx::query(
                    "UPDATE infrastructures SET identity_token = $1 \
                     WHERE id = $2 AND company = $3 AND kind = $4",
                )
                .bind(token)
                .bind(infra.to_string())
                .bind(company.to_string())
                .bind($crate::store::sql::kind_to_text(
                    $crate::domain::model::InfraKind::Odc,
                ))
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    return Ok(false);
                }
                let first = Self::reserve_events(&mut tx, company, 1).await?;
                let events = std::slice::from_ref(event);
                Self::insert_events(&mut tx, company, first, events, time).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn identity_token(
                &self,
                infra: ::uuid::Uuid,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                let row: Option<(Option<String>,)> =
                    ::sqlx::query_as("SELECT identity_token FROM infrastructures WHERE id = $1")
                        .bind(infra.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.and_then(|(token,)| token))
            }

            async fn infrastructures(
                &self,
                company: ::uuid::Uuid,
            ) -> Result<Vec<$crate::domain::model::Infrastructure>, $crate::store::StoreError> {
                let mut query = ::sqlx::QueryBuilder::<$db>::new("SELECT ");
                query.push($crate::store::sql::INFRA_COLUMNS);
                query.push(" FROM infrastructures WHERE company = ");
                query.push_bind(company.to_string());
                query.push(" ORDER BY create_time, id");
                let rows: Vec<$crate::store::sql::InfraRow> =
                    query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| $crate::store::sql::infra_from_row(row).map(|(infra, _)| infra))
                    .collect()
            }

            async fn odc_infrastructures(
                &self,
            ) -> Result<
                Vec<($crate::domain::model::Infrastructure, String)>,
                $crate::store::StoreError,
            > {
                // An ODC infrastructure stored without a token cannot be synced: not listed.
                let mut query = ::sqlx::QueryBuilder::<$db>::new("SELECT ");
                query.push($crate::store::sql::INFRA_COLUMNS);
                query.push(" FROM infrastructures WHERE kind = ");
                query.push_bind($crate::store::sql::kind_to_text(
                    $crate::domain::model::InfraKind::Odc,
                ));
                query.push(" AND identity_token IS NOT NULL ORDER BY create_time, id");
                let rows: Vec<$crate::store::sql::InfraRow> =
                    query.build_query_as().fetch_all(&self.pool).await?;
                let mut odc = Vec::with_capacity(rows.len());
                for row in rows {
                    if let (infra, Some(token)) = $crate::store::sql::infra_from_row(row)? {
                        odc.push((infra, token));
                    }
                }
                Ok(odc)
            }

            async fn members(
                &self,
                company: ::uuid::Uuid,
            ) -> Result<Vec<$crate::domain::model::TeamMember>, $crate::store::StoreError> {
                let rows: Vec<(String,)> =
                    ::sqlx::query_as("SELECT data FROM members WHERE company = $1 ORDER BY email")
                        .bind(company.to_string())
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter()
                    .map(|(data,)| $crate::store::sql::from_json(data))
                    .collect()
            }

            async fn member(
                &self,
                company: ::uuid::Uuid,
                id: ::uuid::Uuid,
            ) -> Result<Option<$crate::domain::model::TeamMember>, $crate::store::StoreError> {
                let row: Option<(String,)> =
                    ::sqlx::query_as("SELECT data FROM members WHERE company = $1 AND id = $2")
                        .bind(company.to_string())
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(|(data,)| $crate::store::sql::from_json(&data))
                    .transpose()
            }

            async fn member_by_email(
                &self,
                company: ::uuid::Uuid,
                email: &$crate::domain::model::Email,
            ) -> Result<Option<$crate::domain::model::TeamMember>, $crate::store::StoreError> {
                let row: Option<(String,)> =
                    ::sqlx::query_as("SELECT data FROM members WHERE company = $1 AND email = $2")
                        .bind(company.to_string())
                        .bind(email.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(|(data,)| $crate::store::sql::from_json(&data))
                    .transpose()
            }

            async fn apply(
                &self,
                company: ::uuid::Uuid,
                changes: &[$crate::store::MemberChange],
                events: &[$crate::domain::model::NewEvent],
                cursor: Option<&$crate::store::SyncCursor>,
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql::{Run, to_i64, write_error, wrong_company};
                use $crate::store::{MemberChange, StoreError};

                // Refuse a misaddressed batch before writing anything.
                for change in changes {
                    let owner = match change {
                        MemberChange::Upsert { member, .. } => member.company,
                        MemberChange::Delete { company, .. } => *company,
                    };
                    if owner != company {
                        return Err(wrong_company(company, owner));
                    }
                }
                let company_text = company.to_string();

                // Any error below drops `tx`, which rolls everything back.
                let mut tx = self.pool.begin().await?;
                let first = Self::reserve_events(&mut tx, company, events.len()).await?;
                // Multi-row statements, in the batch's order (see `runs`).
                for run in $crate::store::sql::runs(changes) {
                    match run {
                        Run::Insert(members) => Self::insert_members(&mut tx, &members).await?,
                        Run::Update(updates) => {
                            Self::update_members(&mut tx, &company_text, &updates).await?;
                        }
                        Run::Delete(deletes) => {
                            Self::delete_members(&mut tx, &company_text, &deletes).await?;
                        }
                    }
                }
                Self::insert_events(&mut tx, company, first, events, time).await?;
                if let Some(cursor) = cursor {
                    let infrastructure = cursor.infrastructure.to_string();
                    let owned: Option<(String,)> = ::sqlx::query_as(
                        "SELECT id FROM infrastructures WHERE id = $1 AND company = $2",
                    )
                    .bind(&infrastructure)
                    .bind(&company_text)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if owned.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    // A batch that is not a snapshot keeps the time of the last snapshot.
                    ::sqlx::query(
                        "INSERT INTO sync_state (infrastructure, cursor, snapshot_time) \
                         VALUES ($1, $2, $3) ON CONFLICT (infrastructure) DO UPDATE \
                         SET cursor = excluded.cursor, snapshot_time = \
                         COALESCE(excluded.snapshot_time, sync_state.snapshot_time)",
                    )
                    .bind(&infrastructure)
                    .bind(to_i64(cursor.cursor)?)
                    .bind(cursor.snapshot_time)
                    .execute(&mut *tx)
                    .await
                    .map_err(write_error)?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn sync_state(
                &self,
                infrastructure: ::uuid::Uuid,
            ) -> Result<$crate::store::SyncState, $crate::store::StoreError> {
                let row: Option<(i64, Option<i64>)> = ::sqlx::query_as(
                    "SELECT cursor, snapshot_time FROM sync_state WHERE infrastructure = $1",
                )
                .bind(infrastructure.to_string())
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some((cursor, snapshot_time)) => Ok($crate::store::SyncState {
                        cursor: $crate::store::sql::to_u64(cursor)?,
                        snapshot_time,
                    }),
                    None => Ok($crate::store::SyncState::default()),
                }
            }

            async fn reset_sync(
                &self,
                infrastructure: ::uuid::Uuid,
            ) -> Result<(), $crate::store::StoreError> {
                // Cursor 0 is "never synced": the next sync takes a snapshot. The time of the
                // last snapshot taken stays until the new one replaces it.
                ::sqlx::query("UPDATE sync_state SET cursor = 0 WHERE infrastructure = $1")
                    .bind(infrastructure.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn register_community_account(
                &self,
                email: &$crate::domain::model::Email,
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                ::sqlx::query(
                    "INSERT INTO community_accounts (email, create_time) VALUES ($1, $2) \
                     ON CONFLICT (email) DO NOTHING",
                )
                .bind(email.as_str())
                .bind(time)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn remove_community_account(
                &self,
                email: &$crate::domain::model::Email,
            ) -> Result<bool, $crate::store::StoreError> {
                let deleted = ::sqlx::query("DELETE FROM community_accounts WHERE email = $1")
                    .bind(email.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn community_accounts(
                &self,
                emails: &[$crate::domain::model::Email],
            ) -> Result<Vec<$crate::domain::model::Email>, $crate::store::StoreError> {
                let mut found = Vec::new();
                for chunk in emails.chunks($crate::store::sql::IN_LIST_CHUNK) {
                    let mut query = ::sqlx::QueryBuilder::<$db>::new(
                        "SELECT email FROM community_accounts WHERE email IN (",
                    );
                    let mut list = query.separated(", ");
                    for email in chunk {
                        list.push_bind(email.as_str().to_owned());
                    }
                    query.push(")");
                    let rows: Vec<(String,)> = query.build_query_as().fetch_all(&self.pool).await?;
                    for (email,) in rows {
                        found.push($crate::store::sql::parse_email(&email)?);
                    }
                }
                // Sorted, each once, whatever the duplicates and chunks of the input.
                found.sort();
                found.dedup();
                Ok(found)
            }

            async fn create_case(
                &self,
                case: &$crate::domain::model::SupportCase,
                event: &$crate::domain::model::NewEvent,
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                let first = Self::reserve_events(&mut tx, case.company, 1).await?;
                ::sqlx::query(
                    "INSERT INTO support_cases (id, company, data, create_time) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(case.id.to_string())
                .bind(case.company.to_string())
                .bind($crate::store::sql::to_json(case)?)
                .bind(case.create_time)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::sql::write_error)?;
                Self::insert_events(
                    &mut tx,
                    case.company,
                    first,
                    std::slice::from_ref(event),
                    time,
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn cases(
                &self,
                company: ::uuid::Uuid,
            ) -> Result<Vec<$crate::domain::model::SupportCase>, $crate::store::StoreError> {
                let rows: Vec<(String,)> = ::sqlx::query_as(
                    "SELECT data FROM support_cases WHERE company = $1 ORDER BY create_time, id",
                )
                .bind(company.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|(data,)| $crate::store::sql::from_json(data))
                    .collect()
            }

            async fn approve_case(
                &self,
                company: ::uuid::Uuid,
                case: ::uuid::Uuid,
                event: &$crate::domain::model::NewEvent,
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                let company_text = company.to_string();
                let case_text = case.to_string();
                let mut tx = self.pool.begin().await?;
                let first = Self::reserve_events(&mut tx, company, 1).await?;
                let row: Option<(String,)> = ::sqlx::query_as(
                    "SELECT data FROM support_cases WHERE company = $1 AND id = $2",
                )
                .bind(&company_text)
                .bind(&case_text)
                .fetch_optional(&mut *tx)
                .await?;
                let (data,) = row.ok_or($crate::store::StoreError::NotFound)?;
                let mut stored: $crate::domain::model::SupportCase =
                    $crate::store::sql::from_json(&data)?;
                stored.state = $crate::domain::model::CaseState::Open;
                ::sqlx::query("UPDATE support_cases SET data = $1 WHERE company = $2 AND id = $3")
                    .bind($crate::store::sql::to_json(&stored)?)
                    .bind(&company_text)
                    .bind(&case_text)
                    .execute(&mut *tx)
                    .await?;
                ::sqlx::query(
                    "INSERT INTO approved_contacts (company, email) VALUES ($1, $2) \
                     ON CONFLICT (company, email) DO NOTHING",
                )
                .bind(&company_text)
                .bind(stored.creator.as_str())
                .execute(&mut *tx)
                .await?;
                Self::insert_events(&mut tx, company, first, std::slice::from_ref(event), time)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn approved_contacts(
                &self,
                company: ::uuid::Uuid,
            ) -> Result<Vec<$crate::domain::model::Email>, $crate::store::StoreError> {
                let rows: Vec<(String,)> = ::sqlx::query_as(
                    "SELECT email FROM approved_contacts WHERE company = $1 ORDER BY email",
                )
                .bind(company.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|(email,)| $crate::store::sql::parse_email(email))
                    .collect()
            }

            async fn remove_contact(
                &self,
                company: ::uuid::Uuid,
                email: &$crate::domain::model::Email,
                event: &$crate::domain::model::NewEvent,
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                let company_text = company.to_string();
                let mut tx = self.pool.begin().await?;
                let first = Self::reserve_events(&mut tx, company, 1).await?;
                let rows: Vec<(String, String)> =
                    ::sqlx::query_as("SELECT id, data FROM support_cases WHERE company = $1")
                        .bind(&company_text)
                        .fetch_all(&mut *tx)
                        .await?;
                for (id, data) in rows {
                    let mut case: $crate::domain::model::SupportCase =
                        $crate::store::sql::from_json(&data)?;
                    let created = &case.creator == email && !case.creator_removed;
                    if !case.cc.contains(email) && !created {
                        continue;
                    }
                    case.cc.retain(|cc| cc != email);
                    if created {
                        case.creator_removed = true;
                    }
                    ::sqlx::query(
                        "UPDATE support_cases SET data = $1 WHERE company = $2 AND id = $3",
                    )
                    .bind($crate::store::sql::to_json(&case)?)
                    .bind(&company_text)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                }
                ::sqlx::query("DELETE FROM approved_contacts WHERE company = $1 AND email = $2")
                    .bind(&company_text)
                    .bind(email.as_str())
                    .execute(&mut *tx)
                    .await?;
                Self::insert_events(&mut tx, company, first, std::slice::from_ref(event), time)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn events(
                &self,
                company: ::uuid::Uuid,
                after: u64,
                limit: usize,
            ) -> Result<Vec<$crate::domain::model::PortalEvent>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::sql::EventRow> = ::sqlx::query_as(
                    "SELECT seq, actor, action, target, detail, time FROM events \
                     WHERE company = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(company.to_string())
                .bind($crate::store::sql::to_i64(after)?)
                .bind($crate::store::sql::limit(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map($crate::store::sql::event_from_row)
                    .collect()
            }
        }
    };
}

pub(super) use impl_sql_store;

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::{MEMBER_INSERT_BINDS, Run, rows_per_statement, runs};
    use crate::domain::model::{CompanyPermission, Email, TeamMember, TeamRole};
    use crate::store::MemberChange;

    fn member(n: usize) -> TeamMember {
        TeamMember {
            id: Uuid::new_v4(),
            company: Uuid::nil(),
            email: Email::parse(&format!("m{n}@example.com")).unwrap(),
            display_name: String::new(),
            team_role: TeamRole::Other,
            company_permission: CompanyPermission::Member,
            access: Vec::new(),
            phone: None,
            lifetime_username: None,
            development_permissions: false,
            created_by_sync: true,
            create_time: 0,
            update_time: 0,
            rev: 1,
        }
    }

    fn upsert(m: &TeamMember, expected_rev: Option<u64>) -> MemberChange {
        MemberChange::Upsert {
            member: m.clone(),
            expected_rev,
        }
    }

    fn delete(m: &TeamMember, expected_rev: u64) -> MemberChange {
        MemberChange::Delete {
            company: m.company,
            id: m.id,
            expected_rev,
        }
    }

    #[test]
    fn statements_stay_within_both_bind_limits() {
        use super::{EVENT_BINDS, MEMBER_DELETE_BINDS, MEMBER_UPDATE_BINDS, SHARED_BINDS};
        for binds in [
            MEMBER_INSERT_BINDS,
            MEMBER_UPDATE_BINDS,
            MEMBER_DELETE_BINDS,
            EVENT_BINDS,
        ] {
            let rows = rows_per_statement(binds);
            assert!(rows >= 1);
            // SQLite's limit is the lower one.
            assert!(rows * binds + SHARED_BINDS <= 32_766, "{binds}");
        }
    }

    #[test]
    fn runs_keep_the_order_and_cut_at_kinds_repeats_and_full_statements() {
        let ms: Vec<TeamMember> = (0..4).map(member).collect();
        let changes = [
            upsert(&ms[0], None),
            upsert(&ms[1], None),
            upsert(&ms[2], Some(1)),
            upsert(&ms[3], Some(1)),
            // The same member again: a new run of the same kind.
            upsert(&ms[2], Some(2)),
            delete(&ms[0], 1),
            delete(&ms[1], 1),
            upsert(&ms[0], None),
        ];
        assert_eq!(
            runs(&changes),
            [
                Run::Insert(vec![&ms[0], &ms[1]]),
                Run::Update(vec![(&ms[2], 1), (&ms[3], 1)]),
                Run::Update(vec![(&ms[2], 2)]),
                Run::Delete(vec![(ms[0].id, 1), (ms[1].id, 1)]),
                Run::Insert(vec![&ms[0]]),
            ]
        );

        let per = rows_per_statement(MEMBER_INSERT_BINDS);
        let many: Vec<TeamMember> = (0..=2 * per).map(member).collect();
        let inserts: Vec<MemberChange> = many.iter().map(|m| upsert(m, None)).collect();
        let lens: Vec<usize> = runs(&inserts)
            .iter()
            .map(|r| match r {
                Run::Insert(v) => v.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lens, [per, per, 1]);
        assert!(runs(&[]).is_empty());
    }
}
