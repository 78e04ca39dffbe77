//! Tests of cutting a batch into runs and of the statement size limits.

use uuid::Uuid;

use super::{MEMBER_INSERT_BINDS, Run, rows_per_statement, runs};
use crate::domain::model::{CompanyPermission, Email, TeamMember, TeamRole};
use crate::store::MemberChange;

fn member(n: usize) -> TeamMember {
    TeamMember {
        id: Uuid::new_v4(),
        company: Uuid::nil(),
        email: Email::parse(&format!("m{n}@example.com")).unwrap(),
        display_name: String::new(),
        team_role: TeamRole::Other,
        company_permission: CompanyPermission::Member,
        access: Vec::new(),
        phone: None,
        lifetime_username: None,
        development_permissions: false,
        created_by_sync: true,
        create_time: 0,
        update_time: 0,
        rev: 1,
    }
}

fn upsert(m: &TeamMember, expected_rev: Option<u64>) -> MemberChange {
    MemberChange::Upsert {
        member: m.clone(),
        expected_rev,
    }
}

fn delete(m: &TeamMember, expected_rev: u64) -> MemberChange {
    MemberChange::Delete {
        company: m.company,
        id: m.id,
        expected_rev,
    }
}

#[test]
fn statements_stay_within_both_bind_limits() {
    use super::{EVENT_BINDS, MEMBER_DELETE_BINDS, MEMBER_UPDATE_BINDS, SHARED_BINDS};
    for binds in [
        MEMBER_INSERT_BINDS,
        MEMBER_UPDATE_BINDS,
        MEMBER_DELETE_BINDS,
        EVENT_BINDS,
    ] {
        let rows = rows_per_statement(binds);
        assert!(rows >= 1);
        // SQLite's limit is the lower one.
        assert!(rows * binds + SHARED_BINDS <= 32_766, "{binds}");
    }
}

#[test]
fn runs_keep_the_order_and_cut_at_kinds_repeats_and_full_statements() {
    let ms: Vec<TeamMember> = (0..4).map(member).collect();
    let changes = [
        upsert(&ms[0], None),
        upsert(&ms[1], None),
        upsert(&ms[2], Some(1)),
        upsert(&ms[3], Some(1)),
        // The same member again: a new run of the same kind.
        upsert(&ms[2], Some(2)),
        delete(&ms[0], 1),
        delete(&ms[1], 1),
        upsert(&ms[0], None),
    ];
    assert_eq!(
        runs(&changes),
        [
            Run::Insert(vec![&ms[0], &ms[1]]),
            Run::Update(vec![(&ms[2], 1), (&ms[3], 1)]),
            Run::Update(vec![(&ms[2], 2)]),
            Run::Delete(vec![(ms[0].id, 1), (ms[1].id, 1)]),
            Run::Insert(vec![&ms[0]]),
        ]
    );

    let per = rows_per_statement(MEMBER_INSERT_BINDS);
    let many: Vec<TeamMember> = (0..=2 * per).map(member).collect();
    let inserts: Vec<MemberChange> = many.iter().map(|m| upsert(m, None)).collect();
    let lens: Vec<usize> = runs(&inserts)
        .iter()
        .map(|r| match r {
            Run::Insert(v) => v.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lens, [per, per, 1]);
    assert!(runs(&[]).is_empty());
}
