//! The Customer Portal's records: companies, infrastructures, team members with their
//! per-infrastructure access, Community accounts, support cases, and audit events.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// A normalized email (trimmed, lower-case), the identity of a person across the portal: the
/// shared kit's type, the same as identity's.
pub use shared::email::Email;

/// A customer company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    /// Id.
    pub id: Uuid,
    /// 1 to 100 characters.
    pub display_name: String,
    /// Creation time.
    pub create_time: Micros,
}

/// Kinds of infrastructure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfraKind {
    /// OutSystems 11 Cloud.
    O11Cloud,
    /// OutSystems 11 hybrid.
    O11Hybrid,
    /// OutSystems 11 self-managed.
    O11SelfManaged,
    /// OutSystems 11 Sentry.
    O11Sentry,
    /// OutSystems Developer Cloud.
    Odc,
}

/// An infrastructure of a company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Infrastructure {
    /// Id.
    pub id: Uuid,
    /// Owner.
    pub company: Uuid,
    /// 1 to 100 characters.
    pub display_name: String,
    /// Kind.
    pub kind: InfraKind,
    /// ODC only: the identity organization.
    pub identity_org: Option<Uuid>,
    /// Creation time.
    pub create_time: Micros,
}

/// Team role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    /// The security contact's role.
    Security,
    /// Developer.
    Developer,
    /// Manager.
    Manager,
    /// Anything else (also the default of members created by the sync).
    Other,
}

/// Company-wide permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompanyPermission {
    /// A regular member.
    Member,
    /// A company admin.
    Admin,
}

/// Permission on one infrastructure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfraPermission {
    /// Member of the infrastructure.
    Member,
    /// Infrastructure admin.
    Admin,
}

/// Where a permission comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Source {
    /// Set through the portal (O11).
    Manual,
    /// Derived by the sync from this identity user's ODC organization roles.
    Odc {
        /// The identity user.
        identity_user: Uuid,
    },
}

/// A permission on one infrastructure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The infrastructure.
    pub infrastructure: Uuid,
    /// The level.
    pub permission: InfraPermission,
    /// Where it comes from.
    pub source: Source,
}

/// A team member of a company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMember {
    /// Id.
    pub id: Uuid,
    /// Company.
    pub company: Uuid,
    /// Unique per company.
    pub email: Email,
    /// Display name.
    pub display_name: String,
    /// Team role.
    pub team_role: TeamRole,
    /// Company permission.
    pub company_permission: CompanyPermission,
    /// At most one entry per infrastructure, sorted by infrastructure.
    pub access: Vec<Access>,
    /// Security contact phone.
    pub phone: Option<String>,
    /// LifeTime username, when invited to LifeTime.
    pub lifetime_username: Option<String>,
    /// Development permissions granted when added.
    pub development_permissions: bool,
    /// Created by the sync (not through the portal): removed with its last ODC access.
    pub created_by_sync: bool,
    /// Creation time.
    pub create_time: Micros,
    /// Last change.
    pub update_time: Micros,
    /// Revision, the etag.
    pub rev: u64,
}

/// State of a support case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Handled.
    Open,
    /// Held for approval.
    AwaitingApproval,
}

/// A support case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportCase {
    /// Id.
    pub id: Uuid,
    /// Company.
    pub company: Uuid,
    /// Infrastructure.
    pub infrastructure: Uuid,
    /// Subject.
    pub subject: String,
    /// Creator.
    pub creator: Email,
    /// CC.
    pub cc: Vec<Email>,
    /// State.
    pub state: CaseState,
    /// Creation time.
    pub create_time: Micros,
    /// The creator was removed as a support contact (RemoveSupportContact): the case stays in
    /// the company's records, but its creator no longer sees it.
    #[serde(default)]
    pub creator_removed: bool,
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which resource.
    pub target: String,
    /// Detail.
    pub detail: String,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalEvent {
    /// Per-company sequence from 1.
    pub seq: u64,
    /// The event.
    pub event: NewEvent,
    /// When.
    pub time: Micros,
}
