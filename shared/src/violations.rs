//! Collecting every bad field of a request before failing, in the domain's words: a list of
//! (field path, what is wrong) that the rules of both services build, and that becomes one
//! `INVALID_ARGUMENT` with a `google.rpc.BadRequest` only at the gRPC edge
//! ([`Violations::into_status`], through [`crate::errors::FieldViolations`]).
//!
//! It also reads the common request fields into values, recording what is wrong with them:
//! texts ([`Violations::required_text`], [`Violations::optional_text`]), update masks
//! ([`Violations::mask_paths`]), page sizes and tokens. Turning the violations and the parsed
//! value into a typed command (or the error) is
//! [`ServiceError::command`](crate::errors::ServiceError::command).
//!
//! Nothing here is gRPC-shaped until `into_status`, so a domain or rules layer can use it
//! without knowing about statuses.

use std::fmt;

use crate::text::Lines;

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

    /// Checks the text is 1..=`max` characters after trimming (else records `is required` or
    /// `must be at most {max} characters` against `field`) and holds no control character
    /// ([`crate::text`]); returns the trimmed text.
    pub fn required_text(&mut self, field: &str, text: &str, max: usize) -> String {
        let t = text.trim();
        if t.is_empty() {
            self.add(field, "is required");
        } else {
            self.text_policy(field, t, max, Lines::Single);
        }
        t.to_owned()
    }

    /// Checks optional text is at most `max` characters after trimming and holds no control
    /// character ([`crate::text`]); returns the trimmed text (empty when not given).
    pub fn optional_text(&mut self, field: &str, text: &str, max: usize) -> String {
        let t = text.trim();
        self.text_policy(field, t, max, Lines::Single);
        t.to_owned()
    }

    /// [`optional_text`](Self::optional_text) of a field documented as multi-line: line feeds
    /// and tabs are kept, every other control character is refused.
    pub fn optional_multi_line_text(&mut self, field: &str, text: &str, max: usize) -> String {
        let t = text.trim();
        self.text_policy(field, t, max, Lines::Multi);
        t.to_owned()
    }

    /// Records against `field` a text longer than `max` characters, or one breaking the
    /// control-character policy.
    fn text_policy(&mut self, field: &str, text: &str, max: usize, lines: Lines) {
        if text.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
        self.check(field, crate::text::check(text, lines));
    }

    /// The update-mask paths, checked against the `allowed` ones (each other path is recorded
    /// against `update_mask`). An empty mask means "every allowed field" (AIP-134).
    pub fn mask_paths(
        &mut self,
        mask: Option<&prost_types::FieldMask>,
        allowed: &[&str],
    ) -> Vec<String> {
        let paths: Vec<String> = mask.map(|m| m.paths.clone()).unwrap_or_default();
        if paths.is_empty() {
            return allowed.iter().map(|s| (*s).to_owned()).collect();
        }
        for p in &paths {
            if !allowed.contains(&p.as_str()) {
                self.add(
                    "update_mask",
                    format!("{p:?} cannot be updated; allowed: {}", allowed.join(", ")),
                );
            }
        }
        paths
    }

    /// A page size from a request: 0 is `default`, larger than `max` is `max`, negative is
    /// recorded against `field` (and `default` returned).
    pub fn page_size(&mut self, field: &str, requested: i32, default: usize, max: usize) -> usize {
        self.check(
            field,
            crate::page_token::clamp_page_size(requested, default, max)
                .map_err(|_| "must not be negative"),
        )
        .unwrap_or(default)
    }

    /// A decoded page token (`None`: first page, or a token that is not one of this list,
    /// which is recorded against `field`).
    pub fn page_cursor<T: serde::de::DeserializeOwned>(
        &mut self,
        field: &str,
        token: &str,
    ) -> Option<T> {
        self.check(
            field,
            crate::page_token::decode_opt(token).map_err(|_| "is not a page token of this list"),
        )
        .flatten()
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
mod tests;
