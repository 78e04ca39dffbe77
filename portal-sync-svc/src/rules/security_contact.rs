//! The security contact: the member with team role Security and a phone number, who alone
//! receives security communications. Set and cleared by company admins and infrastructure
//! admins (by the table rule).

use uuid::Uuid;

use super::members::{event, next, target};
use super::{Rules, now};
use crate::auth::proof::Authorized;
use crate::domain::facts::CompanyFacts;
use crate::domain::model::{TeamMember, TeamRole};
use crate::error::Error;

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

impl Rules {
    /// Makes a member the security contact with this phone (a phone from [`parse_phone`]).
    pub async fn set_security_contact(
        &self,
        auth: &Authorized,
        facts: &CompanyFacts,
        company: Uuid,
        id: Uuid,
        phone: String,
    ) -> Result<TeamMember, Error> {
        let old = target(facts, company, id)?;
        let phone = Some(phone);
        if old.team_role == TeamRole::Security && old.phone == phone {
            return Ok(old.clone());
        }
        let time = now();
        let new = TeamMember {
            team_role: TeamRole::Security,
            phone,
            ..next(old, time)
        };
        let ev = event(
            auth,
            "security_contact.set",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        self.save_member(auth, old, &new, None, ev, time).await?;
        Ok(new)
    }

    /// Makes the member no longer the security contact (team role Other, no phone).
    pub async fn clear_security_contact(
        &self,
        auth: &Authorized,
        facts: &CompanyFacts,
        company: Uuid,
        id: Uuid,
    ) -> Result<TeamMember, Error> {
        let old = target(facts, company, id)?;
        if old.team_role != TeamRole::Security && old.phone.is_none() {
            return Ok(old.clone());
        }
        let time = now();
        let new = TeamMember {
            team_role: TeamRole::Other,
            phone: None,
            ..next(old, time)
        };
        let ev = event(
            auth,
            "security_contact.cleared",
            &new,
            &serde_json::json!({ "email": new.email.as_str() }),
        );
        self.save_member(auth, old, &new, None, ev, time).await?;
        Ok(new)
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
