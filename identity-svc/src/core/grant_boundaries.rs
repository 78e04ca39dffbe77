//! The boundaries of time-bound grants (R35): when the clock passes the start or the end of a
//! grant period, the service commits an event saying so, so that the state of every replica
//! and every follower of the feed (portal-sync) moves at the same point of the sequence,
//! without any of them polling the clock.
//!
//! Every replica runs [`run`]: each [`BOUNDARY_TICK`] it looks at the earliest boundary of
//! each loaded organization (`OrgState::grant_boundaries`, one lookup) and, when one is due,
//! commits `role_assignment.became_effective` (SCHEDULED → ACTIVE) or
//! `role_assignment.became_ineffective` (ACTIVE → EXPIRED) through the ordinary write path,
//! as actor `system`. Two replicas racing for one boundary produce one event: the draft of the
//! one that loses the compare-and-set runs again on the caught-up state, finds the phase
//! already moved and commits nothing (`Core::mutate` answers an empty draft without a commit).

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::Core;
use super::commit::{Draft, Proof};
use super::sealed::Sealed;
use crate::domain::model::{Assignment, Entity, GrantPhase, Principal};
use crate::error::Error;

/// How often each replica looks for due boundaries. A grant starts counting at most about this
/// long after its start (checks compare the clock with the end, so an end needs no tick).
pub const BOUNDARY_TICK: Duration = Duration::from_millis(100);

/// The events' actor: the service itself.
pub const SYSTEM_ACTOR: &str = "system";

/// The proof the boundary events are written with: no caller asked for them, the clock did.
/// Only this module makes one.
#[derive(Debug)]
struct Clockwork;

impl Sealed for Clockwork {}

impl Proof for Clockwork {
    fn actor(&self) -> &str {
        SYSTEM_ACTOR
    }
}

/// The assignment after its next boundary, and the action saying so; `None` for a grant with
/// no boundary left.
fn advanced(a: &Assignment) -> Option<(&'static str, Assignment)> {
    let (action, phase) = match a.phase {
        GrantPhase::Scheduled => ("role_assignment.became_effective", GrantPhase::Active),
        GrantPhase::Active => ("role_assignment.became_ineffective", GrantPhase::Expired),
        GrantPhase::Expired => return None,
    };
    a.next_boundary()?;
    Some((action, Assignment { phase, ..a.clone() }))
}

/// Records every boundary due at the draft's time, earliest first: a grant whose start and end
/// both passed (the service was down) gets both events, in order. Returns how many.
fn pass_due_boundaries(d: &mut Draft<'_>) -> usize {
    let mut passed = 0;
    loop {
        let now = d.now;
        let st = d.state();
        let Some(&(due, principal, scope)) = st.grant_boundaries.first() else {
            return passed;
        };
        if due > now {
            return passed;
        }
        let before = st.assignments.get(&principal).and_then(|m| m.get(&scope));
        let Some((action, after)) = before.and_then(advanced) else {
            // An index entry without its assignment cannot happen (both change together);
            // stop rather than loop.
            return passed;
        };
        let before = before.cloned();
        let target = crate::auth::principal_name(st.org.id, principal);
        let affected = match principal {
            Principal::User(u) => vec![u],
            Principal::ServiceAccount(_) => Vec::new(),
        };
        d.change(
            action,
            target,
            before.map(Entity::Assignment),
            Some(Entity::Assignment(after)),
            affected,
        );
        passed += 1;
    }
}

impl Core {
    /// Commits the boundary events due now in every loaded organization; returns how many
    /// this replica committed (another replica may have committed some of them first).
    pub async fn pass_grant_boundaries(&self) -> Result<usize, Error> {
        let now = self.now();
        let mut committed = 0;
        let mut failure = None;
        for org in self.org_ids() {
            let Some(handle) = self.org_cached(org) else {
                continue;
            };
            let due = handle
                .read()
                .grant_boundaries
                .first()
                .is_some_and(|(t, ..)| *t <= now);
            if !due {
                continue;
            }
            match self.pass_org_boundaries(org).await {
                Ok(n) => committed += n,
                // One organization's failure does not hold the others back.
                Err(e) => failure = Some(e),
            }
        }
        failure.map_or(Ok(committed), Err)
    }

    async fn pass_org_boundaries(&self, org: Uuid) -> Result<usize, Error> {
        let done = self
            .mutate(&Clockwork, org, None, |d| Ok(pass_due_boundaries(d)))
            .await?;
        if done.value == 0 {
            // The draft ran again after catching up (or the follower was quicker).
            tracing::debug!(%org, "another replica committed these grant boundaries first");
        }
        Ok(done.value)
    }
}

/// The boundary task of a replica: every [`BOUNDARY_TICK`], [`Core::pass_grant_boundaries`],
/// until the server shuts down.
pub async fn run(core: Arc<Core>) {
    let mut closing = core.closing();
    let mut tick = tokio::time::interval(BOUNDARY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        match core.pass_grant_boundaries().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "grant periods started or ended"),
            Err(e) => tracing::warn!(error = %e, "cannot commit the boundaries of grant periods"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{GrantPeriod, ScopeKey};

    fn grant(phase: GrantPhase, start: Option<i64>, end: Option<i64>) -> Assignment {
        Assignment {
            principal: Principal::User(Uuid::nil()),
            scope: ScopeKey::Organization,
            role: "developer".into(),
            create_time: 0,
            period: Some(GrantPeriod { start, end }),
            phase,
        }
    }

    #[test]
    fn a_grant_moves_one_phase_per_boundary_and_stops_after_the_end() {
        let (action, a) = advanced(&grant(GrantPhase::Scheduled, Some(10), Some(20))).unwrap();
        assert_eq!(action, "role_assignment.became_effective");
        assert_eq!(a.phase, GrantPhase::Active);
        assert_eq!(a.next_boundary(), Some(20));
        let (action, a) = advanced(&a).unwrap();
        assert_eq!(action, "role_assignment.became_ineffective");
        assert_eq!(a.phase, GrantPhase::Expired);
        assert!(advanced(&a).is_none());
        // Without an end, nothing follows the start.
        assert!(advanced(&grant(GrantPhase::Active, Some(10), None)).is_none());
    }
}
