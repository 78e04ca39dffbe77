//! Reading the portal's own request fields into domain values: page tokens it hands out and
//! the resource names of the company a call is about. Each records its bad field in
//! [`Violations`], so a request reports all its bad fields at once; texts, update masks, page
//! sizes and cursors are read by the shared kit's [`Violations`] methods, and a request becomes
//! a typed command through [`Error::command`].

use serde::Serialize;
use uuid::Uuid;

use crate::domain::facts::CompanyFacts;
use crate::domain::names;
use crate::error::{Error, Violations};

/// Encodes a page cursor.
pub fn page_token<T: Serialize>(cursor: &T) -> Result<String, Error> {
    shared::page_token::try_encode(cursor).map_err(|e| Error::Internal(format!("page token: {e}")))
}

/// Checks `name` is exactly `companies/{company}` of `company`.
pub fn check_company_name(v: &mut Violations, field: &str, name: &str, company: Uuid) {
    if names::company(name) != Some(company) {
        v.add(field, "must be companies/{company}");
    }
}

/// Parses `name` as an infrastructure of `company` that exists in `facts`.
pub fn infrastructure_ref(
    facts: &CompanyFacts,
    company: Uuid,
    name: &str,
) -> Result<Uuid, &'static str> {
    if name.trim().is_empty() {
        return Err("is required");
    }
    let (c, i) = names::infrastructure(name)
        .ok_or("must be companies/{company}/infrastructures/{infrastructure}")?;
    if c != company || facts.infrastructure(i).is_none() {
        return Err("is not an infrastructure of this company");
    }
    Ok(i)
}

/// Parses `name` as a member of `company`.
pub fn member_ref(company: Uuid, name: &str) -> Result<Uuid, &'static str> {
    names::member(name)
        .filter(|(c, _)| *c == company)
        .map(|(_, id)| id)
        .ok_or("must be companies/{company}/members/{member}")
}

/// Parses `name` as a member of `company`, or fails naming `field`.
pub fn member_id(field: &str, company: Uuid, name: &str) -> Result<Uuid, Error> {
    member_ref(company, name).map_err(|e| Error::field(field, e))
}

/// Parses `name` as a support case of `company`, or fails naming `field`.
pub fn case_id(field: &str, company: Uuid, name: &str) -> Result<Uuid, Error> {
    names::support_case(name)
        .filter(|(c, _)| *c == company)
        .map(|(_, id)| id)
        .ok_or_else(|| Error::field(field, "must be companies/{company}/supportCases/{case}"))
}

/// Parses `name` as an infrastructure of `company` (existing or not), or fails naming `field`.
pub fn infrastructure_id(field: &str, company: Uuid, name: &str) -> Result<Uuid, Error> {
    names::infrastructure(name)
        .filter(|(c, _)| *c == company)
        .map(|(_, id)| id)
        .ok_or_else(|| {
            Error::field(
                field,
                "must be companies/{company}/infrastructures/{infrastructure}",
            )
        })
}
