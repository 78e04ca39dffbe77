//! `portal.v1.TeamMembers` requests into typed commands: every bad field at once.

use serde::{Deserialize, Serialize};
use shared::proto::portal::v1 as pb;
use uuid::Uuid;

use crate::convert;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::Email;
use crate::error::{Error, Violations};
use crate::grpc::parse::{check_company_name, infrastructure_ref, member_ref};
use crate::grpc::{DEFAULT_PAGE, MAX_PAGE};
use crate::rules::add_member::{AddMember, check_infrastructures};
use crate::rules::members::{MemberQuery, RequestedAccess, UpdateMember};
use crate::rules::security_contact::parse_phone;

/// Longest display name.
const MAX_NAME: usize = 100;

/// Cursor of `ListTeamMembers`: the last email, and the filters it was made for.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MemberCursor {
    pub(super) after: String,
    pub(super) filter: String,
}

/// The infrastructure permissions of a request, each infrastructure at most once. Bad entries
/// are recorded as violations of `{field}[{index}].infrastructure` / `.permission`.
fn parse_access(
    v: &mut Violations,
    field: &str,
    company: Uuid,
    facts: &CompanyFacts,
    list: &[pb::InfrastructureAccess],
) -> Vec<RequestedAccess> {
    let mut out: Vec<RequestedAccess> = Vec::new();
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
            if out.iter().any(|o| o.infrastructure == i) {
                v.add(
                    format!("{field}[{idx}].infrastructure"),
                    "is named more than once",
                );
            } else if let Some(p) = permission {
                out.push(RequestedAccess {
                    index: idx,
                    infrastructure: i,
                    permission: p,
                });
            }
        }
    }
    out
}

/// The filters and page of `ListTeamMembers`, and the filter text its page tokens carry.
pub(super) fn list(
    req: &pb::ListTeamMembersRequest,
    company: Uuid,
    facts: &CompanyFacts,
) -> Result<(MemberQuery, String), Error> {
    let mut v = Violations::new();
    check_company_name(&mut v, "parent", &req.parent, company);
    let active = match pb::MemberStatus::try_from(req.status) {
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
    let infrastructure_permission = v
        .check(
            "infrastructure_permission",
            convert::parse_infra_permission(req.infrastructure_permission),
        )
        .flatten();
    if infrastructure_permission.is_some() && req.infrastructure.is_empty() {
        v.add(
            "infrastructure_permission",
            "filters the permission on `infrastructure`, which is then required",
        );
    }
    let size = v.page_size("page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE);
    let filter = format!(
        "{}|{}|{}|{}",
        req.status, req.company_permission, req.infrastructure, req.infrastructure_permission
    );
    let cursor: Option<MemberCursor> = v.page_cursor("page_token", &req.page_token);
    if cursor.as_ref().is_some_and(|c| c.filter != filter) {
        v.add("page_token", "was made for other filters");
    }
    v.finish()?;
    let query = MemberQuery {
        active,
        company_permission,
        infrastructure,
        infrastructure_permission,
        after: cursor.map(|c| c.after),
        size,
    };
    Ok((query, filter))
}

/// `AddTeamMember`: the O11 add-member flow's fields and checks.
pub(super) fn add(
    req: &pb::AddTeamMemberRequest,
    company: Uuid,
    facts: &CompanyFacts,
) -> Result<AddMember, Error> {
    let mut v = Violations::new();
    check_company_name(&mut v, "parent", &req.parent, company);
    let email = v.check("email", Email::parse(&req.email));
    let display_name = v.optional_text("display_name", &req.display_name, MAX_NAME);
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
    check_infrastructures(
        &mut v,
        facts,
        &access,
        req.infrastructure_access.is_empty(),
        req.invite_to_lifetime,
    );
    let command = match (email, team_role, company_permission) {
        (Some(email), Some(team_role), Some(company_permission)) => Some(AddMember {
            email,
            display_name,
            team_role,
            company_permission,
            access,
            invite_to_lifetime: req.invite_to_lifetime,
            grant_development_permissions: req.grant_development_permissions,
        }),
        _ => None,
    };
    Error::command(v, command)
}

/// `UpdateTeamMember`: the fields named by the update mask.
pub(super) fn update(
    req: &pb::UpdateTeamMemberRequest,
    company: Uuid,
    facts: &CompanyFacts,
) -> Result<UpdateMember, Error> {
    let m = req.member.clone().unwrap_or_default();
    let mut v = Violations::new();
    if req.grant_development_permissions {
        v.add(
            "grant_development_permissions",
            "development permissions can be granted only when adding a member",
        );
    }
    let id = v.check("member.name", member_ref(company, &m.name));
    let paths = v.mask_paths(
        req.update_mask.as_ref(),
        &["display_name", "team_role", "infrastructure_access"],
    );
    let has = |p: &str| paths.iter().any(|x| x == p);
    let display_name = has("display_name")
        .then(|| v.optional_text("member.display_name", &m.display_name, MAX_NAME));
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
    let command = id.map(|id| UpdateMember {
        id,
        etag: m.etag,
        display_name,
        team_role,
        access,
    });
    Error::command(v, command)
}

/// `SetSecurityContact`: the member and the phone.
pub(super) fn security_contact(
    req: &pb::SetSecurityContactRequest,
    company: Uuid,
) -> Result<(Uuid, String), Error> {
    let mut v = Violations::new();
    let id = v.check("name", member_ref(company, &req.name));
    let phone = v.check("phone", parse_phone(&req.phone));
    Error::command(v, id.zip(phone))
}
