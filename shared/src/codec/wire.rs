//! A schema-guided pass over an encoded request: every string field, at any depth, is checked
//! for UTF-8 and against the text policy ([`crate::text`]) and reported by its path in the
//! request (`user.display_name`, `support_case.cc[2]`), without decoding the message a second
//! time (one scan of the bytes, no allocation unless a field is bad).
//!
//! Only what a string check needs is read: keys, varints, lengths. Structure errors (a
//! truncated field, a bad wire type, a length past the end) are [`Malformed`].

use std::fmt::Write as _;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::text::{self, ControlCharacter, Lines};

/// How deep messages may nest (prost's own limit).
const MAX_DEPTH: usize = 100;

/// What is wrong with one string field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// A control character the field does not allow.
    Control(ControlCharacter),
}

/// The bytes are not a protobuf message (the description says where it went wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// The bad string fields of `bytes`, an encoded `message`: (path, problem), in wire order.
pub(crate) fn check(
    message: &MessageDescriptor,
    bytes: &[u8],
) -> Result<Vec<(String, Problem)>, Malformed> {
    let mut walk = Walk {
        path: Vec::new(),
        found: Vec::new(),
    };
    walk.message(message, bytes)?;
    Ok(walk.found)
}

struct Walk {
    /// The fields from the request down to the current message, with the index of each
    /// repeated one.
    path: Vec<(FieldDescriptor, Option<usize>)>,
    found: Vec<(String, Problem)>,
}

impl Walk {
    fn message(&mut self, message: &MessageDescriptor, bytes: &[u8]) -> Result<(), Malformed> {
        if self.path.len() > MAX_DEPTH {
            return Err(Malformed("messages nest too deeply"));
        }
        let mut r = Reader(bytes);
        // Occurrences so far of each repeated field (for the index in the path).
        let mut counts: Vec<(u32, usize)> = Vec::new();
        while !r.0.is_empty() {
            let (number, wire_type) = r.key()?;
            match wire_type {
                0 => {
                    r.varint()?;
                }
                1 => {
                    r.take(8)?;
                }
                5 => {
                    r.take(4)?;
                }
                2 => {
                    let len = r.varint()?;
                    let data = r.take(len)?;
                    if let Some(field) = message.get_field(number) {
                        let index = field.is_list().then(|| next_index(&mut counts, number));
                        self.field(field, index, data)?;
                    }
                }
                3 => r.skip_group(number, self.path.len())?,
                _ => return Err(Malformed("invalid wire type")),
            }
        }
        Ok(())
    }

    fn field(
        &mut self,
        field: FieldDescriptor,
        index: Option<usize>,
        data: &[u8],
    ) -> Result<(), Malformed> {
        match field.kind() {
            Kind::String => {
                let problem = match std::str::from_utf8(data) {
                    Err(_) => Some(Problem::NotUtf8),
                    Ok(s) => text_problem(&field, s),
                };
                if let Some(problem) = problem {
                    self.path.push((field, index));
                    let path = self.render();
                    self.path.pop();
                    self.found.push((path, problem));
                }
                Ok(())
            }
            Kind::Message(inner) => {
                self.path.push((field, index));
                let walked = self.message(&inner, data);
                self.path.pop();
                walked
            }
            // Bytes and packed scalars carry no text.
            _ => Ok(()),
        }
    }

    /// `a.b[2].c`: proto field names, the index of each repeated field.
    fn render(&self) -> String {
        let mut out = String::new();
        for (i, (field, index)) in self.path.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(field.name());
            if let Some(index) = index {
                let _ = write!(out, "[{index}]");
            }
        }
        out
    }
}

/// The policy of `field` applied to `s` (the multi-line list is consulted only when a control
/// character was found).
fn text_problem(field: &FieldDescriptor, s: &str) -> Option<Problem> {
    let err = text::check(s, Lines::Single).err()?;
    let lines = Lines::of_field(field.full_name());
    if lines == Lines::Single {
        return Some(Problem::Control(err));
    }
    text::check(s, lines).err().map(Problem::Control)
}

fn next_index(counts: &mut Vec<(u32, usize)>, number: u32) -> usize {
    if let Some((_, n)) = counts.iter_mut().find(|(f, _)| *f == number) {
        *n += 1;
        *n
    } else {
        counts.push((number, 0));
        0
    }
}

/// The unread rest of a message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in 0..10 {
            let Some((&byte, rest)) = self.0.split_first() else {
                return Err(Malformed("truncated varint"));
            };
            self.0 = rest;
            if shift == 9 && byte > 1 {
                return Err(Malformed("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Malformed("varint overflows 64 bits"))
    }

    fn key(&mut self) -> Result<(u32, u8), Malformed> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| Malformed("invalid field number"))?;
        if number == 0 || number > 536_870_911 {
            return Err(Malformed("invalid field number"));
        }
        // The low three bits: always fits.
        Ok((number, (key & 7) as u8))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], Malformed> {
        let len = usize::try_from(len).map_err(|_| Malformed("length past the end"))?;
        if len > self.0.len() {
            return Err(Malformed("length past the end"));
        }
        let (data, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(data)
    }

    /// Skips a (deprecated) group up to its end tag, as prost does for unknown fields.
    fn skip_group(&mut self, number: u32, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed("messages nest too deeply"));
        }
        loop {
            if self.0.is_empty() {
                return Err(Malformed("unterminated group"));
            }
            let (inner, wire_type) = self.key()?;
            match wire_type {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                5 => {
                    self.take(4)?;
                }
                2 => {
                    let len = self.varint()?;
                    self.take(len)?;
                }
                3 => self.skip_group(inner, depth + 1)?,
                4 if inner == number => return Ok(()),
                _ => return Err(Malformed("invalid wire type")),
            }
        }
    }
}
