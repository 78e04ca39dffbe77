//! Decoding an IdentityProviders request: the provider name, and the fields of a provider as
//! a create sets all of them and an update those of its mask.

use shared::proto::identity::v1 as pb;
use shared::proto::identity::v1::identity_provider::Assignment;
use shared::violations::Violations;
use uuid::Uuid;

use crate::domain::model::{EmailTrust, IdpAssignment, ProfileLinking};
use crate::domain::names;
use crate::rules::identity_providers::ProviderFields;

/// Longest provider name.
const NAME_MAX: usize = 100;
/// Longest issuer URL.
const ISSUER_MAX: usize = 500;
/// Longest client id or audience.
const AUDIENCE_MAX: usize = 200;
/// Most allowed audiences.
const AUDIENCES_MAX: usize = 20;

/// Every field an update mask may name.
pub(super) const PATHS: &[&str] = &[
    "display_name",
    "issuer",
    "client_id",
    "allowed_audiences",
    "email_trust",
    "profile_linking",
    "auto_create_profiles",
    "assignment",
];

/// The id of a provider name of organization `org`.
pub(super) fn provider_id(v: &mut Violations, field: &str, org: Uuid, name: &str) -> Option<Uuid> {
    v.check(
        field,
        names::identity_provider(name)
            .filter(|(o, _)| *o == org)
            .map(|(_, p)| p)
            .ok_or(
                "must be organizations/{organization}/identityProviders/{provider} of this organization",
            ),
    )
}

/// An issuer: an absolute URL with a host, no query or fragment, of an accepted scheme.
fn issuer(v: &mut Violations, raw: &str, accepts: &dyn Fn(&str) -> bool) -> String {
    let field = "identity_provider.issuer";
    let s = v.required_text(field, raw, ISSUER_MAX);
    if s.is_empty() {
        return s;
    }
    match reqwest::Url::parse(&s) {
        Ok(u) if u.host_str().is_some() && u.query().is_none() && u.fragment().is_none() => {
            if !accepts(&s) {
                v.add(field, "must be an https:// URL");
            }
        }
        _ => v.add(
            field,
            "must be an absolute URL such as https://login.example.com, without query or fragment",
        ),
    }
    s
}

fn email_trust(v: &mut Violations, raw: i32) -> Option<EmailTrust> {
    match pb::EmailTrust::try_from(raw) {
        Ok(pb::EmailTrust::None) => Some(EmailTrust::None),
        Ok(pb::EmailTrust::VerifiedClaim) => Some(EmailTrust::VerifiedClaim),
        Ok(pb::EmailTrust::All) => Some(EmailTrust::All),
        _ => {
            v.add(
                "identity_provider.email_trust",
                "must be EMAIL_TRUST_NONE, EMAIL_TRUST_VERIFIED_CLAIM or EMAIL_TRUST_ALL",
            );
            None
        }
    }
}

fn profile_linking(v: &mut Violations, raw: i32) -> Option<ProfileLinking> {
    match pb::ProfileLinking::try_from(raw) {
        Ok(pb::ProfileLinking::Email) => Some(ProfileLinking::Email),
        Ok(pb::ProfileLinking::Username) => Some(ProfileLinking::Username),
        Ok(pb::ProfileLinking::None) => Some(ProfileLinking::None),
        _ => {
            v.add(
                "identity_provider.profile_linking",
                "must be PROFILE_LINKING_EMAIL, PROFILE_LINKING_USERNAME or PROFILE_LINKING_NONE",
            );
            None
        }
    }
}

fn assignment(v: &mut Violations, org: Uuid, raw: Option<&Assignment>) -> Option<IdpAssignment> {
    let field = "identity_provider.assignment";
    match raw {
        Some(Assignment::OrganizationScope(true)) => Some(IdpAssignment::Organization),
        Some(Assignment::Stage(s)) => v
            .check(
                "identity_provider.stage",
                names::stage(s)
                    .filter(|(o, _)| *o == org)
                    .map(|(_, k)| k)
                    .ok_or(
                        "must be organizations/{organization}/stages/{stage} of this organization",
                    ),
            )
            .map(IdpAssignment::Stage),
        _ => {
            v.add(
                field,
                "set organization_scope (true) for members, or stage for the end-users of one stage",
            );
            None
        }
    }
}

fn audiences(v: &mut Violations, raw: &[String]) -> Vec<String> {
    if raw.len() > AUDIENCES_MAX {
        v.add(
            "identity_provider.allowed_audiences",
            format!("at most {AUDIENCES_MAX}"),
        );
    }
    raw.iter()
        .enumerate()
        .map(|(i, a)| {
            v.required_text(
                &format!("identity_provider.allowed_audiences[{i}]"),
                a,
                AUDIENCE_MAX,
            )
        })
        .collect()
}

/// The fields named by `paths` (every field for a create), each checked.
pub(super) fn fields(
    v: &mut Violations,
    org: Uuid,
    p: &pb::IdentityProvider,
    paths: &[String],
    accepts: &dyn Fn(&str) -> bool,
) -> ProviderFields {
    let has = |x: &str| paths.iter().any(|p| p == x);
    ProviderFields {
        display_name: has("display_name")
            .then(|| v.required_text("identity_provider.display_name", &p.display_name, NAME_MAX)),
        issuer: has("issuer").then(|| issuer(v, &p.issuer, accepts)),
        client_id: has("client_id")
            .then(|| v.required_text("identity_provider.client_id", &p.client_id, AUDIENCE_MAX)),
        allowed_audiences: has("allowed_audiences").then(|| audiences(v, &p.allowed_audiences)),
        email_trust: if has("email_trust") {
            email_trust(v, p.email_trust)
        } else {
            None
        },
        profile_linking: if has("profile_linking") {
            profile_linking(v, p.profile_linking)
        } else {
            None
        },
        auto_create_profiles: has("auto_create_profiles").then_some(p.auto_create_profiles),
        assignment: if has("assignment") {
            assignment(v, org, p.assignment.as_ref())
        } else {
            None
        },
    }
}
