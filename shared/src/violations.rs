//! Collecting every bad field of a request before failing, in the domain's words: a list of
//! (field path, what is wrong) that the rules of both services build, and that becomes one
//! `INVALID_ARGUMENT` with a `google.rpc.BadRequest` only at the gRPC edge
//! ([`Violations::into_status`], through [`crate::errors::FieldViolations`]).
//!
//! Nothing here is gRPC-shaped until `into_status`, so a domain or rules layer can use it
//! without knowing about statuses.

use std::fmt;

/// The bad fields of a request, in the order they were found.
///
/// ```
/// # use shared::violations::Violations;
/// let mut v = Violations::new();
/// let n: Option<u8> = v.check("size", "x".parse::<u8>());
/// v.add("email", "is required");
/// assert!(n.is_none());
/// let err = v.finish().unwrap_err();
/// assert_eq!(err.fields().collect::<Vec<_>>(), ["size", "email"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    /// Nothing wrong yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Just one bad field.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }

    /// Records that `field` (a dotted path into the request, e.g. `user.email` or
    /// `support_case.cc[2]`) is bad because of `description`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Passes the value of a parse through, or records its error (by its `Display`) against
    /// `field` and returns `None`, so the other fields are still checked.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else the violations themselves (a service's error
    /// type converts them with `From`, so `violations.finish()?` works in its rules).
    pub fn finish(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The bad field paths, in order (a field may appear more than once).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _)| f.as_str())
    }

    /// Every (field, description), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, d)| (f.as_str(), d.as_str()))
    }

    /// The `INVALID_ARGUMENT` status: a `google.rpc.BadRequest` with one `FieldViolation` per
    /// recorded field and an `ErrorInfo { reason: "INVALID_ARGUMENT", domain }`.
    pub fn into_status(self, domain: &str) -> tonic::Status {
        let mut v = crate::errors::FieldViolations::new(domain);
        for (field, description) in self.0 {
            v.add(field, description);
        }
        v.into_status()
    }
}

impl From<Violations> for Vec<(String, String)> {
    fn from(v: Violations) -> Self {
        v.0
    }
}

impl fmt::Display for Violations {
    /// `size: invalid digit found in string; email: is required`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, description)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field}: {description}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::StatusExt as _;

    use super::Violations;

    #[test]
    fn empty_is_ok_and_one_is_an_error() {
        assert_eq!(Violations::new().finish(), Ok(()));
        let err = Violations::one("name", "is required").finish().unwrap_err();
        assert_eq!(err.to_string(), "name: is required");
    }

    #[test]
    fn check_passes_values_and_records_errors_in_order() {
        let mut v = Violations::new();
        assert_eq!(v.check("a", Ok::<_, String>(1)), Some(1));
        assert_eq!(v.check::<u8, _>("b", Err("too big")), None);
        v.add("c", "is required");
        assert_eq!(
            v.iter().collect::<Vec<_>>(),
            [("b", "too big"), ("c", "is required")]
        );
        assert_eq!(
            Vec::<(String, String)>::from(v),
            [
                ("b".to_owned(), "too big".to_owned()),
                ("c".to_owned(), "is required".to_owned())
            ]
        );
    }

    #[test]
    fn into_status_is_a_bad_request_under_the_domain() {
        let mut v = Violations::new();
        v.add("email", "is required");
        v.add("role", "unknown");
        let status = v.into_status("identity.odc");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "request has invalid fields: email, role");
        let fields: Vec<_> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|f| (f.field, f.description))
            .collect();
        assert_eq!(
            fields,
            [
                ("email".to_owned(), "is required".to_owned()),
                ("role".to_owned(), "unknown".to_owned())
            ]
        );
        assert_eq!(
            status.get_details_error_info().unwrap().domain,
            "identity.odc"
        );
    }
}
