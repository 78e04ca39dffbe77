//! Cutting a batch of member changes into runs, each written by one multi-row statement
//! (`member_writes.rs`), and how many rows such a statement may carry. No SQL here.

use std::collections::HashSet;

use uuid::Uuid;

use crate::domain::model::TeamMember;
use crate::store::MemberChange;

#[cfg(test)]
mod tests;

/// Bound parameters per multi-row statement at most: below SQLite's limit (32,766 since 3.32)
/// and PostgreSQL's (65,535).
const MAX_BINDS: usize = 32_000;

/// Rows per multi-row statement at most. Larger statements save little once a round trip is
/// shared by a thousand rows, and cost more to parse.
const MAX_ROWS: usize = 1000;

/// Rows of `binds_per_row` parameters each that one statement may carry (plus a few shared
/// parameters such as the company).
pub(in crate::store) const fn rows_per_statement(binds_per_row: usize) -> usize {
    let rows = (MAX_BINDS - SHARED_BINDS) / binds_per_row;
    if rows < MAX_ROWS { rows } else { MAX_ROWS }
}

/// Parameters a multi-row statement may bind besides its rows.
const SHARED_BINDS: usize = 8;

/// Parameters per row of the multi-row statements.
pub(in crate::store) const MEMBER_INSERT_BINDS: usize = 5;
/// Parameters per row of the multi-row member update.
pub(super) const MEMBER_UPDATE_BINDS: usize = 5;
/// Parameters per row of the multi-row member delete.
pub(super) const MEMBER_DELETE_BINDS: usize = 2;
/// Parameters per row of the multi-row event insert.
pub(in crate::store) const EVENT_BINDS: usize = 7;

/// Consecutive member changes of one kind, with distinct ids, written by one statement.
///
/// [`runs`] cuts a batch into these without reordering anything, so the batch keeps the
/// meaning of its changes applied one by one in order (see the `apply` implementation for why
/// each kind of run is equivalent to its changes written one at a time).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Run<'a> {
    /// New members.
    Insert(Vec<&'a TeamMember>),
    /// Replacements, each with the revision it expects.
    Update(Vec<(&'a TeamMember, u64)>),
    /// Deletions: (id, expected revision).
    Delete(Vec<(Uuid, u64)>),
}

/// Cuts `changes` into runs, in order: a run ends where the kind of change changes, where a
/// member already in the run comes again, or when it is full ([`rows_per_statement`]).
pub(super) fn runs(changes: &[MemberChange]) -> Vec<Run<'_>> {
    let mut out: Vec<Run<'_>> = Vec::new();
    // The members of the last run.
    let mut ids: HashSet<Uuid> = HashSet::new();
    for change in changes {
        let id = match change {
            MemberChange::Upsert { member, .. } => member.id,
            MemberChange::Delete { id, .. } => *id,
        };
        let fresh = ids.insert(id);
        // Appends to the last run when it is of this kind, has room and lacks this member.
        let joined = match (out.last_mut(), change) {
            (
                Some(Run::Insert(v)),
                MemberChange::Upsert {
                    member,
                    expected_rev: None,
                },
            ) if fresh && v.len() < rows_per_statement(MEMBER_INSERT_BINDS) => {
                v.push(member);
                true
            }
            (
                Some(Run::Update(v)),
                MemberChange::Upsert {
                    member,
                    expected_rev: Some(rev),
                },
            ) if fresh && v.len() < rows_per_statement(MEMBER_UPDATE_BINDS) => {
                v.push((member, *rev));
                true
            }
            (
                Some(Run::Delete(v)),
                MemberChange::Delete {
                    id, expected_rev, ..
                },
            ) if fresh && v.len() < rows_per_statement(MEMBER_DELETE_BINDS) => {
                v.push((*id, *expected_rev));
                true
            }
            _ => false,
        };
        if !joined {
            ids.clear();
            ids.insert(id);
            out.push(match change {
                MemberChange::Upsert {
                    member,
                    expected_rev: None,
                } => Run::Insert(vec![member]),
                MemberChange::Upsert {
                    member,
                    expected_rev: Some(rev),
                } => Run::Update(vec![(member, *rev)]),
                MemberChange::Delete {
                    id, expected_rev, ..
                } => Run::Delete(vec![(*id, *expected_rev)]),
            });
        }
    }
    out
}
