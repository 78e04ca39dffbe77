//! The one policy for text read from a request, in both services: no Unicode control
//! character (general category `Cc`: C0 `U+0000`–`U+001F`, DEL `U+007F`, C1
//! `U+0080`–`U+009F`), so that NUL never reaches a database and no field can forge a log line
//! or a terminal escape.
//!
//! A field that documents it (in its proto comment) may span lines ([`Lines::Multi`]): it keeps
//! line feeds (`\n`) and tabs (`\t`), and refuses every other control character. The fields that
//! do are listed in [`MULTI_LINE_FIELDS`].
//!
//! The policy is applied twice, by the same function ([`check`]):
//!
//! * to every string field of every request, before any handler runs, by the codec both
//!   services are generated with ([`crate::codec`]), which names the field in a
//!   `google.rpc.BadRequest`; a new string field is covered without any code;
//! * to the texts the handlers read into domain values ([`Violations::required_text`] and
//!   friends, [`crate::email::Email::parse`]), so a value that reaches the rules by another road
//!   (a test, a tool) is held to the same rule.
//!
//! [`Violations::required_text`]: crate::violations::Violations::required_text

use std::fmt;

/// Fully qualified proto fields (`package.Message.field`) that may span lines. Each one says so
/// in its proto comment.
pub const MULTI_LINE_FIELDS: &[&str] = &[
    "identity.v1.Group.description",
    "identity.v1.Role.description",
];

/// Whether a text may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line: no control character at all.
    Single,
    /// Line feeds and tabs allowed; every other control character refused.
    Multi,
}

impl Lines {
    /// The policy of the proto field `full_name` (`package.Message.field`).
    pub fn of_field(full_name: &str) -> Self {
        if MULTI_LINE_FIELDS.contains(&full_name) {
            Self::Multi
        } else {
            Self::Single
        }
    }

    fn allows(self, c: char) -> bool {
        !c.is_control() || (self == Self::Multi && (c == '\n' || c == '\t'))
    }
}

/// A text holding a control character its field does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlCharacter {
    /// The character.
    pub character: char,
    /// The policy it breaks.
    pub lines: Lines,
}

impl fmt::Display for ControlCharacter {
    /// The description of a `google.rpc.BadRequest` field violation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = u32::from(self.character);
        match self.lines {
            Lines::Single => write!(
                f,
                "must not contain control characters (found U+{code:04X})"
            ),
            Lines::Multi => write!(
                f,
                "must not contain control characters other than line feed and tab (found U+{code:04X})"
            ),
        }
    }
}

impl std::error::Error for ControlCharacter {}

/// Checks `text` against the policy: the first control character `lines` does not allow is the
/// error.
///
/// ```
/// use shared::text::{check, Lines};
/// assert!(check("Ada Lovelace", Lines::Single).is_ok());
/// assert!(check("Ada\u{0}", Lines::Single).is_err());
/// assert!(check("two\nlines\tand a tab", Lines::Multi).is_ok());
/// assert!(check("bell\u{7}", Lines::Multi).is_err());
/// assert!(check("C1\u{85}", Lines::Single).is_err());
/// ```
pub fn check(text: &str, lines: Lines) -> Result<(), ControlCharacter> {
    // Most texts are ASCII without control characters: one pass over the bytes decides.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    match text.chars().find(|c| !lines.allows(*c)) {
        Some(character) => Err(ControlCharacter { character, lines }),
        None => Ok(()),
    }
}

/// `text` without the control characters `lines` does not allow: for text another service
/// stored before this policy (portal-sync mirrors identity's display names), which is kept
/// rather than refused.
///
/// ```
/// use shared::text::{without_control, Lines};
/// assert_eq!(without_control("A\u{0}da", Lines::Single), "Ada");
/// ```
pub fn without_control(text: &str, lines: Lines) -> std::borrow::Cow<'_, str> {
    if check(text, lines).is_ok() {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.chars().filter(|c| lines.allows(*c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_refuses_every_control_character() {
        for c in (0u32..0x20).chain([0x7f]).chain(0x80..0xa0) {
            let c = char::from_u32(c).unwrap();
            let err = check(&format!("a{c}b"), Lines::Single).unwrap_err();
            assert_eq!(err.character, c);
        }
    }

    #[test]
    fn multi_line_keeps_line_feeds_and_tabs_only() {
        assert!(check("a\nb\tc", Lines::Multi).is_ok());
        for bad in ['\0', '\r', '\u{1b}', '\u{7f}', '\u{9b}'] {
            assert!(check(&format!("a{bad}"), Lines::Multi).is_err(), "{bad:?}");
        }
        assert!(check("a\nb", Lines::Single).is_err());
    }

    #[test]
    fn other_unicode_is_text() {
        for ok in [
            "",
            "Zoë",
            "日本語",
            "emoji 🦀",
            "\u{a0}no-break",
            "\u{200b}",
        ] {
            assert!(check(ok, Lines::Single).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn the_error_names_the_character() {
        let err = check("a\u{0}", Lines::Single).unwrap_err();
        assert_eq!(
            err.to_string(),
            "must not contain control characters (found U+0000)"
        );
    }

    #[test]
    fn without_control_drops_only_what_the_policy_refuses() {
        assert_eq!(without_control("a\0b\nc\u{85}", Lines::Multi), "ab\nc");
        assert!(matches!(
            without_control("clean", Lines::Single),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn multi_line_fields_are_known() {
        assert_eq!(
            Lines::of_field("identity.v1.Role.description"),
            Lines::Multi
        );
        assert_eq!(
            Lines::of_field("identity.v1.Role.display_name"),
            Lines::Single
        );
    }
}
