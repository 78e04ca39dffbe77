//! Resource names (AIP-122): `organizations/{o}/users/{u}` and friends, parsed into ids and
//! formatted back. The one place of the crate that knows how a name is spelled.

use uuid::Uuid;

use super::model::Principal;

/// The built-in Administrator role id.
pub const ADMINISTRATOR: &str = "administrator";
/// The built-in Developer role id.
pub const DEVELOPER: &str = "developer";

/// Splits `name` into the ids that follow each expected collection segment.
/// `segments(\"organizations/1/users/2\", &[\"organizations\", \"users\"])` is `[\"1\", \"2\"]`.
pub fn segments<'a, const N: usize>(
    name: &'a str,
    collections: &[&str; N],
) -> Option<[&'a str; N]> {
    // Parsed on every request: no allocation.
    let mut ids = [""; N];
    let mut parts = name.split('/');
    for (id, want) in ids.iter_mut().zip(collections) {
        if parts.next()? != *want {
            return None;
        }
        *id = parts.next().filter(|s| !s.is_empty())?;
    }
    parts.next().is_none().then_some(ids)
}

fn uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

/// `organizations/{o}`.
pub fn org(name: &str) -> Option<Uuid> {
    segments(name, &["organizations"]).and_then(|v| uuid(v[0]))
}

/// `organizations/{o}/users/{u}`.
pub fn user(name: &str) -> Option<(Uuid, Uuid)> {
    let v = segments(name, &["organizations", "users"])?;
    Some((uuid(v[0])?, uuid(v[1])?))
}

/// `organizations/{o}/serviceAccounts/{s}`.
pub fn service_account(name: &str) -> Option<(Uuid, Uuid)> {
    let v = segments(name, &["organizations", "serviceAccounts"])?;
    Some((uuid(v[0])?, uuid(v[1])?))
}

/// `organizations/{o}/serviceAccounts/{s}/tokens/{t}`.
pub fn service_account_token(name: &str) -> Option<(Uuid, Uuid, Uuid)> {
    let v = segments(name, &["organizations", "serviceAccounts", "tokens"])?;
    Some((uuid(v[0])?, uuid(v[1])?, uuid(v[2])?))
}

/// `organizations/{o}/stages/{key}`.
pub fn stage(name: &str) -> Option<(Uuid, String)> {
    let v = segments(name, &["organizations", "stages"])?;
    Some((uuid(v[0])?, v[1].to_owned()))
}

/// `organizations/{o}/apps/{a}`.
pub fn app(name: &str) -> Option<(Uuid, Uuid)> {
    let v = segments(name, &["organizations", "apps"])?;
    Some((uuid(v[0])?, uuid(v[1])?))
}

/// `organizations/{o}/apps/{a}/endUserRoles/{r}`.
pub fn end_user_role(name: &str) -> Option<(Uuid, Uuid, Uuid)> {
    let v = segments(name, &["organizations", "apps", "endUserRoles"])?;
    Some((uuid(v[0])?, uuid(v[1])?, uuid(v[2])?))
}

/// `organizations/{o}/roles/{r}` where `r` is `administrator`, `developer` or a UUID.
pub fn role(name: &str) -> Option<(Uuid, String)> {
    let v = segments(name, &["organizations", "roles"])?;
    let id = v[1];
    (id == ADMINISTRATOR || id == DEVELOPER || uuid(id).is_some())
        .then(|| (uuid(v[0]), id.to_owned()))
        .and_then(|(o, r)| Some((o?, r)))
}

/// `organizations/{o}/groups/{g}`.
pub fn group(name: &str) -> Option<(Uuid, Uuid)> {
    let v = segments(name, &["organizations", "groups"])?;
    Some((uuid(v[0])?, uuid(v[1])?))
}

/// `organizations/{o}/identityProviders/{p}`.
pub fn identity_provider(name: &str) -> Option<(Uuid, Uuid)> {
    let v = segments(name, &["organizations", "identityProviders"])?;
    Some((uuid(v[0])?, uuid(v[1])?))
}

/// Parses the role id of a role name of this organization.
pub fn role_id_of(org: Uuid, name: &str) -> Option<String> {
    role(name).filter(|(o, _)| *o == org).map(|(_, r)| r)
}

/// `organizations/{org}/{collection}/{id}` of this organization: the id (`Err` for another or
/// a malformed organization), without allocating.
fn org_child<'a>(org: Uuid, name: &'a str, collection: &str) -> Option<Result<&'a str, ()>> {
    let [o, id] = segments(name, &["organizations", collection])?;
    Some(match Uuid::parse_str(o) {
        Ok(o) if o == org => Ok(id),
        _ => Err(()),
    })
}

/// A user or service-account name of organization `org`, without allocating (CheckPermission
/// parses two or three names per call). A well-formed user name decides (of another
/// organization: `None`).
pub fn principal_of(org: Uuid, name: &str) -> Option<Principal> {
    if let Some([o, u]) = segments(name, &["organizations", "users"]) {
        let (Ok(o), Ok(u)) = (Uuid::parse_str(o), Uuid::parse_str(u)) else {
            return None;
        };
        return (o == org).then_some(Principal::User(u));
    }
    let [o, s] = segments(name, &["organizations", "serviceAccounts"])?;
    match (Uuid::parse_str(o), Uuid::parse_str(s)) {
        (Ok(o), Ok(s)) if o == org => Some(Principal::ServiceAccount(s)),
        _ => None,
    }
}

/// [`stage`] of organization `org`: the stage key, borrowed from `name`.
pub fn stage_of(org: Uuid, name: &str) -> Option<&str> {
    org_child(org, name, "stages")?.ok()
}

/// [`app`] of organization `org`: the app id, without allocating.
pub fn app_of(org: Uuid, name: &str) -> Option<Uuid> {
    org_child(org, name, "apps")?
        .ok()
        .and_then(|a| Uuid::parse_str(a).ok())
}

/// Name formatting, the inverse of the parsers above.
pub mod fmt {
    use uuid::Uuid;

    /// `organizations/{o}`.
    pub fn org(o: Uuid) -> String {
        format!("organizations/{o}")
    }
    /// `organizations/{o}/users/{u}`.
    pub fn user(o: Uuid, u: Uuid) -> String {
        format!("organizations/{o}/users/{u}")
    }
    /// `organizations/{o}/serviceAccounts/{s}`.
    pub fn service_account(o: Uuid, s: Uuid) -> String {
        format!("organizations/{o}/serviceAccounts/{s}")
    }
    /// `organizations/{o}/serviceAccounts/{s}/tokens/{t}`.
    pub fn service_account_token(o: Uuid, s: Uuid, t: Uuid) -> String {
        format!("organizations/{o}/serviceAccounts/{s}/tokens/{t}")
    }
    /// `organizations/{o}/stages/{key}`.
    pub fn stage(o: Uuid, key: &str) -> String {
        format!("organizations/{o}/stages/{key}")
    }
    /// `organizations/{o}/apps/{a}`.
    pub fn app(o: Uuid, a: Uuid) -> String {
        format!("organizations/{o}/apps/{a}")
    }
    /// `organizations/{o}/apps/{a}/endUserRoles/{r}`.
    pub fn end_user_role(o: Uuid, a: Uuid, r: Uuid) -> String {
        format!("organizations/{o}/apps/{a}/endUserRoles/{r}")
    }
    /// `organizations/{o}/roles/{r}`.
    pub fn role(o: Uuid, r: &str) -> String {
        format!("organizations/{o}/roles/{r}")
    }
    /// `organizations/{o}/groups/{g}`.
    pub fn group(o: Uuid, g: Uuid) -> String {
        format!("organizations/{o}/groups/{g}")
    }
    /// `organizations/{o}/identityProviders/{p}`.
    pub fn identity_provider(o: Uuid, p: Uuid) -> String {
        format!("organizations/{o}/identityProviders/{p}")
    }
    /// `organizations/{o}/identityProviders/{p}/profiles/{subject}` (the target of a provider
    /// profile's change events; the subject is the provider's, as it is).
    pub fn provider_profile(o: Uuid, p: Uuid, subject: &str) -> String {
        format!("organizations/{o}/identityProviders/{p}/profiles/{subject}")
    }
}

#[cfg(test)]
mod tests;
