//! Resource names of the portal API: `companies/{company}`,
//! `companies/{company}/infrastructures/{infrastructure}`, `companies/{company}/members/{member}`,
//! `companies/{company}/supportCases/{case}`, and identity's `organizations/{organization}` and
//! `organizations/{organization}/users/{user}`. Ids are UUIDs.

use uuid::Uuid;

fn parts(name: &str) -> Vec<&str> {
    name.split('/').collect()
}

fn id(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

/// The company id at the start of any resource name under `companies/{company}`.
pub fn company_of(name: &str) -> Option<Uuid> {
    match parts(name).as_slice() {
        ["companies", c, ..] => id(c),
        _ => None,
    }
}

/// `companies/{company}` exactly.
pub fn company(name: &str) -> Option<Uuid> {
    match parts(name).as_slice() {
        ["companies", c] => id(c),
        _ => None,
    }
}

/// `companies/{company}/infrastructures/{infrastructure}`.
pub fn infrastructure(name: &str) -> Option<(Uuid, Uuid)> {
    match parts(name).as_slice() {
        ["companies", c, "infrastructures", i] => Some((id(c)?, id(i)?)),
        _ => None,
    }
}

/// `companies/{company}/members/{member}`.
pub fn member(name: &str) -> Option<(Uuid, Uuid)> {
    match parts(name).as_slice() {
        ["companies", c, "members", m] => Some((id(c)?, id(m)?)),
        _ => None,
    }
}

/// `companies/{company}/supportCases/{case}`.
pub fn support_case(name: &str) -> Option<(Uuid, Uuid)> {
    match parts(name).as_slice() {
        ["companies", c, "supportCases", k] => Some((id(c)?, id(k)?)),
        _ => None,
    }
}

/// Identity's `organizations/{organization}`.
pub fn identity_organization(name: &str) -> Option<Uuid> {
    match parts(name).as_slice() {
        ["organizations", o] => id(o),
        _ => None,
    }
}

/// Formatting of resource names.
pub mod fmt {
    use uuid::Uuid;

    /// `companies/{company}`.
    pub fn company(c: Uuid) -> String {
        format!("companies/{c}")
    }
    /// `companies/{company}/infrastructures/{infrastructure}`.
    pub fn infrastructure(c: Uuid, i: Uuid) -> String {
        format!("companies/{c}/infrastructures/{i}")
    }
    /// `companies/{company}/members/{member}`.
    pub fn member(c: Uuid, m: Uuid) -> String {
        format!("companies/{c}/members/{m}")
    }
    /// `companies/{company}/supportCases/{case}`.
    pub fn support_case(c: Uuid, k: Uuid) -> String {
        format!("companies/{c}/supportCases/{k}")
    }
    /// `organizations/{organization}`.
    pub fn identity_organization(o: Uuid) -> String {
        format!("organizations/{o}")
    }
    /// `organizations/{organization}/users/{user}`.
    pub fn identity_user(o: Uuid, u: Uuid) -> String {
        format!("organizations/{o}/users/{u}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_names() {
        let (c, i) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(company(&fmt::company(c)), Some(c));
        assert_eq!(company_of(&fmt::member(c, i)), Some(c));
        assert_eq!(company(&fmt::member(c, i)), None);
        assert_eq!(infrastructure(&fmt::infrastructure(c, i)), Some((c, i)));
        assert_eq!(member(&fmt::member(c, i)), Some((c, i)));
        assert_eq!(support_case(&fmt::support_case(c, i)), Some((c, i)));
        assert_eq!(member(&fmt::infrastructure(c, i)), None);
        assert_eq!(
            identity_organization(&fmt::identity_organization(c)),
            Some(c)
        );
        assert_eq!(company("companies/not-a-uuid"), None);
        assert_eq!(company_of(""), None);
        assert_eq!(
            infrastructure(&format!("{}/", fmt::infrastructure(c, i))),
            None
        );
    }
}
