//! Resource names (AIP-122): `organizations/{o}/users/{u}` and friends, parsed into ids.

use uuid::Uuid;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_other_shapes() {
        let o = Uuid::new_v4();
        let u = Uuid::new_v4();
        assert_eq!(user(&fmt::user(o, u)), Some((o, u)));
        assert_eq!(user(&format!("organizations/{o}/groups/{u}")), None);
        assert_eq!(user(&format!("organizations/{o}/users/")), None);
        assert_eq!(
            role(&fmt::role(o, "administrator")),
            Some((o, "administrator".into()))
        );
        assert_eq!(role(&fmt::role(o, "boss")), None);
        assert_eq!(stage(&fmt::stage(o, "qa")), Some((o, "qa".into())));
        assert_eq!(org("organizations/not-a-uuid"), None);
    }
}
