//! Reading request fields into domain values: texts, page sizes and tokens, update masks and
//! resource names of the company a call is about. Each records its bad field in
//! [`Violations`], so a request reports all its bad fields at once.

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{DEFAULT_PAGE, MAX_PAGE};
use crate::domain::facts::CompanyFacts;
use crate::domain::names;
use crate::error::{Error, Violations};

/// The typed command parsed from a request, or every bad field of it: `command` is `None`
/// only when a field it is made of failed its check, which recorded why in `v`. A request is
/// converted once, so a handler never meets a half-checked field.
pub fn finish<T>(v: Violations, command: Option<T>) -> Result<T, Error> {
    match command {
        Some(command) if v.is_empty() => Ok(command),
        _ => Err(v.into()),
    }
}

/// A page size from a request (0: [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
pub fn page_size(v: &mut Violations, field: &str, requested: i32) -> usize {
    v.check(
        field,
        shared::page_token::clamp_page_size(requested, DEFAULT_PAGE, MAX_PAGE)
            .map_err(|_| "must not be negative"),
    )
    .unwrap_or(DEFAULT_PAGE)
}

/// A decoded page token (`None`: first page).
pub fn page_cursor<T: DeserializeOwned>(v: &mut Violations, field: &str, token: &str) -> Option<T> {
    v.check(
        field,
        shared::page_token::decode_opt(token).map_err(|_| "is not a page token of this list"),
    )
    .flatten()
}

/// Encodes a page cursor.
pub fn page_token<T: Serialize>(cursor: &T) -> Result<String, Error> {
    shared::page_token::try_encode(cursor).map_err(|e| Error::Internal(format!("page token: {e}")))
}

/// Checks the text is 1..=max characters (after trimming); returns the trimmed text.
pub fn required_text(v: &mut Violations, field: &str, text: &str, max: usize) -> String {
    let t = text.trim();
    if t.is_empty() {
        v.add(field, "is required");
    } else if t.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    }
    t.to_owned()
}

/// Checks optional text is at most `max` characters; returns the trimmed text.
pub fn optional_text(v: &mut Violations, field: &str, text: &str, max: usize) -> String {
    let t = text.trim();
    if t.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    }
    t.to_owned()
}

/// Checks `name` is exactly `companies/{company}` of `company`.
pub fn check_company_name(v: &mut Violations, field: &str, name: &str, company: Uuid) {
    if names::company(name) != Some(company) {
        v.add(field, "must be companies/{company}");
    }
}

/// The update-mask paths, checked against the allowed ones. An empty mask means "every
/// allowed field" (AIP-134).
pub fn mask_paths(
    v: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Vec<String> {
    let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return allowed.iter().map(|s| (*s).to_owned()).collect();
    }
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            v.add(
                "update_mask",
                format!("{p:?} cannot be updated; allowed: {}", allowed.join(", ")),
            );
        }
    }
    paths
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
