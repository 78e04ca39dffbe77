//! A batch of commits as rows: the checks that the commits continue each other
//! ([`batch_end`]) and the rows they write ([`BatchRows`]), each entity document serialized
//! once, the net effect on `entities` computed once, whichever path writes them.

use super::columns::{entity_to_json, to_i64, users_to_json};
use crate::core::store::{Commit, StoreError};
use crate::domain::model::Micros;

/// Rows per multi-row statement of a commit: at most 10 binds per row, so a statement stays far
/// below SQLite's 32,766 and PostgreSQL's 65,535 bind parameters.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// Checks that `commits` form one batch (see [`EventLog::commit_batch`](crate::core::store::EventLog::commit_batch))
/// and returns the sequence after its last commit.
pub(crate) fn batch_end(commits: &[Commit<'_>]) -> Result<u64, StoreError> {
    let first = commits
        .first()
        .ok_or_else(|| StoreError::Corrupt("empty commit batch".to_owned()))?;
    let mut seq = first.expected_seq;
    for (i, commit) in commits.iter().enumerate() {
        if commit.org != first.org || commit.expected_seq != seq || (i > 0 && commit.create_org) {
            return Err(StoreError::Corrupt(format!(
                "commit {i} of the batch does not continue it (organization {}, expected \
                 sequence {}, batch at {seq})",
                commit.org, commit.expected_seq
            )));
        }
        let count = u64::try_from(commit.changes.len())
            .map_err(|_| StoreError::Corrupt("too many changes".to_owned()))?;
        seq = seq
            .checked_add(count)
            .ok_or_else(|| StoreError::Corrupt("sequence overflow".to_owned()))?;
    }
    Ok(seq)
}

/// One `events` row to insert.
pub(crate) struct NewEvent<'a> {
    pub seq: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
    pub affected_users: String,
    pub request_id: Option<&'a str>,
    pub time: Micros,
}

/// The rows a batch of commits writes, each entity document serialized once.
pub(crate) struct BatchRows<'a> {
    /// Every change's event, in sequence order.
    pub events: Vec<NewEvent<'a>>,
    /// `entities` keys the batch leaves without a row.
    pub deletes: Vec<(&'static str, String)>,
    /// `entities` keys the batch leaves with a row: the document is the `after` of that event.
    pub upserts: Vec<(&'static str, String, usize)>,
    /// Idempotency keys with the target of their commit's first change.
    pub requests: Vec<(&'a str, &'a str)>,
}

impl<'a> BatchRows<'a> {
    /// The rows of `commits`, which [`batch_end`] accepted.
    pub(crate) fn new(commits: &'a [Commit<'a>]) -> Result<Self, StoreError> {
        let mut events = Vec::with_capacity(commits.iter().map(|c| c.changes.len()).sum());
        // The last write of each key wins: applying the changes one by one deletes the old
        // key of a change unless the entity is replaced in place, then writes the new one.
        let mut net: std::collections::BTreeMap<(&'static str, String), Option<usize>> =
            std::collections::BTreeMap::new();
        let mut requests = Vec::new();
        for commit in commits {
            if let (Some(request_id), Some(first)) = (commit.request_id, commit.changes.first()) {
                requests.push((request_id, first.target.as_str()));
            }
            let mut seq = commit.expected_seq;
            for change in commit.changes {
                let index = events.len();
                seq += 1;
                if let Some(before) = &change.before {
                    let replaced_in_place = change.after.as_ref().is_some_and(|after| {
                        after.kind() == before.kind() && after.key() == before.key()
                    });
                    if !replaced_in_place {
                        net.insert((before.kind(), before.key()), None);
                    }
                }
                if let Some(after) = &change.after {
                    net.insert((after.kind(), after.key()), Some(index));
                }
                events.push(NewEvent {
                    seq: to_i64(seq)?,
                    actor: commit.actor,
                    action: &change.action,
                    target: &change.target,
                    before: change.before.as_ref().map(entity_to_json).transpose()?,
                    after: change.after.as_ref().map(entity_to_json).transpose()?,
                    affected_users: users_to_json(&change.affected_users)?,
                    request_id: commit.request_id,
                    time: commit.time,
                });
            }
        }
        let mut deletes = Vec::new();
        let mut upserts = Vec::new();
        for ((kind, key), write) in net {
            match write {
                Some(index) => upserts.push((kind, key, index)),
                None => deletes.push((kind, key)),
            }
        }
        Ok(Self {
            events,
            deletes,
            upserts,
            requests,
        })
    }
}
