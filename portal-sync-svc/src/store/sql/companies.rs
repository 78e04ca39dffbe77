//! Companies and their infrastructures ([`CompanyStore`], [`InfrastructureStore`]): creating
//! a company with its first admin and its event sequence, infrastructures and the identity
//! tokens of ODC ones.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Type};
use uuid::Uuid;

use super::rows::{
    CompanyRow, INFRA_COLUMNS, InfraRow, company_from_row, infra_from_row, kind_to_text,
    wrong_company,
};
use super::{Backend, Column, RowsAffected, SqlStore, write_error};
use crate::domain::model::{Company, InfraKind, Infrastructure, Micros, NewEvent, TeamMember};
use crate::store::{CompanyStore, InfrastructureStore, StoreError};

#[async_trait]
impl<DB: Backend> CompanyStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn create_company(
        &self,
        company: &Company,
        first_admin: &TeamMember,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError> {
        if first_admin.company != company.id {
            return Err(wrong_company(company.id, first_admin.company));
        }
        let id = company.id.to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO companies (id, display_name, create_time) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(&company.display_name)
            .bind(company.create_time)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        sqlx::query("INSERT INTO company_seq (company, seq) VALUES ($1, 0)")
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

    async fn company(&self, id: Uuid) -> Result<Option<Company>, StoreError> {
        let row: Option<CompanyRow> =
            sqlx::query_as("SELECT id, display_name, create_time FROM companies WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(company_from_row).transpose()
    }
}

#[async_trait]
impl<DB: Backend> InfrastructureStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    String: Column<DB>,
    Option<i64>: Column<DB>,
    Option<String>: Column<DB>,
{
    async fn create_infrastructure(
        &self,
        infra: &Infrastructure,
        identity_token: Option<&str>,
        event: &NewEvent,
        time: Micros,
    ) -> Result<(), StoreError> {
        let sealed = identity_token
            .map(|token| self.keyring.seal(token, &infra.id.to_string()))
            .transpose()?;
        let mut tx = self.pool.begin().await?;
        let first = Self::reserve_events(&mut tx, infra.company, 1).await?;
        sqlx::query(
            "INSERT INTO infrastructures (id, company, display_name, kind, identity_org, \
             identity_token, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(infra.id.to_string())
        .bind(infra.company.to_string())
        .bind(&infra.display_name)
        .bind(kind_to_text(infra.kind))
        .bind(infra.identity_org.map(|org| org.to_string()))
        .bind(sealed)
        .bind(infra.create_time)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        let events = std::slice::from_ref(event);
        Self::insert_events(&mut tx, infra.company, first, events, time).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn infrastructures(&self, company: Uuid) -> Result<Vec<Infrastructure>, StoreError> {
        let mut query = QueryBuilder::<DB>::new("SELECT ");
        query.push(INFRA_COLUMNS);
        query.push(" FROM infrastructures WHERE company = ");
        query.push_bind(company.to_string());
        query.push(" ORDER BY create_time, id");
        let rows: Vec<InfraRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| infra_from_row(row).map(|(infra, _)| infra))
            .collect()
    }

    async fn odc_infrastructures(&self) -> Result<Vec<(Infrastructure, String)>, StoreError> {
        // An ODC infrastructure stored without a token cannot be synced: not listed.
        let mut query = QueryBuilder::<DB>::new("SELECT ");
        query.push(INFRA_COLUMNS);
        query.push(" FROM infrastructures WHERE kind = ");
        query.push_bind(kind_to_text(InfraKind::Odc));
        query.push(" AND identity_token IS NOT NULL ORDER BY create_time, id");
        let rows: Vec<InfraRow> = query.build_query_as().fetch_all(&self.pool).await?;
        let mut odc = Vec::with_capacity(rows.len());
        for row in rows {
            if let (infra, Some(sealed)) = infra_from_row(row)? {
                let token = self.keyring.open(&sealed, &infra.id.to_string())?;
                odc.push((infra, token));
            }
        }
        Ok(odc)
    }

    async fn set_identity_token(
        &self,
        company: Uuid,
        infra: Uuid,
        token: &str,
        event: &NewEvent,
        time: Micros,
    ) -> Result<bool, StoreError> {
        let sealed = self.keyring.seal(token, &infra.to_string())?;
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE infrastructures SET identity_token = $1 \
             WHERE id = $2 AND company = $3 AND kind = $4",
        )
        .bind(sealed)
        .bind(infra.to_string())
        .bind(company.to_string())
        .bind(kind_to_text(InfraKind::Odc))
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

    async fn identity_token(&self, infra: Uuid) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT identity_token FROM infrastructures WHERE id = $1")
                .bind(infra.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.and_then(|(sealed,)| sealed)
            .map(|sealed| self.keyring.open(&sealed, &infra.to_string()))
            .transpose()
            .map_err(StoreError::from)
    }

    async fn reseal_identity_tokens(&self) -> Result<usize, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, identity_token FROM infrastructures WHERE identity_token IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut resealed = 0;
        for (id, stored) in rows {
            if !self.keyring.needs_reseal(&stored) {
                continue;
            }
            let token = self.keyring.open(&stored, &id)?;
            let sealed = self.keyring.seal(&token, &id)?;
            // Only if nobody replaced the token meanwhile (SetIdentityToken seals it anyway).
            let updated = sqlx::query(
                "UPDATE infrastructures SET identity_token = $1 \
                 WHERE id = $2 AND identity_token = $3",
            )
            .bind(sealed)
            .bind(&id)
            .bind(&stored)
            .execute(&self.pool)
            .await?;
            resealed += usize::try_from(updated.rows_affected()).unwrap_or(0);
        }
        Ok(resealed)
    }
}
