//! Email addresses as a type that cannot hold a bad value, the identity of a person in both
//! services (identity's users and invitations, the portal's members, support cases and
//! Community accounts).
//!
//! An address is trimmed and lower-cased before it is compared or stored, so `A@X.com ` and
//! `a@x.com` are the same person. The serde form is the normalized text; deserializing
//! validates, so a stored document cannot smuggle in a bad address.

use std::fmt;

/// A normalized email address.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Normalizes and validates `raw`: one `@`, a non-empty local part, a domain with a dot
    /// and no empty label, no white space or control character inside, at most 254 characters.
    /// The error says what is wrong, in words fit for a `google.rpc.BadRequest` description.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("is required");
        }
        if s.len() > 254 {
            return Err("must be at most 254 characters");
        }
        if crate::text::check(&s, crate::text::Lines::Single).is_err() {
            return Err("must not contain control characters");
        }
        if s.chars().any(char::is_whitespace) {
            return Err("must not contain white space");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err("must be an email address like name@example.com");
        };
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.split('.').any(str::is_empty)
        {
            return Err("must be an email address like name@example.com");
        }
        Ok(Self(s))
    }

    /// The normalized text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = &'static str;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn case_and_surrounding_spaces_are_normalized() {
        assert_eq!(
            Email::parse("  A@X.com ").unwrap(),
            Email::parse("a@x.com").unwrap()
        );
    }

    #[test]
    fn rejects_addresses_that_are_not_emails() {
        for bad in [
            "",
            "   ",
            "a",
            "a@",
            "@x.com",
            "a@x",
            "a@@x.com",
            "a b@x.com",
            "a@x..com",
            "a\u{0}@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(Email::parse(" "), Err("is required"));
        let long = format!("{}@x.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err("must be at most 254 characters"));
        assert_eq!(
            Email::parse("a b@x.com"),
            Err("must not contain white space")
        );
        assert_eq!(
            Email::parse("a\u{0}@x.com"),
            Err("must not contain control characters")
        );
        assert_eq!(
            Email::parse("a@x"),
            Err("must be an email address like name@example.com")
        );
    }

    #[test]
    fn serde_form_is_the_normalized_text_and_is_validated() {
        let e = Email::parse("Ada@X.example").unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), r#""ada@x.example""#);
        let back: Email = serde_json::from_str(r#"" ADA@x.example""#).unwrap();
        assert_eq!(back, e);
        assert!(serde_json::from_str::<Email>(r#""not-an-email""#).is_err());
    }
}
