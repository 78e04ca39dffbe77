//! Turns desired ODC records into member changes against the company's current members.
//!
//! Works on an in-memory copy of the members (with the revision each was read at), so that
//! several users' changes to one member fold into one upsert with the right expected revision.
//! Lookups are indexed (by email, and by infrastructure and identity user), so reconciling N
//! users costs O(N log N), not O(N × members).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::domain::mapping::Desired;
use crate::domain::model::{
    Access, CompanyPermission, Email, Micros, NewEvent, Source, TeamMember, TeamRole,
};
use crate::store::MemberChange;

/// The members of one company as last read, and what was changed since.
#[derive(Debug, Clone, Default)]
pub struct Members {
    company: Uuid,
    /// Current (possibly edited) members with the revision they were read at (None: new).
    by_id: BTreeMap<Uuid, (TeamMember, Option<u64>)>,
    /// Deleted members with the revision they were read at.
    deleted: BTreeMap<Uuid, u64>,
    by_email: HashMap<Email, Uuid>,
    /// The member holding each (infrastructure, identity user) ODC access.
    by_odc: HashMap<(Uuid, Uuid), Uuid>,
    touched: BTreeSet<Uuid>,
    events: Vec<NewEvent>,
}

/// The identity user of an ODC access.
fn odc_user(a: &Access) -> Option<Uuid> {
    match a.source {
        Source::Odc { identity_user } => Some(identity_user),
        Source::Manual => None,
    }
}

fn member_name(company: Uuid, id: Uuid) -> String {
    format!("companies/{company}/members/{id}")
}

impl Members {
    /// Wraps the members as read from the store.
    pub fn new(company: Uuid, members: Vec<TeamMember>) -> Self {
        let mut m = Self {
            company,
            ..Self::default()
        };
        for t in members {
            m.by_email.insert(t.email.clone(), t.id);
            for a in &t.access {
                if let Some(u) = odc_user(a) {
                    m.by_odc.insert((a.infrastructure, u), t.id);
                }
            }
            let rev = t.rev;
            m.by_id.insert(t.id, (t, Some(rev)));
        }
        m
    }

    /// Identity users that currently hold ODC access on `infra`.
    pub fn odc_users(&self, infra: Uuid) -> Vec<Uuid> {
        self.by_id
            .values()
            .flat_map(|(m, _)| m.access.iter())
            .filter(|a| a.infrastructure == infra)
            .filter_map(|a| match a.source {
                Source::Odc { identity_user } => Some(identity_user),
                Source::Manual => None,
            })
            .collect()
    }

    /// Makes `user`'s ODC access on `infra` match `desired` (None: no record).
    ///
    /// Display name (decision): the portal owns a member's display name once it has one. A
    /// member the sync creates takes the identity user's display name, and a member without
    /// one (created before the identity user had a name, or by an earlier version) gets it
    /// the next time the user is synced; a name set in the portal, or taken from identity
    /// before, is never overwritten.
    pub fn set(&mut self, infra: Uuid, user: Uuid, desired: Option<Desired>, now: Micros) {
        let target = Source::Odc {
            identity_user: user,
        };
        let current = self.by_odc.get(&(infra, user)).and_then(|id| {
            let (m, _) = self.by_id.get(id)?;
            m.access
                .iter()
                .position(|a| a.infrastructure == infra && a.source == target)
                .map(|i| (*id, i))
        });
        match (current, desired) {
            (None, None) => {}
            (Some((id, i)), None) => self.remove_access(infra, user, id, i, now),
            (Some((id, i)), Some(desired)) => self.change_access(infra, user, id, i, &desired, now),
            (None, Some(desired)) => self.grant_access(infra, user, desired, now),
        }
    }

    /// `user` lost its record on `infra`: the access entry `i` of member `id` goes, and the
    /// member too when the sync created it and nothing else holds it.
    ///
    /// Security contact (decision): a member the sync created exists only because of its ODC
    /// access, so it goes with its last ODC access (deleted or deactivated identity user, role
    /// lost) also when it was made the security contact: a person without any access to the
    /// company's infrastructures must not keep receiving its security communications. The
    /// audit trail says so (`security_contact.removed_by_sync`), for an admin to name a new
    /// one. A member the portal created, or a company admin, stays as they are.
    fn remove_access(&mut self, infra: Uuid, user: Uuid, id: Uuid, i: usize, now: Micros) {
        let Some((m, _)) = self.by_id.get_mut(&id) else {
            return;
        };
        m.access.remove(i);
        self.by_odc.remove(&(infra, user));
        let remove_member = m.created_by_sync
            && m.access.is_empty()
            && m.company_permission == CompanyPermission::Member;
        let was_security_contact = m.team_role == TeamRole::Security || m.phone.is_some();
        let name = member_name(self.company, id);
        if remove_member {
            if let Some((gone, rev)) = self.by_id.remove(&id) {
                self.by_email.remove(&gone.email);
                if let Some(rev) = rev {
                    self.deleted.insert(id, rev);
                }
            }
            self.touched.remove(&id);
            if was_security_contact {
                self.event(
                    "security_contact.removed_by_sync",
                    name.clone(),
                    format!(
                        "identity user {user}, the security contact, no longer has a Customer \
                         Portal record: set a new security contact"
                    ),
                );
            }
            self.event(
                "member.removed_by_sync",
                name,
                format!("identity user {user} no longer has a Customer Portal record"),
            );
        } else {
            self.touch(id, now);
            self.event(
                "odc_access.removed",
                name,
                format!("identity user {user} on infrastructure {infra}"),
            );
        }
    }

    /// `user` keeps a record on `infra`, maybe at another level.
    fn change_access(
        &mut self,
        infra: Uuid,
        user: Uuid,
        id: Uuid,
        i: usize,
        desired: &Desired,
        now: Micros,
    ) {
        let level = desired.permission;
        self.fill_display_name(id, user, &desired.display_name, now);
        let Some((m, _)) = self.by_id.get_mut(&id) else {
            return;
        };
        if m.access[i].permission != level {
            m.access[i].permission = level;
            self.touch(id, now);
            self.event(
                "odc_access.changed",
                member_name(self.company, id),
                format!("identity user {user}: {level:?} on infrastructure {infra}"),
            );
        }
    }

    /// `user` gets a record on `infra`: on the member with that email, or a new member.
    fn grant_access(&mut self, infra: Uuid, user: Uuid, desired: Desired, now: Micros) {
        let Desired {
            email,
            permission: level,
            display_name,
        } = desired;
        let access = Access {
            infrastructure: infra,
            permission: level,
            source: Source::Odc {
                identity_user: user,
            },
        };
        let existing = self.by_email.get(&email).copied();
        let id = if let Some((id, (m, _))) =
            existing.and_then(|id| self.by_id.get_mut(&id).map(|x| (id, x)))
        {
            // One entry per infrastructure: an ODC record replaces what was there.
            for a in m.access.iter().filter(|a| a.infrastructure == infra) {
                if let Some(old) = odc_user(a) {
                    self.by_odc.remove(&(infra, old));
                }
            }
            m.access.retain(|a| a.infrastructure != infra);
            m.access.push(access);
            m.access.sort_by_key(|a| a.infrastructure);
            self.fill_display_name(id, user, &display_name, now);
            id
        } else {
            let id = Uuid::now_v7();
            let m = TeamMember {
                id,
                company: self.company,
                email: email.clone(),
                display_name,
                team_role: TeamRole::Other,
                company_permission: CompanyPermission::Member,
                access: vec![access],
                phone: None,
                lifetime_username: None,
                development_permissions: false,
                created_by_sync: true,
                create_time: now,
                update_time: now,
                rev: 0,
            };
            self.by_email.insert(email, id);
            self.by_id.insert(id, (m, None));
            id
        };
        self.by_odc.insert((infra, user), id);
        self.touch(id, now);
        self.event(
            "odc_access.granted",
            member_name(self.company, id),
            format!("identity user {user}: {level:?} on infrastructure {infra}"),
        );
    }

    /// Gives member `id` identity user `user`'s display name if the member has none.
    fn fill_display_name(&mut self, id: Uuid, user: Uuid, name: &str, now: Micros) {
        let Some((m, _)) = self.by_id.get_mut(&id) else {
            return;
        };
        if !m.display_name.is_empty() || name.is_empty() {
            return;
        }
        name.clone_into(&mut m.display_name);
        self.touch(id, now);
        self.event(
            "member.display_name_synced",
            member_name(self.company, id),
            format!("display name of identity user {user}"),
        );
    }

    fn touch(&mut self, id: Uuid, now: Micros) {
        if let Some((m, _)) = self.by_id.get_mut(&id) {
            m.update_time = now;
        }
        self.touched.insert(id);
    }

    fn event(&mut self, action: &str, target: String, detail: String) {
        self.events.push(NewEvent {
            actor: "sync".into(),
            action: action.into(),
            target,
            detail,
        });
    }

    /// The changes and events made since the last call, ready for `PortalStore::apply`; the
    /// members are then taken as stored (revisions advanced).
    ///
    /// Deletions come first (they free emails that new members may take), then updates, then
    /// new members: updates never change an email here, and new members take only emails no
    /// remaining member has, so this order is valid whatever order the changes were made in,
    /// and it gives the store long runs of one kind of change to write in multi-row
    /// statements.
    pub fn take_changes(&mut self) -> (Vec<MemberChange>, Vec<NewEvent>) {
        let mut changes = Vec::with_capacity(self.deleted.len() + self.touched.len());
        for (id, rev) in std::mem::take(&mut self.deleted) {
            changes.push(MemberChange::Delete {
                company: self.company,
                id,
                expected_rev: rev,
            });
        }
        let mut inserts = Vec::new();
        for id in std::mem::take(&mut self.touched) {
            if let Some((m, rev)) = self.by_id.get_mut(&id) {
                m.rev = rev.map_or(1, |r| r + 1);
                let change = MemberChange::Upsert {
                    member: m.clone(),
                    expected_rev: *rev,
                };
                if rev.is_some() {
                    changes.push(change);
                } else {
                    inserts.push(change);
                }
                *rev = Some(m.rev);
            }
        }
        changes.append(&mut inserts);
        (changes, std::mem::take(&mut self.events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::InfraPermission;

    fn desired(email: &str, name: &str) -> Desired {
        Desired {
            email: Email::parse(email).unwrap(),
            permission: InfraPermission::Member,
            display_name: name.into(),
        }
    }

    fn upserted(changes: &[MemberChange]) -> Vec<&TeamMember> {
        changes
            .iter()
            .filter_map(|c| match c {
                MemberChange::Upsert { member, .. } => Some(member),
                MemberChange::Delete { .. } => None,
            })
            .collect()
    }

    /// Stored members as the store would return them after `changes` (revisions advanced).
    fn stored(changes: &[MemberChange]) -> Vec<TeamMember> {
        upserted(changes).into_iter().cloned().collect()
    }

    #[test]
    fn a_synced_security_contact_goes_with_its_last_odc_access() {
        let (company, infra, user) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut members = Members::new(company, Vec::new());
        members.set(infra, user, Some(desired("sec@x.com", "Sec")), 1);
        let (changes, _) = members.take_changes();
        let mut contact = stored(&changes);
        contact[0].team_role = TeamRole::Security;
        contact[0].phone = Some("+351210000000".into());

        // The identity user is deleted: the record, and with it the security contact, goes.
        let mut members = Members::new(company, contact.clone());
        members.set(infra, user, None, 2);
        let (changes, events) = members.take_changes();
        assert!(
            matches!(changes.as_slice(), [MemberChange::Delete { id, .. }] if *id == contact[0].id),
            "{changes:?}"
        );
        let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["security_contact.removed_by_sync", "member.removed_by_sync"]
        );

        // A company admin who is the security contact stays, without the ODC access.
        contact[0].company_permission = CompanyPermission::Admin;
        let mut members = Members::new(company, contact);
        members.set(infra, user, None, 3);
        let (changes, events) = members.take_changes();
        let kept = upserted(&changes);
        assert!(kept.len() == 1 && kept[0].access.is_empty() && kept[0].phone.is_some());
        assert_eq!(events[0].action, "odc_access.removed");
    }

    #[test]
    fn a_synced_member_takes_the_identity_display_name_and_keeps_the_portal_one() {
        let (company, infra, user) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());

        // Created by the sync: the identity user's name.
        let mut members = Members::new(company, Vec::new());
        members.set(infra, user, Some(desired("ada@x.com", "Ada Lovelace")), 1);
        let (changes, _) = members.take_changes();
        assert_eq!(upserted(&changes)[0].display_name, "Ada Lovelace");

        // Unchanged identity data: nothing to write.
        let mut members = Members::new(company, stored(&changes));
        members.set(infra, user, Some(desired("ada@x.com", "Ada Lovelace")), 2);
        assert!(members.take_changes().0.is_empty());

        // Renamed in identity: the portal's name stays.
        members.set(infra, user, Some(desired("ada@x.com", "Ada King")), 3);
        assert!(members.take_changes().0.is_empty());

        // A member without a name (an older sync) gets it once, with an event.
        let mut nameless = stored(&changes);
        nameless[0].display_name.clear();
        let mut members = Members::new(company, nameless);
        members.set(infra, user, Some(desired("ada@x.com", "Ada King")), 4);
        let (changes, events) = members.take_changes();
        assert_eq!(upserted(&changes)[0].display_name, "Ada King");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "member.display_name_synced");

        // A member who already exists in the portal by email, with a name: it stays.
        let mut manual = stored(&changes);
        manual[0].display_name = "A. K.".into();
        manual[0].access.clear();
        let mut members = Members::new(company, manual);
        members.set(infra, user, Some(desired("ada@x.com", "Ada King")), 5);
        let (changes, _) = members.take_changes();
        assert_eq!(upserted(&changes)[0].display_name, "A. K.");
        assert_eq!(upserted(&changes)[0].access.len(), 1);
    }
}
