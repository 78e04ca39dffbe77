//! Team members: who sees whom, the list of the Team screen, edits and removal — and the
//! record-keeping every member rule shares (the next revision, audit events, the guarded write).
//!
//! Every write reads the member(s), computes the new state, and stores it with
//! [`MemberStore::apply`](crate::store::MemberStore::apply) against the revision it was computed
//! from, so a concurrent change makes the call ABORTED and writes nothing. Demoting or removing
//! a company admin also re-writes (unchanged but for its revision) one other company admin, so
//! two concurrent demotions cannot leave the company without any.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use uuid::Uuid;

use super::{Rules, now};
use crate::auth::levels::Need;
use crate::auth::proof::{Authorized, Entry};
use crate::convert;
use crate::domain::capabilities::Capability;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::{
    Access, CompanyPermission, Email, InfraKind, InfraPermission, Micros, NewEvent, Source,
    TeamMember, TeamRole,
};
use crate::domain::names;
use crate::error::{Error, LAST_COMPANY_ADMIN, ODC_MANAGED, Violations};
use crate::store::{MemberChange, StoreError};

/// An infrastructure permission asked for by a request, with its index in the request's list
/// (to name the field of a violation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedAccess {
    /// Index in the request's list.
    pub index: usize,
    /// The infrastructure (one of the company's).
    pub infrastructure: Uuid,
    /// The permission.
    pub permission: InfraPermission,
}

/// Filters of the member list.
#[derive(Debug, Clone, Default)]
pub struct MemberQuery {
    /// Only ACTIVE (`true`) or PENDING (`false`) members.
    pub active: Option<bool>,
    /// Only members with this company permission.
    pub company_permission: Option<CompanyPermission>,
    /// Only members with access to this infrastructure...
    pub infrastructure: Option<Uuid>,
    /// ...with this permission on it.
    pub infrastructure_permission: Option<InfraPermission>,
    /// Only members whose email sorts after this one.
    pub after: Option<String>,
    /// Page size.
    pub size: usize,
}

/// One page of members, by email.
#[derive(Debug)]
pub struct MemberPage<'a> {
    /// The members.
    pub members: Vec<&'a TeamMember>,
    /// The emails among them with a Community account.
    pub active: HashSet<Email>,
    /// Whether more members follow.
    pub more: bool,
}

/// A member edit (AIP-134: `None` leaves the field as it is).
#[derive(Debug, Clone)]
pub struct UpdateMember {
    /// The member.
    pub id: Uuid,
    /// The etag sent (empty: none).
    pub etag: String,
    /// New display name.
    pub display_name: Option<String>,
    /// New team role (anything but Security drops the phone).
    pub team_role: Option<TeamRole>,
    /// The new set of infrastructure permissions.
    pub access: Option<Vec<RequestedAccess>>,
}

/// The member with this id, or NOT_FOUND.
pub(super) fn target(facts: &CompanyFacts, company: Uuid, id: Uuid) -> Result<&TeamMember, Error> {
    facts
        .members
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| Error::NotFound(names::fmt::member(company, id)))
}

/// The member with this id, to a caller who may see them: themselves, company admins,
/// infrastructure admins of one of the member's infrastructures, and — for a company admin —
/// any infrastructure admin.
pub fn visible_member<'a>(
    entry: &Entry,
    facts: &'a CompanyFacts,
    company: Uuid,
    id: Uuid,
) -> Result<&'a TeamMember, Error> {
    let m = target(facts, company, id)?;
    entry.require(facts, &see_member(m))?;
    Ok(m)
}

/// Who may see a member.
fn see_member(target: &TeamMember) -> Need {
    let mut any = vec![Need::Is(target.email.clone()), Need::CompanyAdmin];
    any.extend(
        target
            .access
            .iter()
            .map(|a| Need::InfrastructureAdmin(a.infrastructure)),
    );
    if target.company_permission == CompanyPermission::Admin {
        any.push(Need::Capability(Capability::ManageUsers, None));
    }
    Need::Any(any)
}

/// A revision-only re-write of one company admin other than `except`: makes a concurrent
/// demotion or removal of that admin conflict with this one.
pub(super) fn guard_other_admin(facts: &CompanyFacts, except: Uuid) -> Option<MemberChange> {
    facts
        .members
        .iter()
        .find(|m| m.id != except && m.company_permission == CompanyPermission::Admin)
        .map(|m| MemberChange::Upsert {
            member: TeamMember {
                rev: m.rev + 1,
                ..m.clone()
            },
            expected_rev: Some(m.rev),
        })
}

/// Refuses to leave the company without a company admin.
pub(super) fn keep_an_admin(facts: &CompanyFacts) -> Result<(), Error> {
    let admins = facts
        .members
        .iter()
        .filter(|m| m.company_permission == CompanyPermission::Admin)
        .count();
    if admins <= 1 {
        return Err(Error::precondition(
            LAST_COMPANY_ADMIN,
            "the last company admin cannot be removed; make someone else company admin first",
        ));
    }
    Ok(())
}

/// The access entries of a member as written in audit details.
pub(super) fn access_json(company: Uuid, access: &[Access]) -> serde_json::Value {
    access
        .iter()
        .map(|a| {
            serde_json::json!({
                "infrastructure": names::fmt::infrastructure(company, a.infrastructure),
                "permission": convert::infra_permission(a.permission).as_str_name(),
                "source": match a.source { Source::Manual => "MANUAL", Source::Odc { .. } => "ODC" },
            })
        })
        .collect()
}

/// The audit event of a member rule.
pub(super) fn event(
    auth: &Authorized,
    action: &str,
    m: &TeamMember,
    detail: &serde_json::Value,
) -> NewEvent {
    NewEvent {
        actor: auth.actor().to_owned(),
        action: action.to_owned(),
        target: names::fmt::member(m.company, m.id),
        detail: detail.to_string(),
    }
}

/// The updated copy of `m` (next revision, `time`).
pub(super) fn next(m: &TeamMember, time: Micros) -> TeamMember {
    TeamMember {
        rev: m.rev + 1,
        update_time: time,
        ..m.clone()
    }
}

impl Rules {
    /// The emails among `members` that have a Community account.
    pub async fn active<'a>(
        &self,
        members: impl IntoIterator<Item = &'a TeamMember>,
    ) -> Result<HashSet<Email>, Error> {
        let emails: Vec<Email> = members.into_iter().map(|m| m.email.clone()).collect();
        if emails.is_empty() {
            return Ok(HashSet::new());
        }
        Ok(self
            .read()
            .community_accounts(&emails)
            .await?
            .into_iter()
            .collect())
    }

    /// Applies member changes and their events in one transaction.
    pub(super) async fn save(
        &self,
        auth: &Authorized,
        company: Uuid,
        changes: &[MemberChange],
        events: &[NewEvent],
        time: Micros,
    ) -> Result<(), Error> {
        self.write(auth)
            .store
            .apply(company, changes, events, None, time)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => crate::error::concurrent(),
                e => e.into(),
            })
    }

    /// Replaces one member (computed from `old`) and records `event`.
    pub(super) async fn save_member(
        &self,
        auth: &Authorized,
        old: &TeamMember,
        new: &TeamMember,
        extra: Option<MemberChange>,
        event: NewEvent,
        time: Micros,
    ) -> Result<(), Error> {
        let mut changes = vec![MemberChange::Upsert {
            member: new.clone(),
            expected_rev: Some(old.rev),
        }];
        changes.extend(extra);
        self.save(auth, old.company, &changes, &[event], time).await
    }

    /// The members the person acted for may see, filtered and paged by email.
    pub async fn list_members<'a>(
        &self,
        auth: &Authorized,
        facts: &'a CompanyFacts,
        q: &MemberQuery,
    ) -> Result<MemberPage<'a>, Error> {
        let viewer = auth
            .person()
            .ok_or_else(|| Error::Internal("no person".into()))?;
        let mut list: Vec<&TeamMember> = facts
            .members
            .iter()
            .filter(|m| facts.can_see_member(viewer, m))
            .filter(|m| {
                q.company_permission
                    .is_none_or(|p| m.company_permission == p)
            })
            .filter(|m| {
                q.infrastructure.is_none_or(|i| {
                    m.access.iter().any(|x| {
                        x.infrastructure == i
                            && q.infrastructure_permission
                                .is_none_or(|p| x.permission == p)
                    })
                })
            })
            .filter(|m| {
                q.after
                    .as_ref()
                    .is_none_or(|after| m.email.as_str() > after.as_str())
            })
            .collect();
        list.sort_by(|x, y| x.email.cmp(&y.email));
        let active = self.active(list.iter().copied()).await?;
        if let Some(s) = q.active {
            list.retain(|m| active.contains(&m.email) == s);
        }
        let more = list.len() > q.size;
        list.truncate(q.size);
        Ok(MemberPage {
            members: list,
            active,
            more,
        })
    }

    /// Edits a member's display name, team role and infrastructure permissions. Answers the
    /// member as it is after the call.
    pub async fn update_member(
        &self,
        entry: &Entry,
        facts: &CompanyFacts,
        company: Uuid,
        cmd: UpdateMember,
    ) -> Result<TeamMember, Error> {
        let old = target(facts, company, cmd.id)?;
        refuse_new_odc_access(facts, old, cmd.access.as_deref())?;
        let time = now();
        let (new, touched) = edited(old, &cmd, time);
        let profile_changed = new.display_name != old.display_name
            || new.team_role != old.team_role
            || new.phone != old.phone;
        let auth = entry.require(facts, &update_need(old, &new, &touched, profile_changed))?;
        if let Some(x) = old
            .access
            .iter()
            .find(|x| touched.contains(&x.infrastructure) && matches!(x.source, Source::Odc { .. }))
        {
            return Err(Error::precondition(
                ODC_MANAGED,
                format!(
                    "the permission on {} comes from ODC: manage it in the ODC Portal",
                    names::fmt::infrastructure(company, x.infrastructure)
                ),
            ));
        }
        if !cmd.etag.is_empty() && cmd.etag != old.rev.to_string() {
            return Err(Error::Aborted(
                "the etag does not match: the member changed; read it again".into(),
            ));
        }
        if touched.is_empty() && !profile_changed {
            return Ok(old.clone());
        }
        let detail = update_detail(company, old, &new, !touched.is_empty());
        let ev = event(&auth, "member.updated", &new, &detail);
        self.save_member(&auth, old, &new, None, ev, time).await?;
        Ok(new)
    }

    /// Removes a member (never one with permissions from ODC, never the last company admin).
    pub async fn remove_member(
        &self,
        entry: &Entry,
        facts: &CompanyFacts,
        company: Uuid,
        id: Uuid,
    ) -> Result<(), Error> {
        let old = target(facts, company, id)?;
        let is_admin = old.company_permission == CompanyPermission::Admin;
        let need = if is_admin {
            Need::CompanyAdmin
        } else {
            Need::Any(vec![
                Need::CompanyAdmin,
                Need::InfrastructureAdminOfEvery(
                    old.access.iter().map(|x| x.infrastructure).collect(),
                ),
            ])
        };
        let auth = entry.require(facts, &need)?;
        if let Some(x) = old
            .access
            .iter()
            .find(|x| matches!(x.source, Source::Odc { .. }))
        {
            return Err(Error::precondition(
                ODC_MANAGED,
                format!(
                    "the member has a permission on {} that comes from ODC: remove them in the \
                     ODC Portal",
                    names::fmt::infrastructure(company, x.infrastructure)
                ),
            ));
        }
        if is_admin {
            keep_an_admin(facts)?;
        }
        let mut changes = vec![MemberChange::Delete {
            company: old.company,
            id: old.id,
            expected_rev: old.rev,
        }];
        if is_admin {
            changes.extend(guard_other_admin(facts, old.id));
        }
        let ev = event(
            &auth,
            "member.removed",
            old,
            &serde_json::json!({ "email": old.email.as_str() }),
        );
        self.save(&auth, old.company, &changes, &[ev], now()).await
    }
}

/// New access entries on ODC infrastructures cannot be made here.
fn refuse_new_odc_access(
    facts: &CompanyFacts,
    old: &TeamMember,
    access: Option<&[RequestedAccess]>,
) -> Result<(), Error> {
    let mut v = Violations::new();
    for a in access.into_iter().flatten() {
        let odc = facts
            .infrastructure(a.infrastructure)
            .is_some_and(|x| x.kind == InfraKind::Odc);
        if odc
            && !old
                .access
                .iter()
                .any(|x| x.infrastructure == a.infrastructure)
        {
            v.add(
                format!("member.infrastructure_access[{}].infrastructure", a.index),
                "is an ODC infrastructure: its members are managed in the ODC Portal and \
                 synchronized here",
            );
        }
    }
    Ok(v.finish()?)
}

/// The edited member (next revision) and the infrastructures whose permission changes.
fn edited(old: &TeamMember, cmd: &UpdateMember, time: Micros) -> (TeamMember, BTreeSet<Uuid>) {
    let mut new = next(old, time);
    if let Some(d) = &cmd.display_name {
        new.display_name.clone_from(d);
    }
    if let Some(r) = cmd.team_role {
        new.team_role = r;
        if r != TeamRole::Security {
            new.phone = None;
        }
    }
    let mut touched: BTreeSet<Uuid> = BTreeSet::new();
    if let Some(access) = &cmd.access {
        let before: BTreeMap<Uuid, &Access> =
            old.access.iter().map(|x| (x.infrastructure, x)).collect();
        let after: BTreeMap<Uuid, InfraPermission> = access
            .iter()
            .map(|a| (a.infrastructure, a.permission))
            .collect();
        for i in before.keys().chain(after.keys()) {
            if before.get(i).map(|x| x.permission) != after.get(i).copied() {
                touched.insert(*i);
            }
        }
        new.access = after
            .iter()
            .map(|(i, p)| match before.get(i) {
                Some(x) if x.permission == *p => **x,
                _ => Access {
                    infrastructure: *i,
                    permission: *p,
                    source: Source::Manual,
                },
            })
            .collect();
    }
    (new, touched)
}

/// Who may edit a member: company admins; infrastructure admins for members who are not
/// company admins — of every infrastructure whose access changes, and of one of the member's
/// infrastructures for the rest.
fn update_need(
    old: &TeamMember,
    new: &TeamMember,
    touched: &BTreeSet<Uuid>,
    profile_changed: bool,
) -> Need {
    if old.company_permission == CompanyPermission::Admin {
        return Need::CompanyAdmin;
    }
    let mut all = Vec::new();
    if !touched.is_empty() {
        all.push(Need::InfrastructureAdminOfEvery(
            touched.iter().copied().collect(),
        ));
    }
    if profile_changed || touched.is_empty() {
        all.push(Need::Any(
            old.access
                .iter()
                .chain(new.access.iter())
                .map(|x| Need::InfrastructureAdmin(x.infrastructure))
                .collect(),
        ));
    }
    Need::Any(vec![Need::CompanyAdmin, Need::All(all)])
}

/// The audit detail of an edit: the fields that changed.
fn update_detail(
    company: Uuid,
    old: &TeamMember,
    new: &TeamMember,
    access_changed: bool,
) -> serde_json::Value {
    let mut changed = serde_json::Map::new();
    if new.display_name != old.display_name {
        changed.insert("display_name".into(), new.display_name.clone().into());
    }
    if new.team_role != old.team_role {
        changed.insert(
            "team_role".into(),
            convert::team_role(new.team_role).as_str_name().into(),
        );
    }
    if access_changed {
        changed.insert(
            "infrastructure_access".into(),
            access_json(company, &new.access),
        );
    }
    changed.into()
}
