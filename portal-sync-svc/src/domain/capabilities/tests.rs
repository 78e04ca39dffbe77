//! The capability table, level by level, against seed 004.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::*;
use crate::domain::facts::{CompanyFacts, Level};
use crate::domain::model::{
    Access, CaseState, CompanyPermission, Email, InfraKind, InfraPermission, Infrastructure,
    Source, SupportCase, TeamMember, TeamRole,
};

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
