//! Fixtures of the contract suite: records, changes and events to write, seeded companies,
//! and assertions on store errors.

use uuid::Uuid;

use crate::domain::model::{
    Access, CaseState, Company, CompanyPermission, Email, InfraKind, InfraPermission,
    Infrastructure, Micros, NewEvent, PortalEvent, Source, SupportCase, TeamMember, TeamRole,
};
use crate::store::{MemberChange, PortalStore, StoreError};

pub(super) const T0: Micros = 1_700_000_000_000_000;

pub(super) fn email(text: &str) -> Email {
    Email::parse(text).unwrap()
}

pub(super) fn event(action: &str) -> NewEvent {
    NewEvent {
        actor: "tester".to_owned(),
        action: action.to_owned(),
        target: format!("targets/{action}"),
        detail: format!("detail of {action}"),
    }
}

/// A member with some access, so that the stored document is not trivial.
pub(super) fn member(company: Uuid, address: &str, rev: u64) -> TeamMember {
    TeamMember {
        id: Uuid::new_v4(),
        company,
        email: email(address),
        display_name: address.split('@').next().unwrap_or_default().to_owned(),
        team_role: TeamRole::Developer,
        company_permission: CompanyPermission::Member,
        access: vec![Access {
            infrastructure: Uuid::new_v4(),
            permission: InfraPermission::Admin,
            source: Source::Odc {
                identity_user: Uuid::new_v4(),
            },
        }],
        phone: Some("+351 000".to_owned()),
        lifetime_username: None,
        development_permissions: true,
        created_by_sync: true,
        create_time: T0,
        update_time: T0,
        rev,
    }
}

/// `member` changed from its current revision to the next one.
pub(super) fn changed(member: &TeamMember, display_name: &str) -> TeamMember {
    TeamMember {
        display_name: display_name.to_owned(),
        update_time: member.update_time + 1,
        rev: member.rev + 1,
        ..member.clone()
    }
}

pub(super) fn insert(member: &TeamMember) -> MemberChange {
    MemberChange::Upsert {
        member: member.clone(),
        expected_rev: None,
    }
}

/// Replaces the member at `expected_rev` by `member`.
pub(super) fn update(member: &TeamMember, expected_rev: u64) -> MemberChange {
    MemberChange::Upsert {
        member: member.clone(),
        expected_rev: Some(expected_rev),
    }
}

pub(super) fn delete(member: &TeamMember, expected_rev: u64) -> MemberChange {
    MemberChange::Delete {
        company: member.company,
        id: member.id,
        expected_rev,
    }
}

pub(super) fn infra(
    company: Uuid,
    kind: InfraKind,
    name: &str,
    create_time: Micros,
) -> Infrastructure {
    Infrastructure {
        id: Uuid::new_v4(),
        company,
        display_name: name.to_owned(),
        kind,
        identity_org: (kind == InfraKind::Odc).then(Uuid::new_v4),
        create_time,
    }
}

pub(super) fn support_case(
    company: Uuid,
    infrastructure: Uuid,
    creator: &str,
    cc: &[&str],
    create_time: Micros,
) -> SupportCase {
    SupportCase {
        id: Uuid::new_v4(),
        company,
        infrastructure,
        subject: format!("help {create_time}"),
        creator: email(creator),
        cc: cc.iter().map(|c| email(c)).collect(),
        state: CaseState::AwaitingApproval,
        create_time,
        creator_removed: false,
    }
}

pub(super) fn seqs(events: &[PortalEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// A created company and its first admin.
pub(super) struct Seed {
    pub(super) company: Company,
    pub(super) admin: TeamMember,
}

/// Creates a company whose first admin is `admin@<name>.example`; its event sequence is then 1.
pub(super) async fn seed_company(store: &dyn PortalStore, name: &str) -> Seed {
    let company = Company {
        id: Uuid::new_v4(),
        display_name: name.to_owned(),
        create_time: T0,
    };
    let admin = TeamMember {
        company_permission: CompanyPermission::Admin,
        created_by_sync: false,
        ..member(
            company.id,
            &format!("admin@{}.example", name.to_lowercase()),
            1,
        )
    };
    store
        .create_company(&company, &admin, &event("company.created"), T0)
        .await
        .unwrap();
    Seed { company, admin }
}

/// A company with an ODC infrastructure (event sequence 2).
pub(super) async fn seed_odc(store: &dyn PortalStore) -> (Seed, Infrastructure) {
    let seed = seed_company(store, "Acme").await;
    let odc = infra(seed.company.id, InfraKind::Odc, "ODC", T0);
    store
        .create_infrastructure(&odc, Some("secret"), &event("infra.created"), T0)
        .await
        .unwrap();
    (seed, odc)
}

pub(super) fn assert_conflict(result: Result<(), StoreError>) {
    match result {
        Err(StoreError::Conflict) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

pub(super) fn assert_not_found(result: Result<(), StoreError>) {
    match result {
        Err(StoreError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}
