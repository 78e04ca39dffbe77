//! The gRPC layer: one file per proto service. Each handler authenticates, admits the caller by
//! the RPC's table rule ([`Api::enter`]), parses the request into a typed command (every bad
//! field at once: [`command`]), states any request-dependent needs to get the proof
//! ([`Authorized`](crate::auth::Authorized)), calls the mutations or the core, and encodes the
//! answer.
//!
//! Imports `auth`, `core`, the mutations and `domain`; it cannot reach the store (the core keeps
//! it private) and writes only through the core, with the proof.

use std::sync::Arc;

use shared::proto::identity::v1 as pb;
use shared::violations::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::{self, Caller, Entry, Rule};
use crate::core::{Core, OrgHandle};
use crate::domain::model::{Micros, Principal, ScopeKey};
use crate::domain::names;

use crate::error::Error;

pub mod access;
pub mod apps;
pub mod audit;
pub mod convert;
pub mod groups;
pub mod organizations;
pub mod roles;
pub mod service_accounts;
pub mod stages;
pub mod throttle;
pub mod users;

pub use crate::error::ERROR_DOMAIN;
/// Response metadata key carrying the organization's sequence after a write.
pub const CONSISTENCY_TOKEN: &str = "x-consistency-token";
/// Default page size.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page size.
pub const MAX_PAGE: usize = 1000;

/// The implementation of every identity.v1 service.
#[derive(Debug, Clone)]
pub struct Api {
    /// The service core.
    pub core: Arc<Core>,
    /// SHA-256 hashes of the configured operator tokens.
    pub operator_hashes: Arc<Vec<String>>,
    /// How long a request carrying a consistency token may wait for this replica to apply it.
    pub consistency_wait: std::time::Duration,
    /// The per-address rate limit of Login and AcceptInvitation.
    pub address_limits: Arc<throttle::AddressLimits>,
}

/// What a handler gets once the caller is admitted to an organization.
#[derive(Debug)]
pub struct Admitted<T> {
    /// The admission (to state further needs or get the proof).
    pub entry: Entry,
    /// The organization.
    pub org: Uuid,
    /// Its handle.
    pub handle: Arc<OrgHandle>,
    /// The decoded request.
    pub req: T,
}

impl Api {
    /// For a create carrying a `request_id` already used (AIP-155): the id (by `parse`) and
    /// resource name of the `kind` the first request created, with this replica's state brought
    /// up to that commit (it may still be applying it, or another replica made it). `None` when
    /// the key is new; INVALID_ARGUMENT when it was used to create something else.
    pub async fn replayed<T>(
        &self,
        org: Uuid,
        handle: &OrgHandle,
        request_id: Option<&str>,
        kind: &str,
        parse: impl Fn(&str) -> Option<(Uuid, T)>,
    ) -> Result<Option<(T, String)>, Status> {
        let Some(rid) = request_id else {
            return Ok(None);
        };
        let found = self
            .core
            .request_target(org, rid)
            .await
            .map_err(to_status)?;
        let Some(target) = found else {
            return Ok(None);
        };
        let Some(id) = parse(&target).filter(|(o, _)| *o == org).map(|(_, id)| id) else {
            return Err(to_status(Error::field(
                "request_id",
                format!("was already used by a request that did not create a {kind}"),
            )));
        };
        self.core.refresh(handle, org).await.map_err(to_status)?;
        Ok(Some((id, target)))
    }

    /// Authenticates the request's bearer token (public RPCs skip it).
    pub async fn caller(
        &self,
        md: &tonic::metadata::MetadataMap,
        method: &str,
    ) -> Result<Caller, Status> {
        if auth::rule(method) == Some(Rule::Public) {
            return Ok(Caller::Anonymous);
        }
        let has_header = md.get("authorization").is_some();
        let bearer = shared::auth::bearer_token_from_metadata(md);
        if has_header && bearer.is_none() {
            return Err(to_status(Error::Unauthenticated(
                "the authorization header must be `Bearer <token>`".into(),
            )));
        }
        self.core
            .authenticate(&self.operator_hashes, bearer)
            .await
            .map_err(to_status)
    }

    /// Authenticates, parses the organization from `org_field` (a resource name of or under an
    /// organization), and admits the caller by the RPC's table rule.
    pub async fn enter<T>(
        &self,
        request: Request<T>,
        method: &str,
        field: &str,
        org_name: impl FnOnce(&T) -> &str,
    ) -> Result<Admitted<T>, Status> {
        let caller = self.caller(request.metadata(), method).await?;
        if caller == Caller::Anonymous && auth::rule(method) != Some(Rule::Public) {
            return Err(to_status(Error::Unauthenticated(
                "this call needs a bearer token".into(),
            )));
        }
        let token = consistency_token(request.metadata())?;
        let req = request.into_inner();
        let org = org_of(org_name(&req)).ok_or_else(|| {
            to_status(Error::field(
                field,
                "must be a resource name under organizations/{organization}",
            ))
        })?;
        let handle = self.core.org(org).await.ok();
        if let (Some(seq), Some(h)) = (token, &handle) {
            self.core
                .await_sequence(h, org, seq, self.consistency_wait)
                .await
                .map_err(to_status)?;
        }
        let entry = {
            let guard = handle.as_ref().map(|h| h.read());
            Entry::admit(
                method,
                &caller,
                Some(org),
                guard.as_deref(),
                self.core.now(),
            )
            .map_err(to_status)?
        };
        let handle = handle.ok_or_else(|| to_status(Error::NotFound(names::fmt::org(org))))?;
        Ok(Admitted {
            entry,
            org,
            handle,
            req,
        })
    }
}

/// The request's `x-consistency-token` (the sequence a write answered with, on any replica):
/// the answer then reflects at least that write (read-your-writes across replicas).
pub fn consistency_token(md: &tonic::metadata::MetadataMap) -> Result<Option<u64>, Status> {
    let Some(v) = md.get(CONSISTENCY_TOKEN) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            to_status(Error::field(
                CONSISTENCY_TOKEN,
                "must be the x-consistency-token of a response (a decimal sequence number)",
            ))
        })
}

/// The organization id at the start of any resource name.
pub fn org_of(name: &str) -> Option<Uuid> {
    let mut parts = name.split('/');
    match (parts.next(), parts.next()) {
        (Some("organizations"), Some(id)) => Uuid::parse_str(id).ok(),
        _ => None,
    }
}

/// Full method name helper: `identity.v1.<Service>/<Method>`.
#[macro_export]
macro_rules! method {
    ($s:literal) => {
        concat!("identity.v1.", $s)
    };
}

/// A response carrying the consistency token.
pub fn respond<T>(value: T, seq: u64) -> Response<T> {
    let mut r = Response::new(value);
    r.metadata_mut()
        .insert(CONSISTENCY_TOKEN, tonic::metadata::MetadataValue::from(seq));
    r
}

/// Maps a service error (or the [`Violations`] of a request) to a status with its `ErrorInfo`
/// reason (and `BadRequest`): the shared kit's one mapping.
pub fn to_status(e: impl Into<Error>) -> Status {
    e.into().into_status()
}

/// Parses a request into a typed command, once: `parse` records every bad field and returns the
/// command when every field parsed. Any violation is INVALID_ARGUMENT listing them all; a parser
/// returning nothing without saying why is INTERNAL ([`Error::command`]).
pub fn command<T>(parse: impl FnOnce(&mut Violations) -> Option<T>) -> Result<T, Status> {
    let mut v = Violations::new();
    let parsed = parse(&mut v);
    Error::command(v, parsed).map_err(to_status)
}

/// Microseconds to a protobuf timestamp.
pub fn ts(m: Micros) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: m.div_euclid(1_000_000),
        nanos: i32::try_from(m.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    })
}

/// A protobuf timestamp to microseconds.
pub fn micros(t: &prost_types::Timestamp) -> Micros {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos) / 1000)
}

/// Parses a principal name of organization `org`.
pub fn parse_principal(org: Uuid, name: &str) -> Option<Principal> {
    if let Some((o, u)) = names::user(name) {
        return (o == org).then_some(Principal::User(u));
    }
    names::service_account(name)
        .filter(|(o, _)| *o == org)
        .map(|(_, s)| Principal::ServiceAccount(s))
}

/// Parses a `Scope` message of organization `org`.
pub fn parse_scope(org: Uuid, scope: Option<&pb::Scope>) -> Result<ScopeKey, &'static str> {
    match scope.and_then(|s| s.kind.as_ref()) {
        Some(pb::scope::Kind::Organization(true)) => Ok(ScopeKey::Organization),
        Some(pb::scope::Kind::App(name)) => names::app(name)
            .filter(|(o, _)| *o == org)
            .map(|(_, a)| ScopeKey::App(a))
            .ok_or("app must be organizations/{organization}/apps/{app} of this organization"),
        _ => Err("must set organization: true or app"),
    }
}

/// An etag from a request (`None` when empty).
pub fn etag(e: &str) -> Option<&str> {
    (!e.is_empty()).then_some(e)
}
