//! The entities of an organization, as stored and as carried by change events.
//!
//! Secrets (password hashes, invitation and API token hashes) are deliberately absent: they
//! live only in the store's credential tables, never in memory state or in events.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use shared::email::Email;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Id.
    pub id: Uuid,
    /// 1 to 100 characters.
    pub display_name: String,
    /// Creation time.
    pub create_time: Micros,
    /// Last change.
    pub update_time: Micros,
    /// Revision, the etag.
    pub rev: u64,
}

/// What a stage is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StagePurpose {
    /// The first stage.
    Development,
    /// A stage between the first and the last.
    NonProduction,
    /// The last stage.
    Production,
}

/// A stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Stable key (`development`, `qa`, `production`, ...).
    pub key: String,
    /// 1 to 50 characters.
    pub display_name: String,
    /// Position from 0.
    pub order: u32,
    /// Purpose.
    pub purpose: StagePurpose,
    /// Revision, the etag.
    pub rev: u64,
}

/// An app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Id.
    pub id: Uuid,
    /// Unique per organization, case-insensitive.
    pub display_name: String,
    /// Creation time.
    pub create_time: Micros,
}

/// A role an app defines for its end-users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUserRole {
    /// Id.
    pub id: Uuid,
    /// The app that defines it.
    pub app: Uuid,
    /// Unique per app, case-insensitive.
    pub display_name: String,
}

/// Lifecycle state of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// Invited, not accepted yet.
    Invited,
    /// Usable.
    Active,
    /// Deactivated.
    Inactive,
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Normalized, unique per organization among users that have one. `None` (shown as `""`):
    /// an end-user profile an external provider created (ODC's empty email); never a member.
    /// Stored without the field; records from before it was optional always have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// 0 to 100 characters.
    pub display_name: String,
    /// Lifecycle state.
    pub state: UserState,
    /// Whether the user ever became ACTIVE (accepted an invitation or was created directly).
    /// A user deactivated before registering returns to INVITED on activation.
    pub registered: bool,
    /// Creation time.
    pub create_time: Micros,
    /// Last change.
    pub update_time: Micros,
    /// Revision, the etag.
    pub rev: u64,
}

impl User {
    /// The email, or `""` for a user without one (how the API and the orderings show it).
    pub fn email_str(&self) -> &str {
        self.email.as_ref().map_or("", Email::as_str)
    }
}

/// An open invitation (its secret lives in the store only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Id.
    pub id: Uuid,
    /// The invited user.
    pub user: Uuid,
    /// When it was issued.
    pub create_time: Micros,
    /// When it stops working.
    pub expire_time: Micros,
}

/// One permission granted by a role, in every stage or in some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Catalog key.
    pub permission: String,
    /// `None`: every stage, including stages added later.
    pub stages: Option<BTreeSet<String>>,
}

/// An organization role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// `administrator`, `developer` or a UUID.
    pub id: String,
    /// Unique per organization, case-insensitive.
    pub display_name: String,
    /// Optional description.
    pub description: String,
    /// Built-in roles are read-only.
    pub built_in: bool,
    /// Every permission in every stage on every app (Administrator), whatever `grants` says.
    pub all_permissions: bool,
    /// The grants as configured.
    pub grants: Vec<Grant>,
    /// Creation time.
    pub create_time: Micros,
    /// Last change.
    pub update_time: Micros,
    /// Revision, the etag.
    pub rev: u64,
}

/// Who can hold organization roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum Principal {
    /// A user.
    User(Uuid),
    /// A service account.
    ServiceAccount(Uuid),
}

/// Where an assignment applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "app")]
pub enum ScopeKey {
    /// Every stage and every app.
    Organization,
    /// One app; only app-scopable permissions.
    App(Uuid),
}

/// An organization role held by a principal at a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Holder.
    pub principal: Principal,
    /// Scope.
    pub scope: ScopeKey,
    /// Role id.
    pub role: String,
    /// When assigned.
    pub create_time: Micros,
    /// When the grant is in effect (R35); `None`: always. Absent from documents stored before
    /// grant periods existed, which are permanent grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<GrantPeriod>,
    /// The committed phase of the period, changed only by committed events (see
    /// [`GrantPhase`]).
    #[serde(default, skip_serializing_if = "GrantPhase::is_active")]
    pub phase: GrantPhase,
}

/// The time window of a time-bound grant: from `start` (inclusive) to `end` (exclusive);
/// either bound may be open, and `start < end` when both are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantPeriod {
    /// When the grant starts; `None`: from its assignment.
    pub start: Option<Micros>,
    /// When the grant ends; `None`: never.
    pub end: Option<Micros>,
}

impl GrantPeriod {
    /// The phase the period is in at `now`, by the clock alone.
    pub fn phase_at(&self, now: Micros) -> GrantPhase {
        if self.start.is_some_and(|s| now < s) {
            GrantPhase::Scheduled
        } else if self.end.is_some_and(|e| now >= e) {
            GrantPhase::Expired
        } else {
            GrantPhase::Active
        }
    }
}

/// Where a grant is in its period, as committed: assigning sets it from the clock, and the
/// boundary events (`role_assignment.became_effective`, `role_assignment.became_ineffective`,
/// committed by the service when the clock passes a boundary) move it on. Every replica and
/// every follower of the feed sees the same phase because only events change it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantPhase {
    /// Before the start: not in effect.
    Scheduled,
    /// In effect (every grant without a period).
    #[default]
    Active,
    /// After the end: not in effect any more.
    Expired,
}

impl GrantPhase {
    /// Whether this is [`GrantPhase::Active`].
    pub fn is_active(&self) -> bool {
        *self == GrantPhase::Active
    }
}

impl Assignment {
    /// Whether the grant is in effect at `now`. The committed phase decides when a grant
    /// starts (the `became_effective` event is authoritative, so a check agrees with the feed
    /// and with every replica); the clock is compared with the end as well, so that no check
    /// grants access at or after the end even before the `became_ineffective` event is
    /// committed.
    pub fn effective_at(&self, now: Micros) -> bool {
        self.phase.is_active() && self.period.and_then(|p| p.end).is_none_or(|e| now < e)
    }

    /// The phase shown to readers at `now`: the committed one, except that an ACTIVE grant
    /// whose end has passed shows as EXPIRED (what checks already answer).
    pub fn phase_at(&self, now: Micros) -> GrantPhase {
        if self.effective_at(now) || !self.phase.is_active() {
            self.phase
        } else {
            GrantPhase::Expired
        }
    }

    /// When the next boundary event of this grant is due: the start of a SCHEDULED grant, the
    /// end of an ACTIVE one; `None` when no boundary is left.
    pub fn next_boundary(&self) -> Option<Micros> {
        let p = self.period?;
        match self.phase {
            GrantPhase::Scheduled => p.start,
            GrantPhase::Active => p.end,
            GrantPhase::Expired => None,
        }
    }

    /// Whether the grant is permanent and in effect: no period, or one without an end that
    /// has started.
    pub fn is_permanent(&self) -> bool {
        self.phase.is_active() && self.period.and_then(|p| p.end).is_none()
    }
}

/// A direct end-user role grant in a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUserGrant {
    /// The user.
    pub user: Uuid,
    /// The end-user role.
    pub end_user_role: Uuid,
    /// The role's app.
    pub app: Uuid,
    /// The stage key.
    pub stage: String,
}

/// A group of end-users in one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Id.
    pub id: Uuid,
    /// Unique per stage, case-insensitive.
    pub display_name: String,
    /// Optional.
    pub description: String,
    /// Stage key, never changes.
    pub stage: String,
    /// What makes people of external identity providers members (R48).
    #[serde(default)]
    pub claim_mappings: Vec<ClaimMapping>,
    /// Creation time.
    pub create_time: Micros,
    /// Last change.
    pub update_time: Micros,
    /// Revision, the etag.
    pub rev: u64,
}

/// A claim of an identity provider's ID tokens that makes people members of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimMapping {
    /// The identity provider.
    pub provider: Uuid,
    /// Claim name, 1 to 50 characters.
    pub claim: String,
    /// Value, 1 to 256 characters.
    pub value: String,
    /// Separator of a multi-valued string claim (empty: none), at most 3 characters.
    pub delimiter: String,
}

fn yes() -> bool {
    true
}

/// Membership of a user in a group: ASSIGNED (through the API), MAPPED (by a claim mapping),
/// or both; never neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The group.
    pub group: Uuid,
    /// The user.
    pub user: Uuid,
    /// Added through the API (memberships stored before the types existed were).
    #[serde(default = "yes")]
    pub assigned: bool,
    /// Added by a claim mapping.
    #[serde(default)]
    pub mapped: bool,
}

impl GroupMember {
    /// An ASSIGNED membership.
    pub fn assigned(group: Uuid, user: Uuid) -> Self {
        Self {
            group,
            user,
            assigned: true,
            mapped: false,
        }
    }
}

/// An end-user role held by a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRole {
    /// The group.
    pub group: Uuid,
    /// The end-user role.
    pub end_user_role: Uuid,
    /// The role's app.
    pub app: Uuid,
}

/// A non-human principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// Id.
    pub id: Uuid,
    /// Unique per organization, case-insensitive.
    pub display_name: String,
    /// Creation time.
    pub create_time: Micros,
}

/// When the email claim of an ID token is trusted for linking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTrust {
    /// Never.
    None,
    /// When `email_verified` is true.
    VerifiedClaim,
    /// Always.
    All,
}

/// The field that links a first external sign-in to an existing user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileLinking {
    /// The `email` claim.
    Email,
    /// The `preferred_username` claim (compared with the users' emails).
    Username,
    /// Never link.
    None,
}

/// Who signs in with an identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "stage")]
pub enum IdpAssignment {
    /// Members (the organization scope).
    Organization,
    /// End-users of the apps of one stage (its key).
    Stage(String),
}

/// An external OpenID Connect identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProvider {
    /// Id.
    pub id: Uuid,
    /// Unique per organization, case-insensitive.
    pub display_name: String,
    /// The issuer identifier (`iss`).
    pub issuer: String,
    /// The client id; accepted in `aud`.
    pub client_id: String,
    /// Further audiences accepted in `aud`.
    pub allowed_audiences: Vec<String>,
    /// When the email claim is trusted.
    pub email_trust: EmailTrust,
    /// The linking field.
    pub profile_linking: ProfileLinking,
    /// Create a user for a person nobody links to.
    pub auto_create_profiles: bool,
    /// Who signs in with it.
    pub assignment: IdpAssignment,
    /// Creation time.
    pub create_time: Micros,
    /// Last change.
    pub update_time: Micros,
    /// Revision, the etag.
    pub rev: u64,
}

/// A person as an identity provider knows them, linked to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderProfile {
    /// The identity provider.
    pub provider: Uuid,
    /// The token's `sub`.
    pub subject: String,
    /// The user it is linked to.
    pub user: Uuid,
    /// `preferred_username` at the last sign-in.
    pub username: String,
    /// `email` at the last sign-in.
    pub email: String,
    /// `email_verified` at the last sign-in.
    pub email_verified: bool,
    /// The first sign-in.
    pub first_login_time: Micros,
    /// The last sign-in.
    pub last_login_time: Micros,
}

/// Any stored entity of an organization; the unit of storage and of change events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entity {
    /// The organization itself.
    Organization(Organization),
    /// A stage.
    Stage(Stage),
    /// An app.
    App(App),
    /// An end-user role.
    EndUserRole(EndUserRole),
    /// A user.
    User(User),
    /// An open invitation.
    Invitation(Invitation),
    /// An organization role.
    Role(Role),
    /// A role assignment.
    Assignment(Assignment),
    /// A direct end-user grant.
    EndUserGrant(EndUserGrant),
    /// A group.
    Group(Group),
    /// A group membership.
    GroupMember(GroupMember),
    /// A group's end-user role.
    GroupRole(GroupRole),
    /// A service account.
    ServiceAccount(ServiceAccount),
    /// An external identity provider.
    IdentityProvider(IdentityProvider),
    /// A user's profile at an identity provider.
    ProviderProfile(ProviderProfile),
}

fn principal_key(p: &Principal) -> String {
    match p {
        Principal::User(u) => format!("user:{u}"),
        Principal::ServiceAccount(s) => format!("sa:{s}"),
    }
}

impl Entity {
    /// The entity kind, the first half of its storage key.
    pub fn kind(&self) -> &'static str {
        match self {
            Entity::Organization(_) => "organization",
            Entity::Stage(_) => "stage",
            Entity::App(_) => "app",
            Entity::EndUserRole(_) => "end_user_role",
            Entity::User(_) => "user",
            Entity::Invitation(_) => "invitation",
            Entity::Role(_) => "role",
            Entity::Assignment(_) => "assignment",
            Entity::EndUserGrant(_) => "end_user_grant",
            Entity::Group(_) => "group",
            Entity::GroupMember(_) => "group_member",
            Entity::GroupRole(_) => "group_role",
            Entity::ServiceAccount(_) => "service_account",
            Entity::IdentityProvider(_) => "identity_provider",
            Entity::ProviderProfile(_) => "provider_profile",
        }
    }

    /// The key, unique within (organization, kind).
    pub fn key(&self) -> String {
        match self {
            Entity::Organization(o) => o.id.to_string(),
            Entity::Stage(s) => s.key.clone(),
            Entity::App(a) => a.id.to_string(),
            Entity::EndUserRole(r) => r.id.to_string(),
            Entity::User(u) => u.id.to_string(),
            // One open invitation per user.
            Entity::Invitation(i) => i.user.to_string(),
            Entity::Role(r) => r.id.clone(),
            Entity::Assignment(a) => match a.scope {
                ScopeKey::Organization => format!("{}/org", principal_key(&a.principal)),
                ScopeKey::App(app) => format!("{}/app:{app}", principal_key(&a.principal)),
            },
            Entity::EndUserGrant(g) => format!("{}/{}/{}", g.user, g.end_user_role, g.stage),
            Entity::Group(g) => g.id.to_string(),
            Entity::GroupMember(m) => format!("{}/{}", m.group, m.user),
            Entity::GroupRole(r) => format!("{}/{}", r.group, r.end_user_role),
            Entity::ServiceAccount(s) => s.id.to_string(),
            Entity::IdentityProvider(p) => p.id.to_string(),
            Entity::ProviderProfile(p) => format!("{}/{}", p.provider, p.subject),
        }
    }
}

/// One change of one entity: created (`before` empty), changed, or deleted (`after` empty).
/// A committed change is one change event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What was done, e.g. `user.invited`.
    pub action: String,
    /// Resource name of what changed.
    pub target: String,
    /// Before the change.
    pub before: Option<Entity>,
    /// After the change.
    pub after: Option<Entity>,
    /// Users whose access may differ because of it.
    pub affected_users: Vec<Uuid>,
}

impl Change {
    /// The change that undoes this one.
    #[must_use]
    pub fn inverse(&self) -> Change {
        Change {
            action: self.action.clone(),
            target: self.target.clone(),
            before: self.after.clone(),
            after: self.before.clone(),
            affected_users: self.affected_users.clone(),
        }
    }
}
