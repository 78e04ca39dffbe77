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

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use uuid::Uuid;

use super::StoreError;
use crate::domain::model::{Company, Email, InfraKind, Infrastructure, NewEvent, PortalEvent};

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

            /// Inserts `events` of `company` from sequence `first` on.
            async fn insert_events(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                company: ::uuid::Uuid,
                first: u64,
                events: &[$crate::domain::model::NewEvent],
                time: $crate::domain::model::Micros,
            ) -> Result<(), $crate::store::StoreError> {
                let company = company.to_string();
                let mut seq = first;
                for event in events {
                    ::sqlx::query(
                        "INSERT INTO events (company, seq, actor, action, target, detail, time) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&company)
                    .bind($crate::store::sql::to_i64(seq)?)
                    .bind(&event.actor)
                    .bind(&event.action)
                    .bind(&event.target)
                    .bind(&event.detail)
                    .bind(time)
                    .execute(&mut *conn)
                    .await
                    .map_err($crate::store::sql::write_error)?;
                    seq += 1;
                }
                Ok(())
            }

            /// Inserts a member.
            async fn insert_member(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                member: &$crate::domain::model::TeamMember,
            ) -> Result<(), $crate::store::StoreError> {
                ::sqlx::query(
                    "INSERT INTO members (company, id, email, data, rev) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(member.company.to_string())
                .bind(member.id.to_string())
                .bind(member.email.as_str())
                .bind($crate::store::sql::to_json(member)?)
                .bind($crate::store::sql::to_i64(member.rev)?)
                .execute(&mut *conn)
                .await
                .map_err($crate::store::sql::write_error)?;
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
                Self::insert_member(&mut tx, first_admin).await?;
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
                use $crate::store::sql::{to_i64, to_json, write_error, wrong_company};
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
                for change in changes {
                    match change {
                        MemberChange::Upsert {
                            member,
                            expected_rev: None,
                        } => Self::insert_member(&mut tx, member).await?,
                        MemberChange::Upsert {
                            member,
                            expected_rev: Some(expected_rev),
                        } => {
                            let updated = ::sqlx::query(
                                "UPDATE members SET data = $1, email = $2, rev = $3 \
                                 WHERE company = $4 AND id = $5 AND rev = $6",
                            )
                            .bind(to_json(member)?)
                            .bind(member.email.as_str())
                            .bind(to_i64(member.rev)?)
                            .bind(&company_text)
                            .bind(member.id.to_string())
                            .bind(to_i64(*expected_rev)?)
                            .execute(&mut *tx)
                            .await
                            .map_err(write_error)?;
                            if updated.rows_affected() != 1 {
                                return Err(StoreError::Conflict);
                            }
                        }
                        MemberChange::Delete {
                            id, expected_rev, ..
                        } => {
                            let deleted = ::sqlx::query(
                                "DELETE FROM members WHERE company = $1 AND id = $2 AND rev = $3",
                            )
                            .bind(&company_text)
                            .bind(id.to_string())
                            .bind(to_i64(*expected_rev)?)
                            .execute(&mut *tx)
                            .await?;
                            if deleted.rows_affected() != 1 {
                                return Err(StoreError::Conflict);
                            }
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
