//! Authentication and authorization.
//!
//! * Tokens are random (32 bytes), prefixed by kind (`odc_op_`, `odc_ses_`, `odc_sa_`), and
//!   stored only as SHA-256 hashes. Operator tokens come from configuration.
//! * Passwords are hashed with argon2id.
//! * Every RPC has exactly one entry in [`RULES`]; a test walks the service descriptors and fails
//!   when an RPC has none. Mutations need an [`Authorized`], which only [`Entry::require`] (and
//!   [`Entry::authorized`] for rules that need nothing more) can make, so a handler that skipped
//!   the check does not compile.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use async_trait::async_trait;
use rand::RngExt as _;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::Error;
use crate::domain::model::{Entity, Micros, Principal};
use crate::domain::names;
use crate::domain::permissions::catalog::{self, keys};
use crate::domain::permissions::engine;
use crate::domain::state::OrgState;
use crate::store::{
    Commit, CredentialStore, Credentials, EventFilter, EventLog, EventRecord, InvitationToken,
    LoadedOrg, SecretOp, Store, StoreError, TokenRecord, TokenStore,
};

/// Prefix of operator tokens.
pub const OPERATOR_PREFIX: &str = "odc_op_";
/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "odc_ses_";
/// Prefix of service-account tokens.
pub const SERVICE_ACCOUNT_PREFIX: &str = "odc_sa_";
/// Prefix of invitation tokens.
pub const INVITATION_PREFIX: &str = "odc_inv_";

/// A fresh random token with `prefix`: 256 random bits, base64url. Short enough that the
/// invitation line of a mail (`invitation_token: odc_inv_...`) stays under 76 characters and
/// reaches the reader as plain 7-bit text.
pub fn new_token(prefix: &str) -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt: [u8; 16] = rand::rng().random();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hash: {e}")))
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// The password policy (DOMAIN.md): at least 12 characters, one digit, one upper-case letter.
pub fn check_password_policy(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 12 {
        return Err("must be at least 12 characters");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err("must contain a digit");
    }
    if !password.chars().any(char::is_uppercase) {
        return Err("must contain an upper-case letter");
    }
    Ok(())
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (only for public RPCs).
    Anonymous,
    /// The platform operator.
    Operator,
    /// A user or service account of an organization.
    Principal {
        /// The organization.
        org: Uuid,
        /// The principal.
        principal: Principal,
        /// The session or service-account token used.
        token: Uuid,
    },
}

/// What an RPC requires before its request is even read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No token (the request carries its own credential).
    Public,
    /// An operator token.
    Operator,
    /// Any authenticated caller.
    Authenticated,
    /// An operator token, or any ACTIVE principal of the organization named.
    OperatorOrPrincipal,
    /// Any ACTIVE principal of the organization named.
    Principal,
    /// A permission that is not limited to stages, at organization scope.
    Permission(&'static str),
    /// Depends on the request (stage, app, target); the text says what. The handler states the
    /// exact needs through [`Entry::require`].
    Contextual(&'static str),
}

/// The RPC → requirement table: one entry per RPC of the identity API.
pub static RULES: &[(&str, Rule)] = &[
    (
        "identity.v1.Organizations/CreateOrganization",
        Rule::Operator,
    ),
    (
        "identity.v1.Organizations/GetOrganization",
        Rule::OperatorOrPrincipal,
    ),
    (
        "identity.v1.Organizations/ListOrganizations",
        Rule::Operator,
    ),
    (
        "identity.v1.Organizations/UpdateOrganization",
        Rule::Permission(keys::ORG_MANAGE),
    ),
    ("identity.v1.Stages/ListStages", Rule::Principal),
    (
        "identity.v1.Stages/CreateStage",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Stages/UpdateStage",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Stages/ReorderStages",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Stages/DeleteStage",
        Rule::Permission(keys::PORTFOLIO_MANAGE_STAGES),
    ),
    (
        "identity.v1.Apps/CreateApp",
        Rule::Permission(keys::ASSET_CREATE),
    ),
    ("identity.v1.Apps/GetApp", Rule::Principal),
    ("identity.v1.Apps/ListApps", Rule::Principal),
    (
        "identity.v1.Apps/DeleteApp",
        Rule::Contextual("asset.delete on the app in every stage"),
    ),
    (
        "identity.v1.Apps/CreateEndUserRole",
        Rule::Contextual("asset.change on the app in development"),
    ),
    ("identity.v1.Apps/ListEndUserRoles", Rule::Principal),
    (
        "identity.v1.Apps/DeleteEndUserRole",
        Rule::Contextual("asset.change on the app in development"),
    ),
    (
        "identity.v1.Users/InviteUser",
        Rule::Contextual("per access carried; users.manage when none"),
    ),
    (
        "identity.v1.Users/ResendInvitation",
        Rule::Contextual(
            "users.manage, users.manage_member_access or end_users.manage_access in any stage",
        ),
    ),
    ("identity.v1.Users/AcceptInvitation", Rule::Public),
    (
        "identity.v1.Users/CreateUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    (
        "identity.v1.Users/GetUser",
        Rule::Contextual(
            "self, users.manage, users.view_members for members, end_users.view for end-users",
        ),
    ),
    (
        "identity.v1.Users/ListUsers",
        Rule::Contextual("by facet: users.view_members, end_users.view, users.manage"),
    ),
    (
        "identity.v1.Users/UpdateUser",
        Rule::Contextual("users.manage or self"),
    ),
    (
        "identity.v1.Users/ActivateUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    (
        "identity.v1.Users/DeactivateUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    (
        "identity.v1.Users/DeleteUser",
        Rule::Permission(keys::USERS_MANAGE),
    ),
    ("identity.v1.Users/Login", Rule::Public),
    ("identity.v1.Users/Logout", Rule::Authenticated),
    ("identity.v1.Roles/ListPermissions", Rule::Authenticated),
    ("identity.v1.Roles/ListRoles", Rule::Principal),
    ("identity.v1.Roles/GetRole", Rule::Principal),
    (
        "identity.v1.Roles/CreateRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Roles/UpdateRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Roles/DuplicateRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Roles/DeleteRole",
        Rule::Permission(keys::ROLES_MANAGE),
    ),
    (
        "identity.v1.Access/AssignRole",
        Rule::Permission(keys::USERS_MANAGE_MEMBER_ACCESS),
    ),
    (
        "identity.v1.Access/RevokeRole",
        Rule::Permission(keys::USERS_MANAGE_MEMBER_ACCESS),
    ),
    (
        "identity.v1.Access/ListRoleAssignments",
        Rule::Contextual("users.view_members, or only own assignments"),
    ),
    (
        "identity.v1.Access/GrantEndUserRole",
        Rule::Contextual("end_users.manage_access in the stage on the app"),
    ),
    (
        "identity.v1.Access/RevokeEndUserRole",
        Rule::Contextual("end_users.manage_access in the stage on the app"),
    ),
    (
        "identity.v1.Access/CheckPermission",
        Rule::Contextual("self; users.view_members or a service account for others"),
    ),
    (
        "identity.v1.Access/ListEffectivePermissions",
        Rule::Contextual("self; users.view_members or a service account for others"),
    ),
    (
        "identity.v1.Access/ListPermissionHolders",
        Rule::Contextual("users.view_members or a service account"),
    ),
    (
        "identity.v1.Access/CheckEndUserRole",
        Rule::Contextual("self, or end_users.view in the stage on the app"),
    ),
    ("identity.v1.Access/Noop", Rule::Principal),
    (
        "identity.v1.Groups/CreateGroup",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/GetGroup",
        Rule::Contextual("end_users.view or end_users.manage_groups in the group's stage"),
    ),
    ("identity.v1.Groups/ListGroups", Rule::Principal),
    (
        "identity.v1.Groups/UpdateGroup",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/DeleteGroup",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/AddGroupMembers",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/RemoveGroupMembers",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/AddGroupRoles",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/RemoveGroupRoles",
        Rule::Contextual("end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.Groups/ListGroupMembers",
        Rule::Contextual("end_users.view or end_users.manage_groups in the group's stage"),
    ),
    (
        "identity.v1.ServiceAccounts/CreateServiceAccount",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/ListServiceAccounts",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/DeleteServiceAccount",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/CreateServiceAccountToken",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/ListServiceAccountTokens",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.ServiceAccounts/RevokeServiceAccountToken",
        Rule::Permission(keys::API_CLIENTS_MANAGE),
    ),
    (
        "identity.v1.Audit/ListChangeEvents",
        Rule::Permission(keys::ORG_VIEW_AUDIT_TRAIL),
    ),
    (
        "identity.v1.Audit/WatchChanges",
        Rule::Permission(keys::ORG_VIEW_AUDIT_TRAIL),
    ),
    (
        "identity.v1.Audit/GetSnapshot",
        Rule::Permission(keys::ORG_VIEW_AUDIT_TRAIL),
    ),
];

/// The rule of an RPC (`package.Service/Method`).
pub fn rule(method: &str) -> Option<Rule> {
    RULES.iter().find(|(m, _)| *m == method).map(|(_, r)| *r)
}

/// A need stated by a handler for a contextual rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing beyond the table rule.
    Nothing,
    /// A permission, in a stage and/or on an app when given.
    Perm(&'static str, Option<String>, Option<Uuid>),
    /// A permission in at least one stage (or app) of the organization.
    PermAnywhere(&'static str),
    /// The caller is this principal.
    Is(Principal),
    /// The caller is a service account.
    ServiceAccount,
    /// Every one.
    All(Vec<Need>),
    /// At least one.
    Any(Vec<Need>),
}

impl Need {
    fn holds(&self, st: &OrgState, who: Principal) -> bool {
        match self {
            Need::Nothing => true,
            Need::Perm(key, stage, app) => engine::has(st, who, key, stage.as_deref(), *app),
            Need::PermAnywhere(key) => engine::has_in_any_stage(st, who, key),
            Need::Is(p) => *p == who,
            Need::ServiceAccount => matches!(who, Principal::ServiceAccount(_)),
            Need::All(v) => v.iter().all(|n| n.holds(st, who)),
            Need::Any(v) => v.iter().any(|n| n.holds(st, who)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Need::Nothing => "nothing".into(),
            Need::Perm(k, s, a) => {
                let mut t = (*k).to_owned();
                if let Some(s) = s {
                    let _ = write!(t, " in stage {s}");
                }
                if let Some(a) = a {
                    let _ = write!(t, " on app {a}");
                }
                t
            }
            Need::PermAnywhere(k) => format!("{k} in some stage"),
            Need::Is(_) => "being that principal".into(),
            Need::ServiceAccount => "being a service account".into(),
            Need::All(v) => v
                .iter()
                .map(Need::describe)
                .collect::<Vec<_>>()
                .join(" and "),
            Need::Any(v) => {
                format!(
                    "one of: {}",
                    v.iter().map(Need::describe).collect::<Vec<_>>().join(", ")
                )
            }
        }
    }
}

/// A caller admitted by the table rule of an RPC, before the request's own needs are checked.
#[derive(Debug, Clone)]
pub struct Entry {
    caller: Caller,
    org: Option<Uuid>,
    rule: Rule,
    actor: String,
}

/// Proof that the caller passed every check of the RPC. Only this module makes one.
#[derive(Debug, Clone)]
pub struct Authorized {
    actor: String,
    principal: Option<Principal>,
    org: Option<Uuid>,
}

impl Authorized {
    /// Audit name of the caller: a principal's resource name, `operator` or `anonymous`.
    pub fn actor(&self) -> &str {
        &self.actor
    }
    /// The calling principal, if any.
    pub fn principal(&self) -> Option<Principal> {
        self.principal
    }
    /// The organization the call is about, if any.
    pub fn org(&self) -> Option<Uuid> {
        self.org
    }
    /// The system itself acting for a public RPC (invitation acceptance).
    pub(crate) fn system(org: Option<Uuid>, actor: String) -> Self {
        Self {
            actor,
            principal: None,
            org,
        }
    }
}

/// Audit name of a principal.
pub fn principal_name(org: Uuid, p: Principal) -> String {
    match p {
        Principal::User(u) => names::fmt::user(org, u),
        Principal::ServiceAccount(s) => names::fmt::service_account(org, s),
    }
}

impl Entry {
    /// Applies the table rule of `method` to `caller` for organization `org`.
    /// `state` is the organization's state (needed for permission rules).
    pub fn admit(
        method: &str,
        caller: &Caller,
        org: Option<Uuid>,
        state: Option<&OrgState>,
    ) -> Result<Self, Error> {
        let rule = rule(method)
            .ok_or_else(|| Error::Internal(format!("no authorization rule for {method}")))?;
        let actor = match caller {
            Caller::Anonymous => "anonymous".to_owned(),
            Caller::Operator => "operator".to_owned(),
            Caller::Principal { org, principal, .. } => principal_name(*org, *principal),
        };
        let entry = Self {
            caller: caller.clone(),
            org,
            rule,
            actor,
        };
        match (rule, caller) {
            (Rule::Public, _) => Ok(entry),
            (_, Caller::Anonymous) => Err(Error::Unauthenticated(
                "this call needs a bearer token".into(),
            )),
            (Rule::Authenticated, _)
            | (Rule::Operator | Rule::OperatorOrPrincipal, Caller::Operator) => Ok(entry),
            (Rule::Operator, Caller::Principal { .. }) => Err(Error::PermissionDenied(
                "this call is for the platform operator".into(),
            )),
            (_, Caller::Operator) => Err(Error::PermissionDenied(
                "the operator manages organizations, not their content".into(),
            )),
            (
                _,
                Caller::Principal {
                    org: own,
                    principal,
                    ..
                },
            ) => {
                if org != Some(*own) {
                    return Err(Error::PermissionDenied(
                        "the caller is not a principal of that organization".into(),
                    ));
                }
                if let Rule::Permission(key) = rule {
                    let st = state.ok_or_else(|| Error::Internal("state missing".into()))?;
                    if !engine::has(st, *principal, key, None, None) {
                        return Err(Error::PermissionDenied(format!("this call needs {key}")));
                    }
                }
                Ok(entry)
            }
        }
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The calling principal, if any.
    pub fn principal(&self) -> Option<Principal> {
        match self.caller {
            Caller::Principal { principal, .. } => Some(principal),
            _ => None,
        }
    }

    /// Rules that need nothing beyond the table: the proof at once. Refused (INTERNAL) for a
    /// contextual rule, whose needs must be stated.
    pub fn authorized(&self) -> Result<Authorized, Error> {
        if let Rule::Contextual(_) = self.rule {
            return Err(Error::Internal(
                "contextual rule used without its needs".into(),
            ));
        }
        Ok(self.proof())
    }

    /// Checks the request's own needs (contextual rules) and gives the proof.
    pub fn require(&self, state: &OrgState, need: &Need) -> Result<Authorized, Error> {
        match self.caller {
            Caller::Principal { principal, .. } => {
                if need.holds(state, principal) {
                    Ok(self.proof())
                } else {
                    Err(Error::PermissionDenied(format!(
                        "this call needs {}",
                        need.describe()
                    )))
                }
            }
            Caller::Operator | Caller::Anonymous => {
                if *need == Need::Nothing {
                    Ok(self.proof())
                } else {
                    Err(Error::PermissionDenied(format!(
                        "this call needs {}",
                        need.describe()
                    )))
                }
            }
        }
    }

    /// Whether the caller would pass `need` (for filtering lists).
    pub fn would(&self, state: &OrgState, need: &Need) -> bool {
        match self.caller {
            Caller::Principal { principal, .. } => need.holds(state, principal),
            _ => false,
        }
    }

    fn proof(&self) -> Authorized {
        Authorized {
            actor: self.actor.clone(),
            principal: self.principal(),
            org: self.org,
        }
    }
}

/// Resolves a bearer token to a caller. `operator_hashes` are the hashes of the configured
/// operator tokens. Expired, revoked or unknown tokens, and tokens of principals that are no
/// longer ACTIVE, are UNAUTHENTICATED.
pub async fn authenticate(
    core: &super::core::Core,
    operator_hashes: &[String],
    bearer: Option<&str>,
) -> Result<Caller, Error> {
    let Some(token) = bearer else {
        return Ok(Caller::Anonymous);
    };
    let hash = hash_token(token);
    if operator_hashes
        .iter()
        .any(|h| constant_time_eq(h.as_bytes(), hash.as_bytes()))
    {
        return Ok(Caller::Operator);
    }
    let bad = || Error::Unauthenticated("the bearer token is not valid".into());
    let record = core.store.find_token(&hash).await?.ok_or_else(bad)?;
    if record.revoke_time.is_some() || record.expire_time <= core.now() {
        return Err(bad());
    }
    let handle = core.org_cached(record.org).ok_or_else(bad)?;
    if !handle.read().is_active(record.principal) {
        return Err(bad());
    }
    Ok(Caller::Principal {
        org: record.org,
        principal: record.principal,
        token: record.id,
    })
}

/// How long a cached token record is trusted before it is read from the store again, by
/// default.
///
/// Revocations made through this replica (Logout, RevokeServiceAccountToken, and the
/// revocations committed with a deactivation or deletion) evict the record at once; revocations
/// made through *another* replica over the same database are evicted by this replica's follower
/// (`Store::revoked_since`, every follow interval). This is the safety net when the follower is
/// off or failing. A deactivated or deleted principal is refused at once anyway:
/// [`authenticate`] checks it against the in-memory state, which follows the change events.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// At most this many token records are cached; beyond it, stale ones are dropped first, then all.
const TOKEN_CACHE_CAPACITY: usize = 100_000;

/// The cached records and the eviction generation.
#[derive(Debug, Default)]
struct TokenMap {
    /// Record by token hash, with the time it was read from the store.
    records: HashMap<String, (TokenRecord, Instant)>,
    /// Bumped by every eviction, so that a lookup that read the store before an eviction
    /// cannot put the stale record back after it.
    generation: u64,
}

/// A [`Store`] that keeps bearer-token records in memory, so that authenticating a request
/// does not query the database (`find_token` on every call was the largest cost of a read RPC).
///
/// Every other method goes to the wrapped store. Whatever revokes tokens through this store
/// evicts them before it returns: `revoke_token`, and a `commit` or `commit_batch` carrying
/// [`SecretOp::RevokeToken`] or [`SecretOp::RevokeTokensOf`] (evicted before the commit, so no
/// lookup racing with it keeps the old record, and again after it). Records older than
/// [`TOKEN_CACHE_TTL`] are read again. Unknown tokens are not cached (forged tokens must not
/// fill memory).
#[derive(Debug)]
pub struct TokenCache {
    inner: Arc<dyn Store>,
    map: RwLock<TokenMap>,
    ttl: Duration,
}

impl TokenCache {
    /// Wraps `inner`, trusting records for [`TOKEN_CACHE_TTL`].
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self::with_ttl(inner, TOKEN_CACHE_TTL)
    }

    /// Wraps `inner`, trusting records for `ttl`.
    pub fn with_ttl(inner: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            inner,
            map: RwLock::new(TokenMap::default()),
            ttl,
        }
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, TokenMap> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, TokenMap> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops every cached record matching `doomed`.
    fn evict(&self, doomed: impl Fn(&TokenRecord) -> bool) {
        let mut map = self.write_map();
        map.generation += 1;
        map.records.retain(|_, (r, _)| !doomed(r));
    }

    /// Caches `record`, read from the store when the eviction generation was `generation`,
    /// unless an eviction happened since (the record may be what it revoked).
    fn remember(&self, hash: &str, generation: u64, record: &TokenRecord) {
        let mut map = self.write_map();
        if map.generation != generation {
            return;
        }
        if map.records.len() >= TOKEN_CACHE_CAPACITY {
            map.records.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if map.records.len() >= TOKEN_CACHE_CAPACITY {
                map.records.clear();
            }
        }
        map.records
            .insert(hash.to_owned(), (record.clone(), Instant::now()));
    }

    /// Evicts what the credential changes of a commit to `org` revoke.
    fn evict_revoked(&self, org: Uuid, secrets: &[SecretOp]) {
        for op in secrets {
            match op {
                SecretOp::RevokeToken { id, .. } => self.evict(|r| r.id == *id),
                SecretOp::RevokeTokensOf { principal, .. } => {
                    self.evict(|r| r.org == org && r.principal == *principal);
                }
                _ => {}
            }
        }
    }
}

#[async_trait]
impl EventLog for TokenCache {
    async fn organization_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        self.inner.organization_ids().await
    }
    async fn load_organization(&self, org: Uuid) -> Result<Option<LoadedOrg>, StoreError> {
        self.inner.load_organization(org).await
    }
    async fn load_organization_into(
        &self,
        org: Uuid,
        sink: &mut (dyn FnMut(Entity) + Send),
    ) -> Result<Option<u64>, StoreError> {
        self.inner.load_organization_into(org, sink).await
    }
    async fn commit_batch(&self, commits: &[Commit<'_>]) -> Result<u64, StoreError> {
        for c in commits {
            self.evict_revoked(c.org, c.secrets);
        }
        let result = self.inner.commit_batch(commits).await;
        for c in commits {
            self.evict_revoked(c.org, c.secrets);
        }
        result
    }
    async fn events_after(
        &self,
        org: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.events_after(org, after, limit).await
    }
    async fn list_events(
        &self,
        org: Uuid,
        filter: &EventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.list_events(org, filter, after, limit).await
    }
    async fn find_request(
        &self,
        org: Uuid,
        request_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.find_request(org, request_id).await
    }
    async fn sequences(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        self.inner.sequences().await
    }
}

#[async_trait]
impl TokenStore for TokenCache {
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let generation = {
            let map = self.read_map();
            if let Some((record, at)) = map.records.get(hash)
                && at.elapsed() < self.ttl
            {
                return Ok(Some(record.clone()));
            }
            map.generation
        };
        let found = self.inner.find_token(hash).await?;
        if let Some(record) = &found {
            self.remember(hash, generation, record);
        }
        Ok(found)
    }
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.inner.insert_token(token).await
    }
    async fn revoke_token(&self, id: Uuid, at: Micros) -> Result<bool, StoreError> {
        self.evict(|r| r.id == id);
        let result = self.inner.revoke_token(id, at).await;
        self.evict(|r| r.id == id);
        result
    }
    async fn list_tokens(
        &self,
        org: Uuid,
        principal: Principal,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list_tokens(org, principal).await
    }
    /// Forwards, and forgets every returned token: the follower's way of learning about
    /// revocations made through other replicas.
    async fn revoked_since(&self, since: Micros) -> Result<Vec<Uuid>, StoreError> {
        let ids = self.inner.revoked_since(since).await?;
        if !ids.is_empty() {
            let ids: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
            // The follower asks every pass with a look-back: most ids were evicted by an
            // earlier pass. Evict (and bump the generation, which stops concurrent lookups
            // from caching) only when a cached record is actually revoked.
            let cached = self
                .read_map()
                .records
                .values()
                .any(|(r, _)| ids.contains(&r.id));
            if cached {
                self.evict(|r| ids.contains(&r.id));
            }
        }
        Ok(ids)
    }
}

#[async_trait]
impl CredentialStore for TokenCache {
    async fn find_invitation_token(
        &self,
        hash: &str,
    ) -> Result<Option<InvitationToken>, StoreError> {
        self.inner.find_invitation_token(hash).await
    }
    async fn credentials(&self, org: Uuid, user: Uuid) -> Result<Credentials, StoreError> {
        self.inner.credentials(org, user).await
    }
    async fn set_login_failures(
        &self,
        org: Uuid,
        user: Uuid,
        failed_logins: u32,
        locked_until: Option<Micros>,
    ) -> Result<(), StoreError> {
        self.inner
            .set_login_failures(org, user, failed_logins, locked_until)
            .await
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hours to microseconds.
pub const fn hours(h: i64) -> Micros {
    h * 3_600_000_000
}

/// The permission catalog entry of a well-known key (always present).
pub fn def(key: &str) -> Result<&'static catalog::PermissionDef, Error> {
    catalog::get(key).ok_or_else(|| Error::Internal(format!("unknown permission {key}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;

    use super::*;

    /// Every RPC of the identity API, read from the compiled descriptors.
    fn identity_methods() -> BTreeSet<String> {
        let fds =
            prost_types::FileDescriptorSet::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
        fds.file
            .iter()
            .filter(|f| f.package() == "identity.v1")
            .flat_map(|f| {
                f.service.iter().flat_map(move |s| {
                    s.method
                        .iter()
                        .map(move |m| format!("identity.v1.{}/{}", s.name(), m.name()))
                })
            })
            .collect()
    }

    #[test]
    fn every_rpc_has_exactly_one_authorization_rule() {
        let methods = identity_methods();
        assert!(methods.len() > 50, "descriptors not found: {methods:?}");
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

    #[test]
    fn permission_rules_name_catalog_permissions_that_are_not_stage_limited() {
        for (m, r) in RULES {
            if let Rule::Permission(k) = r {
                let def = catalog::get(k).unwrap_or_else(|| panic!("{m}: unknown {k}"));
                assert!(
                    !def.stage_scopable,
                    "{m}: {k} is stage-scopable and needs a stage"
                );
            }
        }
    }

    #[test]
    fn password_policy_needs_length_digit_and_upper_case() {
        assert!(check_password_policy("Short1").is_err());
        assert!(check_password_policy("longenoughbutnodigit").is_err());
        assert!(check_password_policy("longenough1nouppercase").is_err());
        assert!(check_password_policy("LongEnough1234").is_ok());
    }

    /// A SQLite store holding one organization.
    async fn store_with_org(dir: &std::path::Path, org: Uuid) -> Arc<dyn Store> {
        use crate::domain::model::{Change, Entity, Organization};
        let store = crate::store::sqlite::SqliteStore::open(&dir.join("identity.db"))
            .await
            .unwrap();
        let changes = [Change {
            action: "organization.created".into(),
            target: names::fmt::org(org),
            before: None,
            after: Some(Entity::Organization(Organization {
                id: org,
                display_name: "o".into(),
                create_time: 0,
                update_time: 0,
                rev: 1,
            })),
            affected_users: Vec::new(),
        }];
        store
            .commit(Commit {
                org,
                expected_seq: 0,
                create_org: true,
                actor: "operator",
                request_id: None,
                time: 0,
                changes: &changes,
                secrets: &[],
            })
            .await
            .unwrap();
        Arc::new(store)
    }

    fn token(org: Uuid, principal: Principal) -> TokenRecord {
        TokenRecord {
            id: Uuid::now_v7(),
            hash: hash_token(&new_token(SESSION_PREFIX)),
            kind: crate::store::TokenKind::Session,
            org,
            principal,
            create_time: 0,
            expire_time: i64::MAX,
            revoke_time: None,
        }
    }

    fn secrets_commit(org: Uuid, seq: u64, secrets: &[SecretOp]) -> Commit<'_> {
        Commit {
            org,
            expected_seq: seq,
            create_org: false,
            actor: "operator",
            request_id: None,
            time: 1,
            changes: &[],
            secrets,
        }
    }

    #[tokio::test]
    async fn the_token_cache_serves_lookups_and_forgets_what_this_replica_revokes() {
        let dir = tempfile::tempdir().unwrap();
        let org = Uuid::new_v4();
        let inner = store_with_org(dir.path(), org).await;
        let cache = TokenCache::new(Arc::clone(&inner));
        let alice = Principal::User(Uuid::new_v4());
        let (a1, a2, b) = (
            token(org, alice),
            token(org, alice),
            token(org, Principal::ServiceAccount(Uuid::new_v4())),
        );
        for t in [&a1, &a2, &b] {
            cache.insert_token(t).await.unwrap();
            assert_eq!(cache.find_token(&t.hash).await.unwrap().as_ref(), Some(t));
        }
        assert_eq!(cache.find_token("unknown").await.unwrap(), None);
        assert_eq!(
            cache.read_map().records.len(),
            3,
            "unknown hashes are not cached"
        );

        // Served from memory: a change made behind the cache's back (another replica) is not
        // seen until the record is read again.
        assert!(inner.revoke_token(b.id, 5).await.unwrap());
        let cached = cache.find_token(&b.hash).await.unwrap().unwrap();
        assert_eq!(cached.revoke_time, None);

        // Logout and RevokeServiceAccountToken through this replica: gone at once.
        cache.evict(|_| true);
        assert!(cache.revoke_token(a1.id, 7).await.is_ok());
        let r = cache.find_token(&a1.hash).await.unwrap().unwrap();
        assert_eq!(r.revoke_time, Some(7));

        // Deactivation / deletion commit RevokeTokensOf: every token of the principal goes.
        assert_eq!(
            cache
                .find_token(&a2.hash)
                .await
                .unwrap()
                .unwrap()
                .revoke_time,
            None
        );
        let ops = [SecretOp::RevokeTokensOf {
            principal: alice,
            at: 9,
        }];
        cache.commit(secrets_commit(org, 1, &ops)).await.unwrap();
        let r = cache.find_token(&a2.hash).await.unwrap().unwrap();
        assert_eq!(r.revoke_time, Some(9));
    }

    #[tokio::test]
    async fn a_lookup_that_raced_with_a_revocation_does_not_cache_the_old_record() {
        let dir = tempfile::tempdir().unwrap();
        let org = Uuid::new_v4();
        let inner = store_with_org(dir.path(), org).await;
        let cache = TokenCache::new(Arc::clone(&inner));
        let t = token(org, Principal::User(Uuid::new_v4()));
        inner.insert_token(&t).await.unwrap();
        // A lookup missed and read the store (not revoked yet)...
        let generation = cache.read_map().generation;
        let read = inner.find_token(&t.hash).await.unwrap().unwrap();
        // ...then a revocation went through this replica...
        assert!(cache.revoke_token(t.id, 3).await.unwrap());
        // ...before the lookup stored what it had read: it must not be kept.
        cache.remember(&t.hash, generation, &read);
        assert!(cache.read_map().records.is_empty());
        assert_eq!(
            cache
                .find_token(&t.hash)
                .await
                .unwrap()
                .unwrap()
                .revoke_time,
            Some(3)
        );
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = new_token(SESSION_PREFIX);
        let b = new_token(SESSION_PREFIX);
        assert!(a.starts_with(SESSION_PREFIX));
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
        let h = hash_password("LongEnough1234").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("LongEnough1234", &h));
        assert!(!verify_password("LongEnough1235", &h));
    }
}
