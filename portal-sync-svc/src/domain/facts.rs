//! What the rules know of one company — its team members, infrastructures, support cases and
//! approved contacts — and the access levels people hold in it (company admin, infrastructure
//! admin, member, support contact), who sees which member and which case.
//!
//! What each level may do is the capability table ([`super::capabilities`]).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::model::{
    CaseState, CompanyPermission, Email, InfraPermission, Infrastructure, SupportCase, TeamMember,
    TeamRole,
};

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
}
