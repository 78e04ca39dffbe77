//! The gRPC layer: one file per `portal.v1` service. Each handler only authenticates the bearer
//! token (and `x-acting-for`) and admits the caller by the RPC's table rule ([`crate::auth`]),
//! parses the request into a typed command (every bad field at once, [`parse`]), calls the
//! portal rule ([`crate::rules`]) and encodes the answer ([`crate::convert`]). It cannot write
//! the store: only the rules can, with the proof of authorization.

use std::sync::Arc;

use tonic::Request;

use crate::auth::authenticate::{Caller, authenticate};
use crate::auth::proof::Entry;
use crate::auth::tokens::Tokens;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::Company;
use crate::domain::names;
use crate::error::Error;
use crate::rules::Rules;

/// Full method name: `portal.v1.<Service>/<Method>`.
macro_rules! method {
    ($s:literal) => {
        concat!("portal.v1.", $s)
    };
}

pub mod capabilities;
pub mod community_accounts;
pub mod companies;
pub mod parse;
pub mod support;
pub mod sync;
pub mod team_members;

#[cfg(test)]
mod tests;

/// Default page size.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page size.
pub const MAX_PAGE: usize = 1000;

/// The implementation of every `portal.v1` service.
#[derive(Debug, Clone)]
pub struct Api {
    rules: Rules,
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

impl<T> Admitted<T> {
    /// The company's records (loaded for every call made for a person).
    pub fn facts(&self) -> Result<&CompanyFacts, Error> {
        self.facts
            .as_ref()
            .ok_or_else(|| Error::Internal("company records not loaded for a person call".into()))
    }
}

impl Api {
    /// The API over the portal's rules and the accepted tokens.
    pub fn new(rules: Rules, tokens: Tokens) -> Self {
        Self {
            rules,
            tokens: Arc::new(tokens),
        }
    }

    /// Authenticates a call that is about no company (its rule must not involve a person).
    pub fn enter_global<T>(&self, request: Request<T>, method: &str) -> Result<(Entry, T), Error> {
        let caller = authenticate(&self.tokens, request.metadata(), method)?;
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
        let caller = authenticate(&self.tokens, request.metadata(), method)?;
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
        let read = self.rules.read();
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
