//! The Customer Portal's access levels and what each may do (seed 004, DOMAIN.md "Access
//! levels and capabilities"), as pure functions over a company's records.
//!
//! The levels a person can hold in a company:
//!
//! * **company admin** — a team member with company permission ADMIN;
//! * **infrastructure admin of I** — a team member with permission INFRASTRUCTURE_ADMIN on I;
//! * **member** — anyone with a team-member record (company admins and infrastructure admins
//!   are members too, so they keep every member capability);
//! * **support contact** — someone on a support case (creator or CC) or on the approved contact
//!   list who is not a team member: they see only the cases they are on.
//!
//! The **security contact** (a member with team role Security and a phone number) is not a
//! level but a role on top of one: it alone receives security communications.
//!
//! The three lists of the seed, verbatim in meaning:
//!
//! | capability | company admin | infrastructure admin of I | member | support contact |
//! |---|---|---|---|---|
//! | access the portal | yes | yes | yes (read-only) | no |
//! | Home, Subscription, Analytics, My Training | yes | yes | yes | no |
//! | manage users (of I) | yes | yes | no | no |
//! | assign or remove company admins | yes | no | no | no |
//! | register support cases (on I) | if associated with I | yes | if it has access to I | no |
//! | view own cases | yes | yes | yes | yes (the cases they are on) |
//! | view all cases (of I) | no | yes | no | no |
//! | approve unauthorized cases (of I) | yes (R76) | yes | no | no |
//! | remove contacts | yes | no | no | no |
//! | register environments / release slots (on I) | yes | yes | no | no |
//! | download licenses (on I, O11 self-managed only) | yes | yes | no | no |
//! | disruptive-event notifications | yes | yes | no | no |
//! | maintenance notifications | no | yes | no | no |
//! | license-expiration emails | yes | yes | no | no |
//! | manage the security contact | yes | yes | no | no |
//! | security communications | the security contact only |
//!
//! "Associated with I" means having an access entry (any level) on I.

use std::collections::BTreeSet;

use uuid::Uuid;

mod check;
#[cfg(test)]
mod tests;

/// Every capability of the three access levels (and the security contact's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Access the Customer Portal.
    AccessPortal,
    /// Read Home.
    ViewHome,
    /// Read Subscription.
    ViewSubscription,
    /// Read Analytics.
    ViewAnalytics,
    /// Read My Training.
    ViewMyTraining,
    /// Manage users and permissions of an infrastructure.
    ManageUsers,
    /// Assign or remove company admins.
    ManageCompanyAdmins,
    /// Register support cases on an infrastructure.
    RegisterSupportCases,
    /// View the cases one is on.
    ViewOwnCases,
    /// View every case of an infrastructure.
    ViewAllCases,
    /// Approve cases of people not on the contact list.
    ApproveUnauthorizedCases,
    /// Remove support contacts.
    RemoveContacts,
    /// Register environments.
    RegisterEnvironments,
    /// Release environment slots.
    ReleaseEnvironmentSlots,
    /// Download licenses (O11 self-managed only).
    DownloadLicenses,
    /// Receive notifications about disruptive events.
    ReceiveDisruptiveEventNotifications,
    /// Receive notifications about maintenance.
    ReceiveMaintenanceNotifications,
    /// Receive license expiration emails.
    ReceiveLicenseExpirationEmails,
    /// Set or change the security contact.
    ManageSecurityContact,
    /// Receive security communications.
    ReceiveSecurityCommunications,
}

impl Capability {
    /// Every capability, in the order of the contract.
    pub const ALL: [Capability; 20] = [
        Capability::AccessPortal,
        Capability::ViewHome,
        Capability::ViewSubscription,
        Capability::ViewAnalytics,
        Capability::ViewMyTraining,
        Capability::ManageUsers,
        Capability::ManageCompanyAdmins,
        Capability::RegisterSupportCases,
        Capability::ViewOwnCases,
        Capability::ViewAllCases,
        Capability::ApproveUnauthorizedCases,
        Capability::RemoveContacts,
        Capability::RegisterEnvironments,
        Capability::ReleaseEnvironmentSlots,
        Capability::DownloadLicenses,
        Capability::ReceiveDisruptiveEventNotifications,
        Capability::ReceiveMaintenanceNotifications,
        Capability::ReceiveLicenseExpirationEmails,
        Capability::ManageSecurityContact,
        Capability::ReceiveSecurityCommunications,
    ];

    /// Whether the capability is about one infrastructure (asked without one, it means "on at
    /// least one infrastructure").
    pub fn is_infrastructure_scoped(self) -> bool {
        matches!(
            self,
            Capability::ManageUsers
                | Capability::RegisterSupportCases
                | Capability::ViewAllCases
                | Capability::ApproveUnauthorizedCases
                | Capability::RegisterEnvironments
                | Capability::ReleaseEnvironmentSlots
                | Capability::DownloadLicenses
        )
    }
}

/// Why a capability is held: the level (or role) that grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// Company admin.
    CompanyAdmin,
    /// Infrastructure admin of this infrastructure.
    InfrastructureAdmin(Uuid),
    /// Team member.
    Member,
    /// Support contact (on a case, not a team member).
    SupportContact,
    /// The security contact (team role Security with a phone number).
    SecurityContact,
}

/// The answer to "may this person do X": the grants, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The levels that grant it (empty when refused), without duplicates, sorted.
    pub granted_by: Vec<Grant>,
    /// When refused: why.
    pub denial_reason: Option<&'static str>,
}

impl Decision {
    /// Whether the capability is held.
    pub fn allowed(&self) -> bool {
        !self.granted_by.is_empty()
    }

    fn from_grants(grants: BTreeSet<Grant>, denial: &'static str) -> Self {
        if grants.is_empty() {
            Self {
                granted_by: Vec::new(),
                denial_reason: Some(denial),
            }
        } else {
            Self {
                granted_by: grants.into_iter().collect(),
                denial_reason: None,
            }
        }
    }

    fn denied(reason: &'static str) -> Self {
        Self {
            granted_by: Vec::new(),
            denial_reason: Some(reason),
        }
    }
}

/// Kinds of notifications and who receives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// Disruptive events: company admins and infrastructure admins.
    DisruptiveEvents,
    /// Maintenance: infrastructure admins.
    Maintenance,
    /// License expiration: company admins and infrastructure admins.
    LicenseExpiration,
    /// Security communications: the security contact(s).
    SecurityCommunications,
}

impl NotificationKind {
    /// The capability of receiving this kind.
    pub fn capability(self) -> Capability {
        match self {
            NotificationKind::DisruptiveEvents => Capability::ReceiveDisruptiveEventNotifications,
            NotificationKind::Maintenance => Capability::ReceiveMaintenanceNotifications,
            NotificationKind::LicenseExpiration => Capability::ReceiveLicenseExpirationEmails,
            NotificationKind::SecurityCommunications => Capability::ReceiveSecurityCommunications,
        }
    }
}
