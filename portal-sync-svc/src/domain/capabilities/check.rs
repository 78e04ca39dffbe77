//! The capability table of seed 004 as code: which level grants each capability (on one
//! infrastructure, or on at least one), why it is refused otherwise, and who receives each kind
//! of notification.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{Capability, Decision, Grant, NotificationKind};
use crate::domain::facts::{CompanyFacts, is_security_contact};
use crate::domain::model::{
    CompanyPermission, Email, InfraKind, InfraPermission, Infrastructure, TeamMember,
};

impl CompanyFacts {
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
        let scope: Vec<&Infrastructure> = match infrastructure {
            Some(id) => match self.infrastructure(id) {
                Some(i) => vec![i],
                None => return Decision::denied("the infrastructure is not one of this company's"),
            },
            None => self.infrastructures.iter().collect(),
        };
        if capability == Capability::DownloadLicenses && !scope.iter().any(|i| self_managed(i)) {
            return Decision::denied(
                "licenses are downloaded only for O11 self-managed infrastructures",
            );
        }
        let member = self.member(email);
        let asked = Asked {
            facts: self,
            email,
            scope,
            member,
            company_admin: member.is_some_and(|m| m.company_permission == CompanyPermission::Admin),
        };
        Decision::from_grants(asked.grants(capability), denial(capability))
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

fn self_managed(i: &Infrastructure) -> bool {
    i.kind == InfraKind::O11SelfManaged
}

/// One person asked about, and the infrastructures the question covers.
struct Asked<'a> {
    facts: &'a CompanyFacts,
    email: &'a Email,
    scope: Vec<&'a Infrastructure>,
    member: Option<&'a TeamMember>,
    company_admin: bool,
}

impl Asked<'_> {
    /// The levels that grant `capability` (the three lists of the seed, row by row).
    fn grants(&self, capability: Capability) -> BTreeSet<Grant> {
        use Capability as C;

        match capability {
            C::AccessPortal => {
                let mut g = self.admins();
                g.extend(self.member_grant());
                g
            }
            C::ViewHome | C::ViewSubscription | C::ViewAnalytics | C::ViewMyTraining => {
                self.member_grant()
            }
            C::ManageUsers
            | C::ApproveUnauthorizedCases
            | C::RegisterEnvironments
            | C::ReleaseEnvironmentSlots
            | C::ReceiveDisruptiveEventNotifications
            | C::ReceiveLicenseExpirationEmails
            | C::ManageSecurityContact => self.admins(),
            C::ManageCompanyAdmins | C::RemoveContacts => self.with_company_admin(BTreeSet::new()),
            C::RegisterSupportCases => self.case_registrars(),
            C::ViewOwnCases => {
                let mut g = self.member_grant();
                if self.facts.is_support_contact(self.email) {
                    g.insert(Grant::SupportContact);
                }
                g
            }
            C::ViewAllCases | C::ReceiveMaintenanceNotifications => self.infra_admins(|_| true),
            C::DownloadLicenses => self.with_company_admin(self.infra_admins(self_managed)),
            C::ReceiveSecurityCommunications => self
                .member
                .filter(|m| is_security_contact(m))
                .map(|_| Grant::SecurityContact)
                .into_iter()
                .collect(),
        }
    }

    fn in_scope(&self, id: Uuid) -> bool {
        self.scope.iter().any(|i| i.id == id)
    }

    /// Infrastructure admin grants within the scope, on the infrastructures that pass `only`.
    fn infra_admins(&self, only: impl Fn(&Infrastructure) -> bool) -> BTreeSet<Grant> {
        self.member.map_or_else(BTreeSet::new, |m| {
            m.access
                .iter()
                .filter(|a| {
                    a.permission == InfraPermission::Admin && self.in_scope(a.infrastructure)
                })
                .filter(|a| {
                    self.facts
                        .infrastructure(a.infrastructure)
                        .is_some_and(&only)
                })
                .map(|a| Grant::InfrastructureAdmin(a.infrastructure))
                .collect()
        })
    }

    fn with_company_admin(&self, mut g: BTreeSet<Grant>) -> BTreeSet<Grant> {
        if self.company_admin {
            g.insert(Grant::CompanyAdmin);
        }
        g
    }

    /// Company admins and the infrastructure admins in scope.
    fn admins(&self) -> BTreeSet<Grant> {
        self.with_company_admin(self.infra_admins(|_| true))
    }

    fn member_grant(&self) -> BTreeSet<Grant> {
        self.member.map(|_| Grant::Member).into_iter().collect()
    }

    /// Who registers support cases: infrastructure admins, company admins associated with an
    /// infrastructure in scope, members with access to one.
    fn case_registrars(&self) -> BTreeSet<Grant> {
        let mut g = self.infra_admins(|_| true);
        if let Some(m) = self.member {
            let associated = m.access.iter().any(|a| self.in_scope(a.infrastructure));
            if associated && self.company_admin {
                g.insert(Grant::CompanyAdmin);
            }
            if m.access
                .iter()
                .any(|a| self.in_scope(a.infrastructure) && a.permission == InfraPermission::Member)
            {
                g.insert(Grant::Member);
            }
        }
        g
    }
}

/// Why a capability is refused to someone no level grants it to.
fn denial(capability: Capability) -> &'static str {
    use Capability as C;

    match capability {
        C::AccessPortal => "only team members of the company access the Customer Portal",
        C::ViewHome | C::ViewSubscription | C::ViewAnalytics | C::ViewMyTraining => {
            "only team members of the company read the Customer Portal"
        }
        C::ManageUsers => "only company admins and the infrastructure's admins manage its users",
        C::ManageCompanyAdmins => "only company admins assign or remove company admins",
        C::RegisterSupportCases => {
            "needs access to the infrastructure (a company admin associated with it, its \
             infrastructure admin, or a member with access to it)"
        }
        C::ViewOwnCases => "only team members and support contacts have cases to view",
        C::ViewAllCases => {
            "only the infrastructure admins of the infrastructure view all its cases"
        }
        C::ApproveUnauthorizedCases => {
            "only company admins and the infrastructure's admins approve its unauthorized cases"
        }
        C::RemoveContacts => "only company admins remove contacts",
        C::RegisterEnvironments => {
            "only company admins and the infrastructure's admins register environments"
        }
        C::ReleaseEnvironmentSlots => {
            "only company admins and the infrastructure's admins release environment slots"
        }
        C::DownloadLicenses => {
            "needs a company admin or an infrastructure admin of the O11 self-managed \
             infrastructure"
        }
        C::ReceiveDisruptiveEventNotifications => {
            "only company admins and infrastructure admins receive disruptive-event notifications"
        }
        C::ReceiveMaintenanceNotifications => {
            "only infrastructure admins receive maintenance notifications"
        }
        C::ReceiveLicenseExpirationEmails => {
            "only company admins and infrastructure admins receive license-expiration emails"
        }
        C::ManageSecurityContact => {
            "only company admins and infrastructure admins manage the security contact"
        }
        C::ReceiveSecurityCommunications => {
            "only the security contact (team role Security with a phone number) receives \
             security communications"
        }
    }
}
