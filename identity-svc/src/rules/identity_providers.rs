//! The rules of external identity providers: unique names, one provider per (issuer, client
//! id), a stage assignment that names a stage of the organization, deletion with the provider
//! profiles that link people to it and the group claim mappings that name it.

use uuid::Uuid;

use crate::core::Draft;
use crate::domain::model::{
    EmailTrust, Entity, IdentityProvider, IdpAssignment, ProfileLinking, ProviderProfile,
};
use crate::domain::names::fmt;
use crate::domain::state::OrgState;
use crate::error::Error;
use crate::rules::lookups::{check_etag, org_id, stage};

/// The configurable fields of a provider, as a create sets them all and an update some.
#[derive(Debug, Clone, Default)]
pub struct ProviderFields {
    /// Name.
    pub display_name: Option<String>,
    /// Issuer identifier.
    pub issuer: Option<String>,
    /// Client id.
    pub client_id: Option<String>,
    /// Further audiences.
    pub allowed_audiences: Option<Vec<String>>,
    /// Email trust.
    pub email_trust: Option<EmailTrust>,
    /// Linking field.
    pub profile_linking: Option<ProfileLinking>,
    /// Auto-creation.
    pub auto_create_profiles: Option<bool>,
    /// Assignment.
    pub assignment: Option<IdpAssignment>,
}

/// A provider or NOT_FOUND.
pub fn identity_provider(st: &OrgState, id: Uuid) -> Result<&IdentityProvider, Error> {
    st.identity_providers
        .get(&id)
        .ok_or_else(|| Error::NotFound(fmt::identity_provider(st.org.id, id)))
}

/// Refuses a name or an (issuer, client id) another provider than `id` has, and a stage
/// assignment to a stage the organization does not have.
fn check_unique(st: &OrgState, p: &IdentityProvider) -> Result<(), Error> {
    for other in st.identity_providers.values().filter(|o| o.id != p.id) {
        if other.display_name.eq_ignore_ascii_case(&p.display_name) {
            return Err(Error::exists(
                "IDENTITY_PROVIDER_EXISTS",
                format!("an identity provider named {} exists", p.display_name),
            ));
        }
        if other.issuer == p.issuer && other.client_id == p.client_id {
            return Err(Error::exists(
                "IDENTITY_PROVIDER_EXISTS",
                format!(
                    "identity provider {} already has issuer {} and client id {}",
                    other.display_name, p.issuer, p.client_id
                ),
            ));
        }
    }
    if let IdpAssignment::Stage(key) = &p.assignment {
        stage(st, key)?;
    }
    Ok(())
}

/// Sets the fields given in `f` on `p`.
fn apply(p: &mut IdentityProvider, f: ProviderFields) {
    if let Some(v) = f.display_name {
        p.display_name = v;
    }
    if let Some(v) = f.issuer {
        p.issuer = v;
    }
    if let Some(v) = f.client_id {
        p.client_id = v;
    }
    if let Some(v) = f.allowed_audiences {
        p.allowed_audiences = v;
    }
    if let Some(v) = f.email_trust {
        p.email_trust = v;
    }
    if let Some(v) = f.profile_linking {
        p.profile_linking = v;
    }
    if let Some(v) = f.auto_create_profiles {
        p.auto_create_profiles = v;
    }
    if let Some(v) = f.assignment {
        p.assignment = v;
    }
}

/// Creates a provider from `f` (every field set by the caller; unset ones take the safest
/// value: no trust, no linking, no auto-creation, the organization scope).
pub fn create_identity_provider(
    d: &mut Draft<'_>,
    f: ProviderFields,
) -> Result<IdentityProvider, Error> {
    let mut p = IdentityProvider {
        id: Uuid::now_v7(),
        display_name: String::new(),
        issuer: String::new(),
        client_id: String::new(),
        allowed_audiences: Vec::new(),
        email_trust: EmailTrust::None,
        profile_linking: ProfileLinking::None,
        auto_create_profiles: false,
        assignment: IdpAssignment::Organization,
        create_time: d.now,
        update_time: d.now,
        rev: 1,
    };
    apply(&mut p, f);
    check_unique(d.state(), &p)?;
    d.change(
        "identity_provider.created",
        fmt::identity_provider(org_id(d), p.id),
        None,
        Some(Entity::IdentityProvider(p.clone())),
        Vec::new(),
    );
    Ok(p)
}

/// Changes the fields given in `f`.
pub fn update_identity_provider(
    d: &mut Draft<'_>,
    id: Uuid,
    f: ProviderFields,
    etag: Option<&str>,
) -> Result<IdentityProvider, Error> {
    let before = identity_provider(d.state(), id)?.clone();
    check_etag(etag, before.rev)?;
    let mut after = before.clone();
    apply(&mut after, f);
    check_unique(d.state(), &after)?;
    after.update_time = d.now;
    after.rev += 1;
    d.change(
        "identity_provider.updated",
        fmt::identity_provider(org_id(d), id),
        Some(Entity::IdentityProvider(before)),
        Some(Entity::IdentityProvider(after.clone())),
        Vec::new(),
    );
    Ok(after)
}

/// Deletes a provider and the profiles linked through it (the users stay).
pub fn delete_identity_provider(
    d: &mut Draft<'_>,
    id: Uuid,
    etag: Option<&str>,
) -> Result<(), Error> {
    let p = identity_provider(d.state(), id)?.clone();
    check_etag(etag, p.rev)?;
    let profiles: Vec<ProviderProfile> = d
        .state()
        .provider_profiles
        .values()
        .filter(|x| x.provider == id)
        .cloned()
        .collect();
    for x in profiles {
        delete_profile(d, x);
    }
    crate::rules::group_mappings::forget_provider(d, id);
    d.change(
        "identity_provider.deleted",
        fmt::identity_provider(org_id(d), id),
        Some(Entity::IdentityProvider(p)),
        None,
        Vec::new(),
    );
    Ok(())
}

/// Removes one provider profile.
fn delete_profile(d: &mut Draft<'_>, x: ProviderProfile) {
    let target = fmt::provider_profile(org_id(d), x.provider, &x.subject);
    let user = x.user;
    d.change(
        "provider_profile.deleted",
        target,
        Some(Entity::ProviderProfile(x)),
        None,
        vec![user],
    );
}

/// Removes every provider profile of a user (its deletion).
pub fn delete_profiles_of(d: &mut Draft<'_>, user: Uuid) {
    let profiles: Vec<ProviderProfile> = d
        .state()
        .user_provider_profiles
        .get(&user)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| d.state().provider_profiles.get(k).cloned())
                .collect()
        })
        .unwrap_or_default();
    for x in profiles {
        delete_profile(d, x);
    }
}
