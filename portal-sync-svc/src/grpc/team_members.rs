//! `portal.v1.TeamMembers`: the Team screen — list, add (the O11 flow), edit, remove, company
//! admins and the security contact.
//!
//! Every write reads the member(s), computes the new state, and stores it with
//! [`PortalStore::apply`](crate::store::PortalStore::apply) against the revision it was computed
//! from, so a concurrent change makes the call ABORTED and writes nothing. Demoting or removing
//! a company admin also re-writes (unchanged but for its revision) one other company admin, so
//! two concurrent demotions cannot leave the company without any.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use shared::proto::portal::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::error::{LAST_COMPANY_ADMIN, MEMBER_EXISTS, ODC_MANAGED};
use super::{
    Api, Error, Violations, check_company_name, convert, infrastructure_ref, mask_paths, names,
    now, optional_text, page_cursor, page_size, page_token,
};
use crate::auth::{Authorized, Need};
use crate::domain::capabilities::CompanyFacts;
use crate::domain::model::{
    Access, CompanyPermission, Email, InfraKind, InfraPermission, Infrastructure, Micros, NewEvent,
    Source, TeamMember, TeamRole,
};
use crate::store::{MemberChange, StoreError};

/// Longest display name.
const MAX_NAME: usize = 100;

/// The audit actor of development-permission grants (the LifeTime service user, R75).
pub const DEVELOPMENT_PERMISSIONS_ACTOR: &str = "Administrator";

/// Cursor of `ListTeamMembers`: the last email, and the filters it was made for.
#[derive(Debug, Serialize, Deserialize)]
struct MemberCursor {
    after: String,
    filter: String,
}

/// Checks a security-contact phone: `+` then 6 to 20 digits, spaces or dashes, starting and
/// ending with a digit. Returns it trimmed.
pub fn parse_phone(raw: &str) -> Result<String, &'static str> {
    let p = raw.trim();
    if p.is_empty() {
        return Err("is required");
    }
    let rest = p
        .strip_prefix('+')
        .ok_or("must start with + and the country code")?;
    let n = rest.chars().count();
    let ok = (6..=20).contains(&n)
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        && rest.starts_with(|c: char| c.is_ascii_digit())
        && rest.ends_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(p.to_owned())
    } else {
        Err("must be + followed by 6 to 20 digits, spaces or dashes, e.g. +351 912 345 678")
    }
}

/// The infrastructure permissions of a request: (index, infrastructure, permission), each
/// infrastructure at most once. Bad entries are recorded as violations of
/// `{field}[{index}].infrastructure` / `.permission`.
fn parse_access(
    v: &mut Violations,
    field: &str,
    company: Uuid,
    facts: &CompanyFacts,
    list: &[pb::InfrastructureAccess],
) -> Vec<(usize, Uuid, InfraPermission)> {
    let mut out: Vec<(usize, Uuid, InfraPermission)> = Vec::new();
    for (idx, a) in list.iter().enumerate() {
        let infra = v.check(
            &format!("{field}[{idx}].infrastructure"),
            infrastructure_ref(facts, company, &a.infrastructure),
        );
        let permission = match convert::parse_infra_permission(a.permission) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                v.add(
                    format!("{field}[{idx}].permission"),
                    "is required (INFRASTRUCTURE_MEMBER or INFRASTRUCTURE_ADMIN)",
                );
                None
            }
            Err(e) => {
                v.add(format!("{field}[{idx}].permission"), e);
                None
            }
        };
        if let Some(i) = infra {
            if out.iter().any(|(_, o, _)| *o == i) {
                v.add(
                    format!("{field}[{idx}].infrastructure"),
                    "is named more than once",
                );
            } else if let Some(p) = permission {
                out.push((idx, i, p));
            }
        }
    }
    out
}

/// The member named by `name` (of this company), or NOT_FOUND.
fn target<'a>(
    facts: &'a CompanyFacts,
    company: Uuid,
    field: &str,
    name: &str,
) -> Result<&'a TeamMember, Error> {
    let (c, id) = names::member(name)
        .filter(|(c, _)| *c == company)
        .ok_or_else(|| Error::field(field, "must be companies/{company}/members/{member}"))?;
    facts
        .members
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| Error::NotFound(names::fmt::member(c, id)))
}

/// Who may see a member: themselves, company admins, infrastructure admins of one of the
/// member's infrastructures, and — for a company admin — any infrastructure admin.
fn see_member(target: &TeamMember) -> Need {
    let mut any = vec![Need::Is(target.email.clone()), Need::CompanyAdmin];
    any.extend(
        target
            .access
            .iter()
            .map(|a| Need::InfrastructureAdmin(a.infrastructure)),
    );
    if target.company_permission == CompanyPermission::Admin {
        any.push(Need::Capability(
            crate::domain::capabilities::Capability::ManageUsers,
            None,
        ));
    }
    Need::Any(any)
}

/// A revision-only re-write of one company admin other than `except`: makes a concurrent
/// demotion or removal of that admin conflict with this one.
fn guard_other_admin(facts: &CompanyFacts, except: Uuid) -> Option<MemberChange> {
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

fn admin_count(facts: &CompanyFacts) -> usize {
    facts
        .members
        .iter()
        .filter(|m| m.company_permission == CompanyPermission::Admin)
        .count()
}

fn access_json(company: Uuid, access: &[Access]) -> serde_json::Value {
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

fn event(auth: &Authorized, action: &str, m: &TeamMember, detail: &serde_json::Value) -> NewEvent {
    NewEvent {
        actor: auth.actor().to_owned(),
        action: action.to_owned(),
        target: names::fmt::member(m.company, m.id),
        detail: detail.to_string(),
    }
}

/// The updated copy of `m` (next revision, `time`).
fn next(m: &TeamMember, time: Micros) -> TeamMember {
    TeamMember {
        rev: m.rev + 1,
        update_time: time,
        ..m.clone()
    }
}

impl Api {
    /// The emails among `members` that have a Community account.
    async fn active<'a>(
        &self,
        members: impl IntoIterator<Item = &'a TeamMember>,
    ) -> Result<HashSet<Email>, Error> {
        let emails: Vec<Email> = members.into_iter().map(|m| m.email.clone()).collect();
        if emails.is_empty() {
            return Ok(HashSet::new());
        }
        Ok(self
            .data
            .read()
            .community_accounts(&emails)
            .await?
            .into_iter()
            .collect())
    }

    /// A member as answered, with its status.
    async fn reply(
        &self,
        m: &TeamMember,
        infrastructures: &[Infrastructure],
    ) -> Result<Response<pb::TeamMember>, Status> {
        let active = self.active([m]).await?;
        Ok(Response::new(convert::member(
            m,
            infrastructures,
            active.contains(&m.email),
        )))
    }

    /// Applies member changes and their events in one transaction.
    async fn save(
        &self,
        auth: &Authorized,
        company: Uuid,
        changes: &[MemberChange],
        events: &[NewEvent],
        time: Micros,
    ) -> Result<(), Error> {
        self.data
            .write(auth)
            .store()
            .apply(company, changes, events, None, time)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::concurrent(),
                e => e.into(),
            })
    }

    /// Replaces one member (computed from `old`) and records `event`.
    async fn save_member(
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
}

fn facts_of(f: Option<&CompanyFacts>) -> Result<&CompanyFacts, Error> {
    f.ok_or_else(|| Error::Internal("company records not loaded for a person call".into()))
}

#[tonic::async_trait]
impl pb::team_members_server::TeamMembers for Api {
    async fn list_team_members(
        &self,
        request: Request<pb::ListTeamMembersRequest>,
    ) -> Result<Response<pb::ListTeamMembersResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/ListTeamMembers"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let req = &a.req;
        let company = a.company.id;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &req.parent, company);
        let status = match pb::MemberStatus::try_from(req.status) {
            Ok(pb::MemberStatus::Unspecified) => None,
            Ok(pb::MemberStatus::Active) => Some(true),
            Ok(pb::MemberStatus::Pending) => Some(false),
            Err(_) => {
                v.add("status", "is not a known member status");
                None
            }
        };
        let company_permission = v
            .check(
                "company_permission",
                convert::parse_company_permission(req.company_permission),
            )
            .flatten();
        let infrastructure = if req.infrastructure.is_empty() {
            None
        } else {
            v.check(
                "infrastructure",
                infrastructure_ref(facts, company, &req.infrastructure),
            )
        };
        let infra_permission = v
            .check(
                "infrastructure_permission",
                convert::parse_infra_permission(req.infrastructure_permission),
            )
            .flatten();
        if infra_permission.is_some() && req.infrastructure.is_empty() {
            v.add(
                "infrastructure_permission",
                "filters the permission on `infrastructure`, which is then required",
            );
        }
        let size = page_size(&mut v, "page_size", req.page_size);
        let filter = format!(
            "{}|{}|{}|{}",
            req.status, req.company_permission, req.infrastructure, req.infrastructure_permission
        );
        let cursor: Option<MemberCursor> = page_cursor(&mut v, "page_token", &req.page_token);
        if cursor.as_ref().is_some_and(|c| c.filter != filter) {
            v.add("page_token", "was made for other filters");
        }
        v.finish()?;
        let auth = a.entry.authorized()?;
        let viewer = auth
            .person()
            .ok_or_else(|| Error::Internal("no person".into()))?;

        let mut list: Vec<&TeamMember> = facts
            .members
            .iter()
            .filter(|m| facts.can_see_member(viewer, m))
            .filter(|m| company_permission.is_none_or(|p| m.company_permission == p))
            .filter(|m| {
                infrastructure.is_none_or(|i| {
                    m.access.iter().any(|x| {
                        x.infrastructure == i && infra_permission.is_none_or(|p| x.permission == p)
                    })
                })
            })
            .filter(|m| {
                cursor
                    .as_ref()
                    .is_none_or(|c| m.email.as_str() > c.after.as_str())
            })
            .collect();
        list.sort_by(|x, y| x.email.cmp(&y.email));
        let active = self.active(list.iter().copied()).await?;
        if let Some(s) = status {
            list.retain(|m| active.contains(&m.email) == s);
        }
        let more = list.len() > size;
        list.truncate(size);
        let next_page_token = match (more, list.last()) {
            (true, Some(last)) => page_token(&MemberCursor {
                after: last.email.as_str().to_owned(),
                filter,
            })?,
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTeamMembersResponse {
            members: convert::members(list, &facts.infrastructures, &active),
            next_page_token,
        }))
    }

    async fn get_team_member(
        &self,
        request: Request<pb::GetTeamMemberRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(request, method!("TeamMembers/GetTeamMember"), "name", |r| {
                &r.name
            })
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let m = target(facts, a.company.id, "name", &a.req.name)?;
        a.entry.require(facts, &see_member(m))?;
        self.reply(m, &facts.infrastructures).await
    }

    async fn add_team_member(
        &self,
        request: Request<pb::AddTeamMemberRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/AddTeamMember"),
                "parent",
                |r| &r.parent,
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let req = &a.req;
        let company = a.company.id;
        let mut v = Violations::new();
        check_company_name(&mut v, "parent", &req.parent, company);
        let email = v.check("email", Email::parse(&req.email));
        let display_name = optional_text(&mut v, "display_name", &req.display_name, MAX_NAME);
        let team_role = v.check("team_role", convert::parse_team_role(req.team_role));
        let company_permission = match convert::parse_company_permission(req.company_permission) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                v.add("company_permission", "is required (MEMBER or ADMIN)");
                None
            }
            Err(e) => {
                v.add("company_permission", e);
                None
            }
        };
        let access = parse_access(
            &mut v,
            "infrastructure_access",
            company,
            facts,
            &req.infrastructure_access,
        );
        let kind_of = |i: Uuid| facts.infrastructure(i).map(|x| x.kind);
        for (idx, i, _) in &access {
            if kind_of(*i) == Some(InfraKind::Odc) {
                v.add(
                    format!("infrastructure_access[{idx}].infrastructure"),
                    "is an ODC infrastructure: its members are managed in the ODC Portal and \
                     synchronized here",
                );
            }
        }
        if req.invite_to_lifetime {
            if req.infrastructure_access.is_empty() {
                v.add(
                    "invite_to_lifetime",
                    "needs at least one O11 Cloud or hybrid infrastructure in \
                     infrastructure_access",
                );
            } else if access.iter().any(|(_, i, _)| {
                !matches!(
                    kind_of(*i),
                    Some(InfraKind::O11Cloud | InfraKind::O11Hybrid)
                )
            }) {
                v.add(
                    "invite_to_lifetime",
                    "is only possible for O11 Cloud and hybrid infrastructures (not Sentry, \
                     self-managed or ODC)",
                );
            }
        }
        v.finish()?;
        let (Some(email), Some(team_role), Some(company_permission)) =
            (email, team_role, company_permission)
        else {
            return Err(Error::Internal("unreachable: fields checked".into()).into());
        };

        let infras: Vec<Uuid> = access.iter().map(|(_, i, _)| *i).collect();
        let need = if company_permission == CompanyPermission::Admin || infras.is_empty() {
            Need::CompanyAdmin
        } else {
            Need::Any(vec![
                Need::CompanyAdmin,
                Need::InfrastructureAdminOfEvery(infras),
            ])
        };
        let auth = a.entry.require(facts, &need)?;
        if let Some(existing) = facts.member(&email) {
            return Err(Error::AlreadyExists {
                reason: MEMBER_EXISTS,
                message: format!(
                    "{email} is already a team member: {}",
                    names::fmt::member(company, existing.id)
                ),
            }
            .into());
        }

        let time = now();
        let mut access: Vec<Access> = access
            .iter()
            .map(|(_, i, p)| Access {
                infrastructure: *i,
                permission: *p,
                source: Source::Manual,
            })
            .collect();
        access.sort_by_key(|a| a.infrastructure);
        let member = TeamMember {
            id: Uuid::now_v7(),
            company,
            email: email.clone(),
            display_name,
            team_role,
            company_permission,
            access,
            phone: None,
            lifetime_username: req.invite_to_lifetime.then(|| email.as_str().to_owned()),
            development_permissions: req.grant_development_permissions,
            created_by_sync: false,
            create_time: time,
            update_time: time,
            rev: 1,
        };
        let mut events = vec![event(
            &auth,
            "member.added",
            &member,
            &serde_json::json!({
                "email": member.email.as_str(),
                "team_role": convert::team_role(team_role).as_str_name(),
                "company_permission": convert::company_permission(company_permission).as_str_name(),
                "infrastructure_access": access_json(company, &member.access),
                "invite_to_lifetime": req.invite_to_lifetime,
                "lifetime_username": member.lifetime_username,
            }),
        )];
        if req.grant_development_permissions {
            events.push(NewEvent {
                actor: DEVELOPMENT_PERMISSIONS_ACTOR.to_owned(),
                action: "development_permissions.granted".into(),
                target: names::fmt::member(company, member.id),
                detail: serde_json::json!({
                    "email": member.email.as_str(),
                    "infrastructures": member
                        .access
                        .iter()
                        .map(|a| names::fmt::infrastructure(company, a.infrastructure))
                        .collect::<Vec<_>>(),
                })
                .to_string(),
            });
        }
        let changes = [MemberChange::Upsert {
            member: member.clone(),
            expected_rev: None,
        }];
        match self.save(&auth, company, &changes, &events, time).await {
            Ok(()) => {}
            // The only conflict of a pure insert: the email was taken meanwhile.
            Err(Error::Aborted(_)) => {
                return Err(Error::AlreadyExists {
                    reason: MEMBER_EXISTS,
                    message: format!("{email} is already a team member"),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        }
        self.reply(&member, &facts.infrastructures).await
    }

    async fn update_team_member(
        &self,
        request: Request<pb::UpdateTeamMemberRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/UpdateTeamMember"),
                "member.name",
                |r| r.member.as_ref().map_or("", |m| m.name.as_str()),
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let company = a.company.id;
        let m = a.req.member.clone().unwrap_or_default();
        let mut v = Violations::new();
        if a.req.grant_development_permissions {
            v.add(
                "grant_development_permissions",
                "development permissions can be granted only when adding a member",
            );
        }
        if names::member(&m.name).is_none() {
            v.add(
                "member.name",
                "must be companies/{company}/members/{member}",
            );
        }
        let paths = mask_paths(
            &mut v,
            a.req.update_mask.as_ref(),
            &["display_name", "team_role", "infrastructure_access"],
        );
        let has = |p: &str| paths.iter().any(|x| x == p);
        let display_name = has("display_name")
            .then(|| optional_text(&mut v, "member.display_name", &m.display_name, MAX_NAME));
        let team_role = if has("team_role") {
            v.check("member.team_role", convert::parse_team_role(m.team_role))
        } else {
            None
        };
        let access = has("infrastructure_access").then(|| {
            parse_access(
                &mut v,
                "member.infrastructure_access",
                company,
                facts,
                &m.infrastructure_access,
            )
        });
        v.finish()?;
        let old = target(facts, company, "member.name", &m.name)?;

        // New access entries on ODC infrastructures cannot be made here.
        let mut v = Violations::new();
        for (idx, i, _) in access.iter().flatten() {
            let odc = facts
                .infrastructure(*i)
                .is_some_and(|x| x.kind == InfraKind::Odc);
            if odc && !old.access.iter().any(|x| x.infrastructure == *i) {
                v.add(
                    format!("member.infrastructure_access[{idx}].infrastructure"),
                    "is an ODC infrastructure: its members are managed in the ODC Portal and \
                     synchronized here",
                );
            }
        }
        v.finish()?;

        let time = now();
        let mut new = next(old, time);
        if let Some(d) = display_name {
            new.display_name = d;
        }
        if let Some(r) = team_role {
            new.team_role = r;
            if r != TeamRole::Security {
                new.phone = None;
            }
        }
        let mut touched: BTreeSet<Uuid> = BTreeSet::new();
        if let Some(access) = &access {
            let before: BTreeMap<Uuid, &Access> =
                old.access.iter().map(|x| (x.infrastructure, x)).collect();
            let after: BTreeMap<Uuid, InfraPermission> =
                access.iter().map(|(_, i, p)| (*i, *p)).collect();
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
        let profile_changed = new.display_name != old.display_name
            || new.team_role != old.team_role
            || new.phone != old.phone;

        // Who may: company admins; infrastructure admins for members who are not company
        // admins — of every infrastructure whose access changes, and of one of the member's
        // infrastructures for the rest.
        let need = if old.company_permission == CompanyPermission::Admin {
            Need::CompanyAdmin
        } else {
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
        };
        let auth = a.entry.require(facts, &need)?;

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
            )
            .into());
        }
        if !m.etag.is_empty() && m.etag != old.rev.to_string() {
            return Err(Error::Aborted(
                "the etag does not match: the member changed; read it again".into(),
            )
            .into());
        }
        if touched.is_empty() && !profile_changed {
            return self.reply(old, &facts.infrastructures).await;
        }
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
        if !touched.is_empty() {
            changed.insert(
                "infrastructure_access".into(),
                access_json(company, &new.access),
            );
        }
        let ev = event(&auth, "member.updated", &new, &changed.into());
        self.save_member(&auth, old, &new, None, ev, time).await?;
        self.reply(&new, &facts.infrastructures).await
    }

    async fn remove_team_member(
        &self,
        request: Request<pb::RemoveTeamMemberRequest>,
    ) -> Result<Response<pb::RemoveTeamMemberResponse>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/RemoveTeamMember"),
                "name",
                |r| &r.name,
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let old = target(facts, a.company.id, "name", &a.req.name)?;
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
        let auth = a.entry.require(facts, &need)?;
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
                    names::fmt::infrastructure(a.company.id, x.infrastructure)
                ),
            )
            .into());
        }
        if is_admin && admin_count(facts) <= 1 {
            return Err(Error::precondition(
                LAST_COMPANY_ADMIN,
                "the last company admin cannot be removed; make someone else company admin first",
            )
            .into());
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
        self.save(&auth, old.company, &changes, &[ev], now())
            .await?;
        Ok(Response::new(pb::RemoveTeamMemberResponse {}))
    }

    async fn assign_company_admin(
        &self,
        request: Request<pb::AssignCompanyAdminRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/AssignCompanyAdmin"),
                "name",
                |r| &r.name,
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let old = target(facts, a.company.id, "name", &a.req.name)?;
        let auth = a.entry.authorized()?;
        if old.company_permission == CompanyPermission::Admin {
            return self.reply(old, &facts.infrastructures).await;
        }
        let time = now();
        let new = TeamMember {
            company_permission: CompanyPermission::Admin,
            ..next(old, time)
        };
        let ev = event(
            &auth,
            "company_admin.assigned",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        self.save_member(&auth, old, &new, None, ev, time).await?;
        self.reply(&new, &facts.infrastructures).await
    }

    async fn remove_company_admin(
        &self,
        request: Request<pb::RemoveCompanyAdminRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/RemoveCompanyAdmin"),
                "name",
                |r| &r.name,
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let old = target(facts, a.company.id, "name", &a.req.name)?;
        let auth = a.entry.authorized()?;
        if old.company_permission != CompanyPermission::Admin {
            return self.reply(old, &facts.infrastructures).await;
        }
        if admin_count(facts) <= 1 {
            return Err(Error::precondition(
                LAST_COMPANY_ADMIN,
                "the last company admin cannot be removed; make someone else company admin first",
            )
            .into());
        }
        let time = now();
        let new = TeamMember {
            company_permission: CompanyPermission::Member,
            ..next(old, time)
        };
        let ev = event(
            &auth,
            "company_admin.removed",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        let guard = guard_other_admin(facts, old.id);
        self.save_member(&auth, old, &new, guard, ev, time).await?;
        self.reply(&new, &facts.infrastructures).await
    }

    async fn set_security_contact(
        &self,
        request: Request<pb::SetSecurityContactRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/SetSecurityContact"),
                "name",
                |r| &r.name,
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let mut v = Violations::new();
        if names::member(&a.req.name).is_none() {
            v.add("name", "must be companies/{company}/members/{member}");
        }
        let phone = v.check("phone", parse_phone(&a.req.phone));
        v.finish()?;
        let old = target(facts, a.company.id, "name", &a.req.name)?;
        let auth = a.entry.authorized()?;
        if old.team_role == TeamRole::Security && old.phone == phone {
            return self.reply(old, &facts.infrastructures).await;
        }
        let time = now();
        let new = TeamMember {
            team_role: TeamRole::Security,
            phone,
            ..next(old, time)
        };
        let ev = event(
            &auth,
            "security_contact.set",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        self.save_member(&auth, old, &new, None, ev, time).await?;
        self.reply(&new, &facts.infrastructures).await
    }

    async fn clear_security_contact(
        &self,
        request: Request<pb::ClearSecurityContactRequest>,
    ) -> Result<Response<pb::TeamMember>, Status> {
        let a = self
            .enter(
                request,
                method!("TeamMembers/ClearSecurityContact"),
                "name",
                |r| &r.name,
            )
            .await?;
        let facts = facts_of(a.facts.as_ref())?;
        let old = target(facts, a.company.id, "name", &a.req.name)?;
        let auth = a.entry.authorized()?;
        if old.team_role != TeamRole::Security && old.phone.is_none() {
            return self.reply(old, &facts.infrastructures).await;
        }
        let time = now();
        let new = TeamMember {
            team_role: TeamRole::Other,
            phone: None,
            ..next(old, time)
        };
        let ev = event(
            &auth,
            "security_contact.cleared",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        self.save_member(&auth, old, &new, None, ev, time).await?;
        self.reply(&new, &facts.infrastructures).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        for ok in [
            "+351912345678",
            "+351 912 345 678",
            "+1-202-555-0100",
            " +123456 ",
        ] {
            assert!(parse_phone(ok).is_ok(), "{ok}");
        }
        assert_eq!(parse_phone(" +123456 ").unwrap(), "+123456");
        for bad in [
            "",
            "351912345678",
            "+12345",
            "+123456789012345678901",
            "+12 34 5a",
            "+ 123456",
            "+123456-",
            "+12(34)5678",
        ] {
            assert!(parse_phone(bad).is_err(), "{bad}");
        }
    }
}
