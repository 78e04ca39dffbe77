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

use super::model::{
    CaseState, CompanyPermission, Email, InfraKind, InfraPermission, Infrastructure, SupportCase,
    TeamMember, TeamRole,
};

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

/// An access level held in a company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Company admin.
    CompanyAdmin,
    /// Infrastructure admin of this infrastructure.
    InfrastructureAdmin(Uuid),
    /// Team member (every company or infrastructure admin is one too).
    Member,
    /// On a support case or the approved contact list, not a team member.
    SupportContact,
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

/// Whether a member is the security contact: team role Security and a phone number.
pub fn is_security_contact(member: &TeamMember) -> bool {
    member.team_role == TeamRole::Security && member.phone.as_deref().is_some_and(|p| !p.is_empty())
}

/// What the rules need to know of a company: its team members, infrastructures, support cases
/// and approved contacts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompanyFacts {
    /// Team members.
    pub members: Vec<TeamMember>,
    /// Infrastructures.
    pub infrastructures: Vec<Infrastructure>,
    /// Support cases.
    pub cases: Vec<SupportCase>,
    /// Approved contacts (people whose cases are no longer held).
    pub approved_contacts: Vec<Email>,
}

impl CompanyFacts {
    /// The team member with this email.
    pub fn member(&self, email: &Email) -> Option<&TeamMember> {
        self.members.iter().find(|m| &m.email == email)
    }

    /// An infrastructure of the company.
    pub fn infrastructure(&self, id: Uuid) -> Option<&Infrastructure> {
        self.infrastructures.iter().find(|i| i.id == id)
    }

    /// Whether the person is a company admin.
    pub fn is_company_admin(&self, email: &Email) -> bool {
        self.member(email)
            .is_some_and(|m| m.company_permission == CompanyPermission::Admin)
    }

    /// Whether the person is an infrastructure admin of `infrastructure`.
    pub fn is_infrastructure_admin(&self, email: &Email, infrastructure: Uuid) -> bool {
        self.member(email).is_some_and(|m| {
            m.access.iter().any(|a| {
                a.infrastructure == infrastructure && a.permission == InfraPermission::Admin
            })
        })
    }

    /// The infrastructures the person administers.
    pub fn administered(&self, email: &Email) -> Vec<Uuid> {
        self.member(email).map_or_else(Vec::new, |m| {
            m.access
                .iter()
                .filter(|a| a.permission == InfraPermission::Admin)
                .map(|a| a.infrastructure)
                .collect()
        })
    }

    /// Whether the person is on a case (creator or CC).
    pub fn is_on_a_case(&self, email: &Email) -> bool {
        self.cases
            .iter()
            .any(|c| (&c.creator == email && !c.creator_removed) || c.cc.contains(email))
    }

    /// Whether the person is on the company's contact list: a team member or an approved
    /// contact. Cases of people not on it wait for approval (R76).
    pub fn on_contact_list(&self, email: &Email) -> bool {
        self.member(email).is_some() || self.approved_contacts.contains(email)
    }

    /// Whether the person is a support contact: on a case or approved, and not a team member.
    pub fn is_support_contact(&self, email: &Email) -> bool {
        self.member(email).is_none()
            && (self.is_on_a_case(email) || self.approved_contacts.contains(email))
    }

    /// Every support contact, sorted.
    pub fn support_contacts(&self) -> Vec<Email> {
        let mut all: BTreeSet<&Email> = self.approved_contacts.iter().collect();
        for c in &self.cases {
            if !c.creator_removed {
                all.insert(&c.creator);
            }
            all.extend(c.cc.iter());
        }
        all.into_iter()
            .filter(|e| self.member(e).is_none())
            .cloned()
            .collect()
    }

    /// The levels the person holds in the company (empty: none, a stranger).
    pub fn levels(&self, email: &Email) -> Vec<Level> {
        let mut levels = Vec::new();
        if let Some(m) = self.member(email) {
            if m.company_permission == CompanyPermission::Admin {
                levels.push(Level::CompanyAdmin);
            }
            levels.extend(
                m.access
                    .iter()
                    .filter(|a| a.permission == InfraPermission::Admin)
                    .map(|a| Level::InfrastructureAdmin(a.infrastructure)),
            );
            levels.push(Level::Member);
        } else if self.is_support_contact(email) {
            levels.push(Level::SupportContact);
        }
        levels
    }

    /// Whether the person may see a team member: themselves; company admins see everyone;
    /// infrastructure admins see the members of the infrastructures they administer, and the
    /// company admins.
    pub fn can_see_member(&self, viewer: &Email, member: &TeamMember) -> bool {
        if &member.email == viewer || self.is_company_admin(viewer) {
            return true;
        }
        let administered = self.administered(viewer);
        if administered.is_empty() {
            return false;
        }
        member.company_permission == CompanyPermission::Admin
            || member
                .access
                .iter()
                .any(|a| administered.contains(&a.infrastructure))
    }

    /// Whether the person may see a case: the cases they are on (creator or CC), every case of
    /// the infrastructures they administer, and — for company admins, who may approve them —
    /// the cases awaiting approval.
    pub fn can_see_case(&self, viewer: &Email, case: &SupportCase) -> bool {
        (&case.creator == viewer && !case.creator_removed)
            || case.cc.contains(viewer)
            || self.is_infrastructure_admin(viewer, case.infrastructure)
            || (case.state == CaseState::AwaitingApproval && self.is_company_admin(viewer))
    }

    /// May `email` do `capability` (on `infrastructure`, or — for infrastructure-scoped
    /// capabilities asked without one — on at least one infrastructure), and by which level?
    ///
    /// For the notification capabilities and security-contact management, an infrastructure
    /// narrows the infrastructure admins that count to the admins of that infrastructure.
    pub fn check(
        &self,
        email: &Email,
        capability: Capability,
        infrastructure: Option<Uuid>,
    ) -> Decision {
        use Capability as C;

        let scope: Vec<&Infrastructure> = match infrastructure {
            Some(id) => match self.infrastructure(id) {
                Some(i) => vec![i],
                None => return Decision::denied("the infrastructure is not one of this company's"),
            },
            None => self.infrastructures.iter().collect(),
        };
        let in_scope = |id: Uuid| scope.iter().any(|i| i.id == id);
        let member = self.member(email);
        let company_admin =
            member.is_some_and(|m| m.company_permission == CompanyPermission::Admin);
        // Infrastructure admin grants within the scope.
        let infra_admins = |only: &dyn Fn(&Infrastructure) -> bool| -> BTreeSet<Grant> {
            member.map_or_else(BTreeSet::new, |m| {
                m.access
                    .iter()
                    .filter(|a| {
                        a.permission == InfraPermission::Admin && in_scope(a.infrastructure)
                    })
                    .filter(|a| self.infrastructure(a.infrastructure).is_some_and(only))
                    .map(|a| Grant::InfrastructureAdmin(a.infrastructure))
                    .collect()
            })
        };
        let any = |_: &Infrastructure| true;
        let with_company_admin = |mut g: BTreeSet<Grant>| {
            if company_admin {
                g.insert(Grant::CompanyAdmin);
            }
            g
        };
        let member_grant =
            || -> BTreeSet<Grant> { member.map(|_| Grant::Member).into_iter().collect() };

        match capability {
            C::AccessPortal => {
                let mut g = with_company_admin(infra_admins(&any));
                g.extend(member_grant());
                Decision::from_grants(
                    g,
                    "only team members of the company access the Customer Portal",
                )
            }
            C::ViewHome | C::ViewSubscription | C::ViewAnalytics | C::ViewMyTraining => {
                Decision::from_grants(
                    member_grant(),
                    "only team members of the company read the Customer Portal",
                )
            }
            C::ManageUsers => Decision::from_grants(
                with_company_admin(infra_admins(&any)),
                "only company admins and the infrastructure's admins manage its users",
            ),
            C::ManageCompanyAdmins => Decision::from_grants(
                with_company_admin(BTreeSet::new()),
                "only company admins assign or remove company admins",
            ),
            C::RegisterSupportCases => {
                let mut g = infra_admins(&any);
                if let Some(m) = member {
                    let associated = m.access.iter().any(|a| in_scope(a.infrastructure));
                    if associated && company_admin {
                        g.insert(Grant::CompanyAdmin);
                    }
                    if m.access.iter().any(|a| {
                        in_scope(a.infrastructure) && a.permission == InfraPermission::Member
                    }) {
                        g.insert(Grant::Member);
                    }
                }
                Decision::from_grants(
                    g,
                    "needs access to the infrastructure (a company admin associated with it, its \
                     infrastructure admin, or a member with access to it)",
                )
            }
            C::ViewOwnCases => {
                let mut g = member_grant();
                if self.is_support_contact(email) {
                    g.insert(Grant::SupportContact);
                }
                Decision::from_grants(
                    g,
                    "only team members and support contacts have cases to view",
                )
            }
            C::ViewAllCases => Decision::from_grants(
                infra_admins(&any),
                "only the infrastructure admins of the infrastructure view all its cases",
            ),
            C::ApproveUnauthorizedCases => Decision::from_grants(
                with_company_admin(infra_admins(&any)),
                "only company admins and the infrastructure's admins approve its unauthorized \
                 cases",
            ),
            C::RemoveContacts => Decision::from_grants(
                with_company_admin(BTreeSet::new()),
                "only company admins remove contacts",
            ),
            C::RegisterEnvironments => Decision::from_grants(
                with_company_admin(infra_admins(&any)),
                "only company admins and the infrastructure's admins register environments",
            ),
            C::ReleaseEnvironmentSlots => Decision::from_grants(
                with_company_admin(infra_admins(&any)),
                "only company admins and the infrastructure's admins release environment slots",
            ),
            C::DownloadLicenses => {
                let self_managed = |i: &Infrastructure| i.kind == InfraKind::O11SelfManaged;
                if !scope.iter().any(|i| self_managed(i)) {
                    return Decision::denied(
                        "licenses are downloaded only for O11 self-managed infrastructures",
                    );
                }
                Decision::from_grants(
                    with_company_admin(infra_admins(&self_managed)),
                    "needs a company admin or an infrastructure admin of the O11 self-managed \
                     infrastructure",
                )
            }
            C::ReceiveDisruptiveEventNotifications => Decision::from_grants(
                with_company_admin(infra_admins(&any)),
                "only company admins and infrastructure admins receive disruptive-event \
                 notifications",
            ),
            C::ReceiveMaintenanceNotifications => Decision::from_grants(
                infra_admins(&any),
                "only infrastructure admins receive maintenance notifications",
            ),
            C::ReceiveLicenseExpirationEmails => Decision::from_grants(
                with_company_admin(infra_admins(&any)),
                "only company admins and infrastructure admins receive license-expiration emails",
            ),
            C::ManageSecurityContact => Decision::from_grants(
                with_company_admin(infra_admins(&any)),
                "only company admins and infrastructure admins manage the security contact",
            ),
            C::ReceiveSecurityCommunications => {
                let g = member
                    .filter(|m| is_security_contact(m))
                    .map(|_| Grant::SecurityContact)
                    .into_iter()
                    .collect();
                Decision::from_grants(
                    g,
                    "only the security contact (team role Security with a phone number) receives \
                     security communications",
                )
            }
        }
    }

    /// The emails that receive a kind of notification (for one infrastructure: infrastructure
    /// admins of others are left out), sorted.
    pub fn recipients(&self, kind: NotificationKind, infrastructure: Option<Uuid>) -> Vec<Email> {
        let capability = kind.capability();
        let mut out: Vec<Email> = self
            .members
            .iter()
            .filter(|m| self.check(&m.email, capability, infrastructure).allowed())
            .map(|m| m.email.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Access, Source};

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn infra(kind: InfraKind) -> Infrastructure {
        Infrastructure {
            id: Uuid::new_v4(),
            company: Uuid::nil(),
            display_name: format!("{kind:?}"),
            kind,
            identity_org: None,
            create_time: 0,
        }
    }

    fn member(
        e: &str,
        permission: CompanyPermission,
        access: &[(Uuid, InfraPermission)],
    ) -> TeamMember {
        TeamMember {
            id: Uuid::new_v4(),
            company: Uuid::nil(),
            email: email(e),
            display_name: String::new(),
            team_role: TeamRole::Other,
            company_permission: permission,
            access: access
                .iter()
                .map(|(i, p)| Access {
                    infrastructure: *i,
                    permission: *p,
                    source: Source::Manual,
                })
                .collect(),
            phone: None,
            lifetime_username: None,
            development_permissions: false,
            created_by_sync: false,
            create_time: 0,
            update_time: 0,
            rev: 1,
        }
    }

    fn case(infrastructure: Uuid, creator: &str, cc: &[&str], state: CaseState) -> SupportCase {
        SupportCase {
            id: Uuid::new_v4(),
            company: Uuid::nil(),
            infrastructure,
            subject: "help".into(),
            creator: email(creator),
            cc: cc.iter().map(|c| email(c)).collect(),
            state,
            create_time: 0,
            creator_removed: false,
        }
    }

    /// A company with one person per level, each holding only that level where possible:
    ///
    /// * `ca@x.com`: company admin, associated with the cloud infrastructure as a member
    ///   (the association is what lets a company admin register cases there);
    /// * `ia@x.com`: infrastructure admin of the cloud and the self-managed infrastructures;
    /// * `m@x.com`: member with member access to the cloud infrastructure;
    /// * `sc@x.com`: support contact (CC on a case), not a team member;
    /// * `sec@x.com`: the security contact (a member with role Security and a phone).
    struct World {
        facts: CompanyFacts,
        cloud: Uuid,
        self_managed: Uuid,
        other: Uuid,
    }

    fn world() -> World {
        let cloud = infra(InfraKind::O11Cloud);
        let self_managed = infra(InfraKind::O11SelfManaged);
        let other = infra(InfraKind::Odc);
        let (c, s, o) = (cloud.id, self_managed.id, other.id);
        let mut sec = member("sec@x.com", CompanyPermission::Member, &[]);
        sec.team_role = TeamRole::Security;
        sec.phone = Some("+351 912 345 678".into());
        let facts = CompanyFacts {
            members: vec![
                member(
                    "ca@x.com",
                    CompanyPermission::Admin,
                    &[(c, InfraPermission::Member)],
                ),
                member(
                    "ia@x.com",
                    CompanyPermission::Member,
                    &[(c, InfraPermission::Admin), (s, InfraPermission::Admin)],
                ),
                member(
                    "m@x.com",
                    CompanyPermission::Member,
                    &[(c, InfraPermission::Member)],
                ),
                member(
                    "oa@x.com",
                    CompanyPermission::Member,
                    &[(o, InfraPermission::Admin)],
                ),
                sec,
            ],
            infrastructures: vec![cloud, self_managed, other],
            cases: vec![case(c, "m@x.com", &["sc@x.com"], CaseState::Open)],
            approved_contacts: vec![],
        };
        World {
            facts,
            cloud: c,
            self_managed: s,
            other: o,
        }
    }

    const CA: &str = "ca@x.com";
    const IA: &str = "ia@x.com";
    const M: &str = "m@x.com";
    const SC: &str = "sc@x.com";

    /// The expected grant of a level, for an allowed capability.
    fn level_grant(who: &str, w: &World) -> Grant {
        match who {
            CA => Grant::CompanyAdmin,
            IA => Grant::InfrastructureAdmin(w.cloud),
            M => Grant::Member,
            _ => Grant::SupportContact,
        }
    }

    /// Each capability of each level: allowed for the levels that have it (and granted by that
    /// level, or by the member record every admin also has), refused for the others.
    #[test]
    fn every_capability_of_every_level() {
        use Capability as C;
        let w = world();
        // (capability, infrastructure, [company admin, infra admin, member, support contact],
        //  whether the admins get it through their member record rather than their level)
        let table: [(Capability, Option<Uuid>, [bool; 4], bool); 20] = [
            (C::AccessPortal, None, [true, true, true, false], false),
            (C::ViewHome, None, [true, true, true, false], true),
            (C::ViewSubscription, None, [true, true, true, false], true),
            (C::ViewAnalytics, None, [true, true, true, false], true),
            (C::ViewMyTraining, None, [true, true, true, false], true),
            (
                C::ManageUsers,
                Some(w.cloud),
                [true, true, false, false],
                false,
            ),
            (
                C::ManageCompanyAdmins,
                None,
                [true, false, false, false],
                false,
            ),
            (
                C::RegisterSupportCases,
                Some(w.cloud),
                [true, true, true, false],
                false,
            ),
            (C::ViewOwnCases, None, [true, true, true, true], true),
            (
                C::ViewAllCases,
                Some(w.cloud),
                [false, true, false, false],
                false,
            ),
            (
                C::ApproveUnauthorizedCases,
                Some(w.cloud),
                [true, true, false, false],
                false,
            ),
            (C::RemoveContacts, None, [true, false, false, false], false),
            (
                C::RegisterEnvironments,
                Some(w.cloud),
                [true, true, false, false],
                false,
            ),
            (
                C::ReleaseEnvironmentSlots,
                Some(w.cloud),
                [true, true, false, false],
                false,
            ),
            (
                C::DownloadLicenses,
                Some(w.self_managed),
                [true, true, false, false],
                false,
            ),
            (
                C::ReceiveDisruptiveEventNotifications,
                None,
                [true, true, false, false],
                false,
            ),
            (
                C::ReceiveMaintenanceNotifications,
                None,
                [false, true, false, false],
                false,
            ),
            (
                C::ReceiveLicenseExpirationEmails,
                None,
                [true, true, false, false],
                false,
            ),
            (
                C::ManageSecurityContact,
                None,
                [true, true, false, false],
                false,
            ),
            (
                C::ReceiveSecurityCommunications,
                None,
                [false, false, false, false],
                false,
            ),
        ];
        let covered: BTreeSet<Capability> = table.iter().map(|t| t.0).collect();
        assert_eq!(
            covered.len(),
            Capability::ALL.len(),
            "every capability is in the table"
        );

        for (cap, at, expected, via_member) in table {
            for (who, allowed) in [CA, IA, M, SC].into_iter().zip(expected) {
                let mut grant = level_grant(who, &w);
                if via_member && who != SC {
                    grant = Grant::Member;
                }
                if cap == C::DownloadLicenses && who == IA {
                    grant = Grant::InfrastructureAdmin(w.self_managed);
                }
                let d = w.facts.check(&email(who), cap, at);
                assert_eq!(d.allowed(), allowed, "{cap:?} for {who}: {d:?}");
                if allowed {
                    assert!(
                        d.granted_by.contains(&grant),
                        "{cap:?} for {who} by {grant:?}: {d:?}"
                    );
                    assert!(d.denial_reason.is_none());
                } else {
                    assert!(d.denial_reason.is_some(), "{cap:?} for {who}: a reason");
                }
            }
            // Nobody outside the company has anything.
            assert!(
                !w.facts.check(&email("stranger@y.com"), cap, at).allowed(),
                "{cap:?}"
            );
        }
    }

    #[test]
    fn the_security_contact_alone_receives_security_communications() {
        let w = world();
        let d = w.facts.check(
            &email("sec@x.com"),
            Capability::ReceiveSecurityCommunications,
            None,
        );
        assert_eq!(d.granted_by, vec![Grant::SecurityContact]);
        // The role keeps its other permissions (R71): it is still a member.
        assert!(
            w.facts
                .check(&email("sec@x.com"), Capability::ViewHome, None)
                .allowed()
        );
        // Role Security without a phone number is not (yet) the security contact.
        let mut f = w.facts.clone();
        if let Some(m) = f
            .members
            .iter_mut()
            .find(|m| m.email.as_str() == "sec@x.com")
        {
            m.phone = None;
        }
        assert!(
            !f.check(
                &email("sec@x.com"),
                Capability::ReceiveSecurityCommunications,
                None
            )
            .allowed()
        );
        // A phone without the role is not either.
        let mut f = w.facts.clone();
        if let Some(m) = f
            .members
            .iter_mut()
            .find(|m| m.email.as_str() == "sec@x.com")
        {
            m.team_role = TeamRole::Developer;
        }
        assert!(
            !f.check(
                &email("sec@x.com"),
                Capability::ReceiveSecurityCommunications,
                None
            )
            .allowed()
        );
    }

    #[test]
    fn infrastructure_admins_act_only_on_their_infrastructures() {
        let w = world();
        let ia = email(IA);
        for cap in [
            Capability::ManageUsers,
            Capability::ViewAllCases,
            Capability::ApproveUnauthorizedCases,
            Capability::RegisterEnvironments,
            Capability::ReleaseEnvironmentSlots,
            Capability::RegisterSupportCases,
        ] {
            assert!(w.facts.check(&ia, cap, Some(w.cloud)).allowed(), "{cap:?}");
            assert!(
                !w.facts.check(&ia, cap, Some(w.other)).allowed(),
                "{cap:?} on another"
            );
        }
        // Maintenance notifications for one infrastructure: only its admins.
        assert!(
            !w.facts
                .check(
                    &ia,
                    Capability::ReceiveMaintenanceNotifications,
                    Some(w.other)
                )
                .allowed()
        );
        assert!(
            w.facts
                .check(
                    &email("oa@x.com"),
                    Capability::ReceiveMaintenanceNotifications,
                    Some(w.other)
                )
                .allowed()
        );
    }

    #[test]
    fn company_admins_register_cases_only_where_associated() {
        let w = world();
        let ca = email(CA);
        let d = w
            .facts
            .check(&ca, Capability::RegisterSupportCases, Some(w.cloud));
        assert!(d.granted_by.contains(&Grant::CompanyAdmin), "{d:?}");
        assert!(
            !w.facts
                .check(&ca, Capability::RegisterSupportCases, Some(w.self_managed))
                .allowed()
        );
        // But they manage users and approve cases everywhere.
        assert!(
            w.facts
                .check(&ca, Capability::ManageUsers, Some(w.other))
                .allowed()
        );
        assert!(
            w.facts
                .check(&ca, Capability::ApproveUnauthorizedCases, Some(w.other))
                .allowed()
        );
        // Without an infrastructure: "on at least one".
        assert!(
            w.facts
                .check(&ca, Capability::RegisterSupportCases, None)
                .allowed()
        );
    }

    #[test]
    fn members_register_cases_only_where_they_have_access() {
        let w = world();
        let m = email(M);
        assert!(
            w.facts
                .check(&m, Capability::RegisterSupportCases, Some(w.cloud))
                .allowed()
        );
        assert!(
            !w.facts
                .check(&m, Capability::RegisterSupportCases, Some(w.self_managed))
                .allowed()
        );
        assert!(
            !w.facts
                .check(&email("sec@x.com"), Capability::RegisterSupportCases, None)
                .allowed()
        );
    }

    #[test]
    fn licenses_only_for_o11_self_managed() {
        let w = world();
        for who in [CA, IA] {
            let d = w
                .facts
                .check(&email(who), Capability::DownloadLicenses, Some(w.cloud));
            assert!(!d.allowed(), "{who}");
            assert!(d.denial_reason.is_some_and(|r| r.contains("self-managed")));
        }
        let d = w
            .facts
            .check(&email(IA), Capability::DownloadLicenses, None);
        assert_eq!(
            d.granted_by,
            vec![Grant::InfrastructureAdmin(w.self_managed)]
        );
        // An admin of only an ODC infrastructure downloads nothing.
        assert!(
            !w.facts
                .check(&email("oa@x.com"), Capability::DownloadLicenses, None)
                .allowed()
        );
    }

    #[test]
    fn unknown_infrastructure_is_refused() {
        let w = world();
        let d = w
            .facts
            .check(&email(CA), Capability::ManageUsers, Some(Uuid::new_v4()));
        assert!(!d.allowed());
    }

    #[test]
    fn notification_recipients_by_kind() {
        let w = world();
        let emails = |v: Vec<Email>| v.iter().map(|e| e.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(
            emails(w.facts.recipients(NotificationKind::DisruptiveEvents, None)),
            ["ca@x.com", "ia@x.com", "oa@x.com"]
        );
        assert_eq!(
            emails(
                w.facts
                    .recipients(NotificationKind::DisruptiveEvents, Some(w.cloud))
            ),
            ["ca@x.com", "ia@x.com"]
        );
        assert_eq!(
            emails(w.facts.recipients(NotificationKind::Maintenance, None)),
            ["ia@x.com", "oa@x.com"]
        );
        assert_eq!(
            emails(
                w.facts
                    .recipients(NotificationKind::Maintenance, Some(w.other))
            ),
            ["oa@x.com"]
        );
        assert_eq!(
            emails(
                w.facts
                    .recipients(NotificationKind::LicenseExpiration, Some(w.other))
            ),
            ["ca@x.com", "oa@x.com"]
        );
        assert_eq!(
            emails(
                w.facts
                    .recipients(NotificationKind::SecurityCommunications, Some(w.cloud))
            ),
            ["sec@x.com"]
        );
    }

    #[test]
    fn levels_contacts_and_visibility() {
        let mut w = world();
        assert_eq!(
            w.facts.levels(&email(IA)),
            vec![
                Level::InfrastructureAdmin(w.cloud),
                Level::InfrastructureAdmin(w.self_managed),
                Level::Member
            ]
        );
        assert_eq!(
            w.facts.levels(&email(CA)),
            vec![Level::CompanyAdmin, Level::Member]
        );
        assert_eq!(w.facts.levels(&email(SC)), vec![Level::SupportContact]);
        assert!(w.facts.levels(&email("stranger@y.com")).is_empty());
        assert!(w.facts.on_contact_list(&email(M)));
        assert!(!w.facts.on_contact_list(&email(SC)));
        w.facts.approved_contacts.push(email("ok@y.com"));
        assert!(w.facts.on_contact_list(&email("ok@y.com")));
        assert_eq!(
            w.facts.support_contacts(),
            vec![email("ok@y.com"), email(SC)]
        );

        let held = case(w.other, "stranger@y.com", &[], CaseState::AwaitingApproval);
        let open = case(w.cloud, M, &[SC], CaseState::Open);
        // Creator and CC see the case; the infrastructure's admin sees every case of it.
        assert!(w.facts.can_see_case(&email(M), &open));
        assert!(w.facts.can_see_case(&email(SC), &open));
        assert!(w.facts.can_see_case(&email(IA), &open));
        assert!(!w.facts.can_see_case(&email(CA), &open));
        assert!(!w.facts.can_see_case(&email("sec@x.com"), &open));
        // Company admins see held cases (they may approve them), other admins only theirs.
        assert!(w.facts.can_see_case(&email(CA), &held));
        assert!(w.facts.can_see_case(&email("oa@x.com"), &held));
        assert!(!w.facts.can_see_case(&email(IA), &held));

        // Member visibility: infrastructure admins see their infrastructures' members and the
        // company admins.
        let ia = email(IA);
        let see = |who: &str| {
            w.facts
                .members
                .iter()
                .filter(|m| w.facts.can_see_member(&email(who), m))
                .map(|m| m.email.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(see(IA), ["ca@x.com", "ia@x.com", "m@x.com"]);
        assert_eq!(see(CA).len(), 5);
        assert_eq!(see(M), ["m@x.com"]);
        assert!(w.facts.can_see_member(&ia, &w.facts.members[0]));
    }
}
