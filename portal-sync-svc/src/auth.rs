//! Authentication and authorization of the portal API.
//!
//! * Callers send `authorization: Bearer <token>`: the **operator** token (platform level:
//!   companies, infrastructures, Community accounts, resync) or a **service** token (trusted
//!   internal services). Tokens are kept only as SHA-256 hashes and compared in constant time.
//! * A service acting for a person names them in `x-acting-for: <email>`; the seed 004 access
//!   level of that person in the company named by the request decides what the call may do.
//! * Every RPC has exactly one entry in [`RULES`] (a test walks the `portal.v1` descriptors).
//!   The table rule is checked before the request is read; request-dependent needs (the
//!   infrastructures touched, the member targeted) are stated by the handler through
//!   [`Entry::require`].
//! * The store can only be written through [`Writes`], which only [`Guarded::write`] hands
//!   out, against an [`Authorized`] that only this module makes: a handler that skipped the
//!   check does not compile.

use std::fmt;
use std::sync::Arc;

use rand::RngExt as _;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use uuid::Uuid;

use crate::domain::capabilities::{Capability, CompanyFacts, Level};
use crate::domain::model::{Company, Email, Infrastructure, PortalEvent, SupportCase, TeamMember};
use crate::store::{PortalStore, StoreError, SyncState};
use crate::sync::{StatusView, Syncer};

/// Prefix of generated operator tokens.
pub const OPERATOR_PREFIX: &str = "psync_op_";
/// Prefix recommended for service tokens (any non-empty token is accepted).
pub const SERVICE_PREFIX: &str = "psync_svc_";
/// Metadata key naming the person a service acts for.
pub const ACTING_FOR: &str = "x-acting-for";
/// Audit actor of operator calls.
pub const OPERATOR_ACTOR: &str = "operator";
/// Audit actor of service calls made for no one in particular.
pub const SERVICE_ACTOR: &str = "service";

/// A fresh random token with `prefix`.
pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The kinds of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The platform operator.
    Operator,
    /// A trusted internal service.
    Service,
}

/// The hashes of the accepted tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    operator: Vec<String>,
    service: Vec<String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("operator", &self.operator.len())
            .field("service", &self.service.len())
            .finish()
    }
}

impl Tokens {
    /// From SHA-256 hashes (see [`hash_token`]) of the operator and service tokens.
    pub fn new(operator_hashes: Vec<String>, service_hashes: Vec<String>) -> Self {
        Self {
            operator: operator_hashes,
            service: service_hashes,
        }
    }

    /// Which kind of token `token` is, comparing its hash with every known hash in constant
    /// time.
    pub fn identify(&self, token: &str) -> Option<TokenKind> {
        let hash = hash_token(token);
        let mut found = None;
        for h in &self.operator {
            if constant_time_eq(h.as_bytes(), hash.as_bytes()) {
                found = Some(TokenKind::Operator);
            }
        }
        for h in &self.service {
            if constant_time_eq(h.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(TokenKind::Service);
            }
        }
        found
    }
}

/// Who is calling, once authenticated for an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The platform operator.
    Operator,
    /// A service acting for no one (service-level RPCs).
    Service,
    /// A service acting for this person (`x-acting-for`).
    Person(Email),
}

/// The least a person must be in the company to enter an RPC at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Anyone named (no level needed: e.g. an unknown requester opening a case).
    Anyone,
    /// A team member or a support contact.
    AnyLevel,
    /// A team member.
    Member,
    /// A company admin or an infrastructure admin of some infrastructure.
    AnyAdmin,
    /// A company admin.
    CompanyAdmin,
    /// The capability on at least one infrastructure (or company-wide).
    Capability(Capability),
}

impl Gate {
    fn holds(self, facts: &CompanyFacts, who: &Email) -> bool {
        match self {
            Gate::Anyone => true,
            Gate::AnyLevel => !facts.levels(who).is_empty(),
            Gate::Member => facts.member(who).is_some(),
            Gate::AnyAdmin => facts
                .levels(who)
                .iter()
                .any(|l| matches!(l, Level::CompanyAdmin | Level::InfrastructureAdmin(_))),
            Gate::CompanyAdmin => facts.is_company_admin(who),
            Gate::Capability(c) => facts.check(who, c, None).allowed(),
        }
    }

    fn describe(self) -> String {
        match self {
            Gate::Anyone => "a named person".into(),
            Gate::AnyLevel => "a team member or support contact of the company".into(),
            Gate::Member => "a team member of the company".into(),
            Gate::AnyAdmin => "a company admin or an infrastructure admin".into(),
            Gate::CompanyAdmin => "a company admin".into(),
            Gate::Capability(c) => format!("the capability {c:?}"),
        }
    }
}

/// What an RPC requires before its request is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The operator token.
    Operator,
    /// A service token (no person).
    Service,
    /// The operator token or a service token (no person).
    OperatorOrService,
    /// The operator token, or a service token acting for a person who passes the gate.
    OperatorOrPerson(Gate),
    /// A service token acting for a person who passes the gate.
    Person(Gate),
    /// A service token acting for a person who passes the gate; the handler then states the
    /// request's exact needs (the text says what) through [`Entry::require`].
    Contextual(Gate, &'static str),
}

impl Rule {
    fn operator_may(self) -> bool {
        matches!(
            self,
            Rule::Operator | Rule::OperatorOrService | Rule::OperatorOrPerson(_)
        )
    }

    fn wants_person(self) -> bool {
        matches!(
            self,
            Rule::OperatorOrPerson(_) | Rule::Person(_) | Rule::Contextual(..)
        )
    }

    fn gate(self) -> Option<Gate> {
        match self {
            Rule::OperatorOrPerson(g) | Rule::Person(g) | Rule::Contextual(g, _) => Some(g),
            _ => None,
        }
    }
}

/// The RPC → requirement table: one entry per RPC of `portal.v1`.
pub static RULES: &[(&str, Rule)] = &[
    ("portal.v1.Companies/CreateCompany", Rule::Operator),
    (
        "portal.v1.Companies/GetCompany",
        Rule::OperatorOrPerson(Gate::Member),
    ),
    ("portal.v1.Companies/CreateInfrastructure", Rule::Operator),
    ("portal.v1.Companies/SetIdentityToken", Rule::Operator),
    (
        "portal.v1.Companies/ListInfrastructures",
        Rule::OperatorOrPerson(Gate::Member),
    ),
    (
        "portal.v1.TeamMembers/ListTeamMembers",
        Rule::Person(Gate::AnyAdmin),
    ),
    (
        "portal.v1.TeamMembers/GetTeamMember",
        Rule::Contextual(
            Gate::Member,
            "the member themselves, a company admin, or an infrastructure admin of one of the \
             member's infrastructures (company admins are visible to every infrastructure admin)",
        ),
    ),
    (
        "portal.v1.TeamMembers/AddTeamMember",
        Rule::Contextual(
            Gate::Capability(Capability::ManageUsers),
            "a company admin; or, for company permission MEMBER and at least one infrastructure \
             named, an infrastructure admin of every infrastructure named",
        ),
    ),
    (
        "portal.v1.TeamMembers/UpdateTeamMember",
        Rule::Contextual(
            Gate::Capability(Capability::ManageUsers),
            "a company admin; or, for a member who is not a company admin, an infrastructure \
             admin of every infrastructure whose access changes (and of one of the member's \
             infrastructures for display name and team role)",
        ),
    ),
    (
        "portal.v1.TeamMembers/RemoveTeamMember",
        Rule::Contextual(
            Gate::Capability(Capability::ManageUsers),
            "a company admin; or, for a member who is not a company admin, an infrastructure \
             admin of every infrastructure the member has",
        ),
    ),
    (
        "portal.v1.TeamMembers/AssignCompanyAdmin",
        Rule::Person(Gate::Capability(Capability::ManageCompanyAdmins)),
    ),
    (
        "portal.v1.TeamMembers/RemoveCompanyAdmin",
        Rule::Person(Gate::Capability(Capability::ManageCompanyAdmins)),
    ),
    (
        "portal.v1.TeamMembers/SetSecurityContact",
        Rule::Person(Gate::Capability(Capability::ManageSecurityContact)),
    ),
    (
        "portal.v1.TeamMembers/ClearSecurityContact",
        Rule::Person(Gate::Capability(Capability::ManageSecurityContact)),
    ),
    (
        "portal.v1.CommunityAccounts/RegisterCommunityAccount",
        Rule::OperatorOrService,
    ),
    (
        "portal.v1.CommunityAccounts/RemoveCommunityAccount",
        Rule::OperatorOrService,
    ),
    (
        "portal.v1.Support/CreateSupportCase",
        Rule::Contextual(
            Gate::Anyone,
            "a team member needs REGISTER_SUPPORT_CASES on the infrastructure; anyone else may \
             open a case, held for approval unless they are an approved contact",
        ),
    ),
    (
        "portal.v1.Support/ListSupportCases",
        Rule::Person(Gate::AnyLevel),
    ),
    (
        "portal.v1.Support/ApproveSupportCase",
        Rule::Contextual(
            Gate::Capability(Capability::ApproveUnauthorizedCases),
            "APPROVE_UNAUTHORIZED_CASES on the case's infrastructure",
        ),
    ),
    (
        "portal.v1.Support/ListSupportContacts",
        Rule::Person(Gate::AnyAdmin),
    ),
    (
        "portal.v1.Support/RemoveSupportContact",
        Rule::Person(Gate::Capability(Capability::RemoveContacts)),
    ),
    ("portal.v1.Capabilities/CheckCapability", Rule::Service),
    (
        "portal.v1.Capabilities/ListNotificationRecipients",
        Rule::Service,
    ),
    ("portal.v1.Sync/GetSyncStatus", Rule::OperatorOrService),
    ("portal.v1.Sync/Resync", Rule::Operator),
    (
        "portal.v1.Sync/ListPortalEvents",
        Rule::OperatorOrPerson(Gate::CompanyAdmin),
    ),
];

/// The rule of an RPC (`portal.v1.Service/Method`).
pub fn rule(method: &str) -> Option<Rule> {
    RULES.iter().find(|(m, _)| *m == method).map(|(_, r)| *r)
}

/// Why a caller was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or unknown credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    PermissionDenied(String),
    /// The `x-acting-for` metadata is missing or not an email (the text says which).
    #[error("x-acting-for {0}")]
    ActingFor(String),
    /// A programming error (an RPC without a rule, a contextual rule used without its needs).
    #[error("{0}")]
    Internal(String),
}

/// Authenticates the bearer token of a call to `method` and, for the rules that act for a
/// person, reads `x-acting-for`.
pub fn authenticate(tokens: &Tokens, md: &MetadataMap, method: &str) -> Result<Caller, AuthError> {
    let rule = rule(method).ok_or_else(|| AuthError::Internal(format!("no rule for {method}")))?;
    if md.get("authorization").is_none() {
        return Err(AuthError::Unauthenticated(
            "this call needs `authorization: Bearer <token>`".into(),
        ));
    }
    let token = shared::auth::bearer_token_from_metadata(md).ok_or_else(|| {
        AuthError::Unauthenticated("the authorization header must be `Bearer <token>`".into())
    })?;
    let kind = tokens
        .identify(token)
        .ok_or_else(|| AuthError::Unauthenticated("the bearer token is not valid".into()))?;
    match kind {
        TokenKind::Operator if rule.operator_may() => Ok(Caller::Operator),
        TokenKind::Operator => Err(AuthError::PermissionDenied(
            "the operator token cannot make this call: it is made by a service (for a person \
             named in x-acting-for)"
                .into(),
        )),
        TokenKind::Service if rule == Rule::Operator => Err(AuthError::PermissionDenied(
            "this call needs the operator token".into(),
        )),
        TokenKind::Service if rule.wants_person() => acting_for(md).map(Caller::Person),
        TokenKind::Service => Ok(Caller::Service),
    }
}

/// The person named in `x-acting-for`.
fn acting_for(md: &MetadataMap) -> Result<Email, AuthError> {
    let raw = md
        .get(ACTING_FOR)
        .ok_or_else(|| {
            AuthError::ActingFor("is required: the email of the person acted for".into())
        })?
        .to_str()
        .map_err(|_| AuthError::ActingFor("must be an email address".into()))?;
    Email::parse(raw).map_err(|e| AuthError::ActingFor(e.to_owned()))
}

/// A request-dependent need, stated by a handler of a contextual rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing beyond the table rule.
    Nothing,
    /// Being this person.
    Is(Email),
    /// Being a company admin.
    CompanyAdmin,
    /// Being an infrastructure admin of this infrastructure.
    InfrastructureAdmin(Uuid),
    /// Being an infrastructure admin of every one of these (false when there are none).
    InfrastructureAdminOfEvery(Vec<Uuid>),
    /// Holding a capability (on an infrastructure).
    Capability(Capability, Option<Uuid>),
    /// Every one.
    All(Vec<Need>),
    /// At least one.
    Any(Vec<Need>),
}

impl Need {
    fn holds(&self, facts: &CompanyFacts, who: &Email) -> bool {
        match self {
            Need::Nothing => true,
            Need::Is(e) => e == who,
            Need::CompanyAdmin => facts.is_company_admin(who),
            Need::InfrastructureAdmin(i) => facts.is_infrastructure_admin(who, *i),
            Need::InfrastructureAdminOfEvery(v) => {
                !v.is_empty() && v.iter().all(|i| facts.is_infrastructure_admin(who, *i))
            }
            Need::Capability(c, i) => facts.check(who, *c, *i).allowed(),
            Need::All(v) => v.iter().all(|n| n.holds(facts, who)),
            Need::Any(v) => v.iter().any(|n| n.holds(facts, who)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Need::Nothing => "nothing".into(),
            Need::Is(_) => "being that person".into(),
            Need::CompanyAdmin => "a company admin".into(),
            Need::InfrastructureAdmin(_) => "an infrastructure admin of the infrastructure".into(),
            Need::InfrastructureAdminOfEvery(_) => {
                "an infrastructure admin of every infrastructure concerned".into()
            }
            Need::Capability(c, Some(_)) => format!("{c:?} on the infrastructure"),
            Need::Capability(c, None) => format!("{c:?}"),
            Need::All(v) => v
                .iter()
                .map(Need::describe)
                .collect::<Vec<_>>()
                .join(" and "),
            Need::Any(v) => format!(
                "one of: {}",
                v.iter().map(Need::describe).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// A caller admitted by the table rule of an RPC, before the request's own needs.
#[derive(Debug, Clone)]
pub struct Entry {
    caller: Caller,
    rule: Rule,
    company: Option<Uuid>,
}

/// Proof that the caller passed every check of the RPC. Only this module makes one.
#[derive(Debug, Clone)]
pub struct Authorized {
    actor: String,
    person: Option<Email>,
    company: Option<Uuid>,
}

impl Authorized {
    /// Audit name of the caller: the person's email, `operator` or `service`.
    pub fn actor(&self) -> &str {
        &self.actor
    }
    /// The person acted for, if any.
    pub fn person(&self) -> Option<&Email> {
        self.person.as_ref()
    }
    /// The company the call is about, if any.
    pub fn company(&self) -> Option<Uuid> {
        self.company
    }
}

impl Entry {
    /// Applies the table rule of `method` to an authenticated caller. `company` is the company
    /// the request is about, and `facts` its records (needed for person rules; `None` when the
    /// company does not exist, which a person is refused like any company they have no level
    /// in).
    pub fn admit(
        method: &str,
        caller: Caller,
        company: Option<Uuid>,
        facts: Option<&CompanyFacts>,
    ) -> Result<Self, AuthError> {
        let rule =
            rule(method).ok_or_else(|| AuthError::Internal(format!("no rule for {method}")))?;
        if let (Caller::Person(who), Some(gate)) = (&caller, rule.gate()) {
            let Some(facts) = facts else {
                return Err(AuthError::PermissionDenied(
                    "the person acted for has no access to this company".into(),
                ));
            };
            if gate != Gate::Anyone && facts.levels(who).is_empty() {
                return Err(AuthError::PermissionDenied(
                    "the person acted for has no access to this company".into(),
                ));
            }
            if !gate.holds(facts, who) {
                return Err(AuthError::PermissionDenied(format!(
                    "this call needs {}",
                    gate.describe()
                )));
            }
        }
        Ok(Self {
            caller,
            rule,
            company,
        })
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The person acted for, if any.
    pub fn person(&self) -> Option<&Email> {
        match &self.caller {
            Caller::Person(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the caller is the operator.
    pub fn is_operator(&self) -> bool {
        self.caller == Caller::Operator
    }

    /// The proof, for rules that need nothing beyond the table. Refused (INTERNAL) for a
    /// contextual rule, whose needs must be stated.
    pub fn authorized(&self) -> Result<Authorized, AuthError> {
        if let Rule::Contextual(..) = self.rule {
            return Err(AuthError::Internal(
                "contextual rule used without its needs".into(),
            ));
        }
        Ok(self.proof())
    }

    /// Checks the request's own needs and gives the proof. The operator and a service acting
    /// for no one pass only [`Need::Nothing`].
    pub fn require(&self, facts: &CompanyFacts, need: &Need) -> Result<Authorized, AuthError> {
        let ok = match &self.caller {
            Caller::Person(who) => need.holds(facts, who),
            Caller::Operator | Caller::Service => *need == Need::Nothing,
        };
        if ok {
            Ok(self.proof())
        } else {
            Err(AuthError::PermissionDenied(format!(
                "this call needs {}",
                need.describe()
            )))
        }
    }

    /// Whether the caller would pass `need` (to filter what a list shows).
    pub fn would(&self, facts: &CompanyFacts, need: &Need) -> bool {
        match &self.caller {
            Caller::Person(who) => need.holds(facts, who),
            _ => false,
        }
    }

    fn proof(&self) -> Authorized {
        let (actor, person) = match &self.caller {
            Caller::Operator => (OPERATOR_ACTOR.to_owned(), None),
            Caller::Service => (SERVICE_ACTOR.to_owned(), None),
            Caller::Person(e) => (e.as_str().to_owned(), Some(e.clone())),
        };
        Authorized {
            actor,
            person,
            company: self.company,
        }
    }
}

/// The store and the syncer, split into reads (anyone) and writes (only with an
/// [`Authorized`]).
#[derive(Debug, Clone)]
pub struct Guarded {
    store: Arc<dyn PortalStore>,
    syncer: Arc<Syncer>,
}

impl Guarded {
    /// Wraps the store and the syncer.
    pub fn new(store: Arc<dyn PortalStore>, syncer: Arc<Syncer>) -> Self {
        Self { store, syncer }
    }

    /// Read access.
    pub fn read(&self) -> Reads<'_> {
        Reads {
            store: self.store.as_ref(),
            syncer: self.syncer.as_ref(),
        }
    }

    /// Write access, for a caller who passed the checks of the RPC.
    pub fn write(&self, proof: &Authorized) -> Writes<'_> {
        Writes {
            store: self.store.as_ref(),
            syncer: self.syncer.as_ref(),
            actor: proof.actor.clone(),
        }
    }
}

/// Read-only access to the store and the sync status.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    store: &'a dyn PortalStore,
    syncer: &'a Syncer,
}

impl Reads<'_> {
    /// A company.
    pub async fn company(&self, id: Uuid) -> Result<Option<Company>, StoreError> {
        self.store.company(id).await
    }
    /// The infrastructures of a company, oldest first.
    pub async fn infrastructures(&self, company: Uuid) -> Result<Vec<Infrastructure>, StoreError> {
        self.store.infrastructures(company).await
    }
    /// The team members of a company, by email.
    pub async fn members(&self, company: Uuid) -> Result<Vec<TeamMember>, StoreError> {
        self.store.members(company).await
    }
    /// One team member.
    pub async fn member(&self, company: Uuid, id: Uuid) -> Result<Option<TeamMember>, StoreError> {
        self.store.member(company, id).await
    }
    /// One team member by email.
    pub async fn member_by_email(
        &self,
        company: Uuid,
        email: &Email,
    ) -> Result<Option<TeamMember>, StoreError> {
        self.store.member_by_email(company, email).await
    }
    /// Which of `emails` have a Community account.
    pub async fn community_accounts(&self, emails: &[Email]) -> Result<Vec<Email>, StoreError> {
        self.store.community_accounts(emails).await
    }
    /// The support cases of a company, oldest first.
    pub async fn cases(&self, company: Uuid) -> Result<Vec<SupportCase>, StoreError> {
        self.store.cases(company).await
    }
    /// The approved contacts of a company.
    pub async fn approved_contacts(&self, company: Uuid) -> Result<Vec<Email>, StoreError> {
        self.store.approved_contacts(company).await
    }
    /// Audit events after `after`, at most `limit`.
    pub async fn events(
        &self,
        company: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<PortalEvent>, StoreError> {
        self.store.events(company, after, limit).await
    }
    /// The stored sync state of an infrastructure.
    pub async fn sync_state(&self, infrastructure: Uuid) -> Result<SyncState, StoreError> {
        self.store.sync_state(infrastructure).await
    }
    /// The live sync status of an infrastructure (None: no worker yet).
    pub fn sync_status(&self, infrastructure: Uuid) -> Option<StatusView> {
        self.syncer.status(infrastructure)
    }
    /// Everything the access rules need to know of a company.
    pub async fn facts(&self, company: Uuid) -> Result<CompanyFacts, StoreError> {
        Ok(CompanyFacts {
            members: self.store.members(company).await?,
            infrastructures: self.store.infrastructures(company).await?,
            cases: self.store.cases(company).await?,
            approved_contacts: self.store.approved_contacts(company).await?,
        })
    }
}

/// Write access, obtained with an [`Authorized`].
#[derive(Debug, Clone)]
pub struct Writes<'a> {
    store: &'a dyn PortalStore,
    syncer: &'a Syncer,
    actor: String,
}

impl<'a> Writes<'a> {
    /// The store.
    pub fn store(&self) -> &'a dyn PortalStore {
        self.store
    }
    /// The syncer.
    pub fn syncer(&self) -> &'a Syncer {
        self.syncer
    }
    /// Audit name of the authorized caller.
    pub fn actor(&self) -> &str {
        &self.actor
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;

    use super::*;
    use crate::domain::model::{Access, CompanyPermission, InfraPermission, Source, TeamRole};

    /// Every RPC of the portal API, read from the compiled descriptors.
    fn portal_methods() -> BTreeSet<String> {
        let fds =
            prost_types::FileDescriptorSet::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
        fds.file
            .iter()
            .filter(|f| f.package() == "portal.v1")
            .flat_map(|f| {
                f.service.iter().flat_map(move |s| {
                    s.method
                        .iter()
                        .map(move |m| format!("portal.v1.{}/{}", s.name(), m.name()))
                })
            })
            .collect()
    }

    #[test]
    fn every_rpc_has_exactly_one_authorization_rule() {
        let methods = portal_methods();
        assert!(methods.len() >= 25, "descriptors not found: {methods:?}");
        let mut seen = BTreeSet::new();
        for (m, _) in RULES {
            assert!(seen.insert(*m), "{m} has two rules");
            assert!(methods.contains(*m), "{m} is not an RPC of the API");
        }
        let missing: Vec<_> = methods
            .iter()
            .filter(|m| !seen.contains(m.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "RPCs without an authorization rule: {missing:?}"
        );
    }

    fn tokens() -> Tokens {
        Tokens::new(
            vec![hash_token("op")],
            vec![hash_token("svc1"), hash_token("svc2")],
        )
    }

    fn md(token: Option<&str>, acting: Option<&str>) -> MetadataMap {
        let mut md = MetadataMap::new();
        if let Some(t) = token {
            md.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        if let Some(a) = acting {
            md.insert(ACTING_FOR, a.parse().unwrap());
        }
        md
    }

    #[test]
    fn tokens_are_identified_by_hash() {
        let t = tokens();
        assert_eq!(t.identify("op"), Some(TokenKind::Operator));
        assert_eq!(t.identify("svc2"), Some(TokenKind::Service));
        assert_eq!(t.identify("nope"), None);
        assert!(!format!("{t:?}").contains(&hash_token("op")));
        let a = new_token(OPERATOR_PREFIX);
        assert!(a.starts_with(OPERATOR_PREFIX));
        assert_ne!(a, new_token(OPERATOR_PREFIX));
    }

    #[test]
    fn authentication_by_rule() {
        let t = tokens();
        let create = "portal.v1.Companies/CreateCompany";
        let get = "portal.v1.Companies/GetCompany";
        let list = "portal.v1.TeamMembers/ListTeamMembers";
        let check = "portal.v1.Capabilities/CheckCapability";
        let unauth = |r: Result<Caller, AuthError>| matches!(r, Err(AuthError::Unauthenticated(_)));
        let denied =
            |r: Result<Caller, AuthError>| matches!(r, Err(AuthError::PermissionDenied(_)));

        assert!(unauth(authenticate(&t, &md(None, None), create)));
        assert!(unauth(authenticate(&t, &md(Some("bad"), None), create)));
        let mut basic = MetadataMap::new();
        basic.insert("authorization", "Basic abc".parse().unwrap());
        assert!(unauth(authenticate(&t, &basic, create)));

        assert_eq!(
            authenticate(&t, &md(Some("op"), None), create),
            Ok(Caller::Operator)
        );
        assert!(denied(authenticate(
            &t,
            &md(Some("svc1"), Some("a@x.com")),
            create
        )));
        assert_eq!(
            authenticate(&t, &md(Some("op"), Some("a@x.com")), get),
            Ok(Caller::Operator)
        );
        assert_eq!(
            authenticate(&t, &md(Some("svc1"), Some(" A@X.com ")), get),
            Ok(Caller::Person(Email::parse("a@x.com").unwrap()))
        );
        assert!(matches!(
            authenticate(&t, &md(Some("svc1"), None), get),
            Err(AuthError::ActingFor(_))
        ));
        assert!(matches!(
            authenticate(&t, &md(Some("svc1"), Some("not-an-email")), get),
            Err(AuthError::ActingFor(_))
        ));
        assert!(denied(authenticate(
            &t,
            &md(Some("op"), Some("a@x.com")),
            list
        )));
        assert_eq!(
            authenticate(&t, &md(Some("svc2"), None), check),
            Ok(Caller::Service)
        );
        assert!(denied(authenticate(&t, &md(Some("op"), None), check)));
        assert!(matches!(
            authenticate(&t, &md(Some("op"), None), "portal.v1.Nope/Nope"),
            Err(AuthError::Internal(_))
        ));
    }

    fn facts() -> (CompanyFacts, Uuid) {
        let infra = Uuid::new_v4();
        let member = |e: &str, p: CompanyPermission, access: Vec<Access>| TeamMember {
            id: Uuid::new_v4(),
            company: Uuid::nil(),
            email: Email::parse(e).unwrap(),
            display_name: String::new(),
            team_role: TeamRole::Other,
            company_permission: p,
            access,
            phone: None,
            lifetime_username: None,
            development_permissions: false,
            created_by_sync: false,
            create_time: 0,
            update_time: 0,
            rev: 1,
        };
        let admin_of = vec![Access {
            infrastructure: infra,
            permission: InfraPermission::Admin,
            source: Source::Manual,
        }];
        (
            CompanyFacts {
                members: vec![
                    member("ca@x.com", CompanyPermission::Admin, vec![]),
                    member("ia@x.com", CompanyPermission::Member, admin_of),
                    member("m@x.com", CompanyPermission::Member, vec![]),
                ],
                infrastructures: vec![Infrastructure {
                    id: infra,
                    company: Uuid::nil(),
                    display_name: "cloud".into(),
                    kind: crate::domain::model::InfraKind::O11Cloud,
                    identity_org: None,
                    create_time: 0,
                }],
                ..CompanyFacts::default()
            },
            infra,
        )
    }

    fn person(e: &str) -> Caller {
        Caller::Person(Email::parse(e).unwrap())
    }

    #[test]
    fn admission_by_level() {
        let (f, infra) = facts();
        let c = Some(Uuid::nil());
        let events = "portal.v1.Sync/ListPortalEvents";
        assert!(Entry::admit(events, person("ca@x.com"), c, Some(&f)).is_ok());
        for who in ["ia@x.com", "m@x.com", "stranger@y.com"] {
            assert!(
                matches!(
                    Entry::admit(events, person(who), c, Some(&f)),
                    Err(AuthError::PermissionDenied(_))
                ),
                "{who}"
            );
        }
        // A company that does not exist is refused like any other company.
        assert!(Entry::admit(events, person("ca@x.com"), c, None).is_err());
        // Operator rules do not look at people.
        assert!(Entry::admit("portal.v1.Companies/GetCompany", Caller::Operator, c, None).is_ok());
        // Anyone may try to open a case.
        let open = "portal.v1.Support/CreateSupportCase";
        let e = Entry::admit(open, person("stranger@y.com"), c, Some(&f)).unwrap();
        assert!(
            e.authorized().is_err(),
            "contextual rules need stated needs"
        );
        assert!(e.require(&f, &Need::Nothing).is_ok());
        assert!(e.require(&f, &Need::CompanyAdmin).is_err());

        let add = "portal.v1.TeamMembers/AddTeamMember";
        let e = Entry::admit(add, person("ia@x.com"), c, Some(&f)).unwrap();
        assert!(
            e.require(&f, &Need::InfrastructureAdminOfEvery(vec![infra]))
                .is_ok()
        );
        assert!(
            e.require(&f, &Need::InfrastructureAdminOfEvery(vec![]))
                .is_err()
        );
        assert!(
            e.require(
                &f,
                &Need::Any(vec![
                    Need::CompanyAdmin,
                    Need::InfrastructureAdmin(Uuid::new_v4())
                ])
            )
            .is_err()
        );
        let proof = e.require(&f, &Need::InfrastructureAdmin(infra)).unwrap();
        assert_eq!(proof.actor(), "ia@x.com");
        assert!(Entry::admit(add, person("m@x.com"), c, Some(&f)).is_err());
    }
}
