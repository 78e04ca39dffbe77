//! Support cases and the approved support contacts of each company ([`CaseStore`]). A case is
//! stored as the JSON of `SupportCase`.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Type};
use uuid::Uuid;

use super::rows::{from_json, parse_email, to_json};
use super::{Backend, Column, SqlStore, write_error};
use crate::domain::model::{CaseState, Email, Micros, NewEvent, SupportCase};
use crate::store::{CaseStore, StoreError};

#[async_trait]
impl<DB: Backend> CaseStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn create_case(
        &self,
        case: &SupportCase,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let first = Self::reserve_events(&mut tx, case.company, 1).await?;
        sqlx::query(
            "INSERT INTO support_cases (id, company, data, create_time) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(case.id.to_string())
        .bind(case.company.to_string())
        .bind(to_json(case)?)
        .bind(case.create_time)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
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

    async fn cases(&self, company: Uuid) -> Result<Vec<SupportCase>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT data FROM support_cases WHERE company = $1 ORDER BY create_time, id",
        )
        .bind(company.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|(data,)| from_json(data)).collect()
    }

    async fn approve_case(
        &self,
        company: Uuid,
        case: Uuid,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError> {
        let company_text = company.to_string();
        let case_text = case.to_string();
        let mut tx = self.pool.begin().await?;
        let first = Self::reserve_events(&mut tx, company, 1).await?;
        let row: Option<(String,)> =
            sqlx::query_as("SELECT data FROM support_cases WHERE company = $1 AND id = $2")
                .bind(&company_text)
                .bind(&case_text)
                .fetch_optional(&mut *tx)
                .await?;
        let (data,) = row.ok_or(StoreError::NotFound)?;
        let mut stored: SupportCase = from_json(&data)?;
        stored.state = CaseState::Open;
        sqlx::query("UPDATE support_cases SET data = $1 WHERE company = $2 AND id = $3")
            .bind(to_json(&stored)?)
            .bind(&company_text)
            .bind(&case_text)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO approved_contacts (company, email) VALUES ($1, $2) \
             ON CONFLICT (company, email) DO NOTHING",
        )
        .bind(&company_text)
        .bind(stored.creator.as_str())
        .execute(&mut *tx)
        .await?;
        Self::insert_events(&mut tx, company, first, std::slice::from_ref(event), time).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn approved_contacts(&self, company: Uuid) -> Result<Vec<Email>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT email FROM approved_contacts WHERE company = $1 ORDER BY email")
                .bind(company.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|(email,)| parse_email(email)).collect()
    }

    async fn remove_contact(
        &self,
        company: Uuid,
        email: &Email,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError> {
        let company_text = company.to_string();
        let mut tx = self.pool.begin().await?;
        let first = Self::reserve_events(&mut tx, company, 1).await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, data FROM support_cases WHERE company = $1")
                .bind(&company_text)
                .fetch_all(&mut *tx)
                .await?;
        for (id, data) in rows {
            let mut case: SupportCase = from_json(&data)?;
            let created = &case.creator == email && !case.creator_removed;
            if !case.cc.contains(email) && !created {
                continue;
            }
            case.cc.retain(|cc| cc != email);
            if created {
                case.creator_removed = true;
            }
            sqlx::query("UPDATE support_cases SET data = $1 WHERE company = $2 AND id = $3")
                .bind(to_json(&case)?)
                .bind(&company_text)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM approved_contacts WHERE company = $1 AND email = $2")
            .bind(&company_text)
            .bind(email.as_str())
            .execute(&mut *tx)
            .await?;
        Self::insert_events(&mut tx, company, first, std::slice::from_ref(event), time).await?;
        tx.commit().await?;
        Ok(())
    }
}
