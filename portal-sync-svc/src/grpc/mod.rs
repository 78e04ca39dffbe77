//! The gRPC layer: one file per `portal.v1` service. Each handler authenticates the bearer
//! token (and `x-acting-for`), admits the caller by the RPC's table rule ([`crate::auth`]),
//! decodes the request into domain types (every bad field at once), states any
//! request-dependent needs, computes the new state with the domain rules, writes it through the
//! store in one transaction (with revision checks: a concurrent change is ABORTED), and encodes
//! the answer.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Request;
use uuid::Uuid;

use crate::auth::{self, Caller, Entry, Guarded, Tokens};
use crate::domain::capabilities::CompanyFacts;
use crate::domain::model::{Company, Micros};
use crate::store::PortalStore;
use crate::sync::Syncer;

/// Full method name: `portal.v1.<Service>/<Method>`.
macro_rules! method {
    ($s:literal) => {
        concat!("portal.v1.", $s)
    };
}

pub mod capabilities;
pub mod community_accounts;
pub mod companies;
pub mod convert;
pub mod error;
pub mod names;
pub mod support;
pub mod sync;
pub mod team_members;

#[cfg(test)]
mod tests;

pub use error::{ERROR_DOMAIN, Error, Violations, to_status};

/// Default page size.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page size.
pub const MAX_PAGE: usize = 1000;

/// The implementation of every `portal.v1` service.
#[derive(Debug, Clone)]
pub struct Api {
    data: Guarded,
    tokens: Arc<Tokens>,
}

/// What a handler gets once the caller is admitted to a company.
#[derive(Debug)]
pub struct Admitted<T> {
    /// The admission (to state further needs or get the proof).
    pub entry: Entry,
    /// The company.
    pub company: Company,
    /// The company's records, loaded for calls made for a person.
    pub facts: Option<CompanyFacts>,
    /// The decoded request.
    pub req: T,
}

impl Api {
    /// The API over a store, the running syncer and the accepted tokens.
    pub fn new(store: Arc<dyn PortalStore>, syncer: Arc<Syncer>, tokens: Tokens) -> Self {
        Self {
            data: Guarded::new(store, syncer),
            tokens: Arc::new(tokens),
        }
    }

    /// Authenticates a call that is about no company (its rule must not involve a person).
    pub fn enter_global<T>(&self, request: Request<T>, method: &str) -> Result<(Entry, T), Error> {
        let caller = auth::authenticate(&self.tokens, request.metadata(), method)?;
        let entry = Entry::admit(method, caller, None, None)?;
        Ok((entry, request.into_inner()))
    }

    /// Authenticates, reads the company from the request's `field` (a resource name of or
    /// under a company), and admits the caller by the RPC's table rule. A person is refused
    /// (PERMISSION_DENIED) on a company where they have no level — also one that does not
    /// exist; the operator and services get NOT_FOUND for a missing company.
    pub async fn enter<T>(
        &self,
        request: Request<T>,
        method: &str,
        field: &str,
        name: impl FnOnce(&T) -> &str,
    ) -> Result<Admitted<T>, Error> {
        let caller = auth::authenticate(&self.tokens, request.metadata(), method)?;
        let req = request.into_inner();
        let raw = name(&req);
        let id = names::company_of(raw).ok_or_else(|| {
            Error::field(
                field,
                if raw.is_empty() {
                    "is required"
                } else {
                    "must be a resource name under companies/{company}"
                },
            )
        })?;
        let read = self.data.read();
        let company = read.company(id).await?;
        let facts = match (&caller, &company) {
            (Caller::Person(_), Some(_)) => Some(read.facts(id).await?),
            _ => None,
        };
        let entry = Entry::admit(method, caller, Some(id), facts.as_ref())?;
        let company = company.ok_or_else(|| Error::NotFound(names::fmt::company(id)))?;
        Ok(Admitted {
            entry,
            company,
            facts,
            req,
        })
    }
}

/// Now, in microseconds since the Unix epoch.
pub fn now() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Microseconds to a protobuf timestamp.
pub fn ts(m: Micros) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: m.div_euclid(1_000_000),
        nanos: i32::try_from(m.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    })
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
