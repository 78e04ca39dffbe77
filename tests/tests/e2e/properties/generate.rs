//! What the property suite sends: arbitrary requests of an RPC's input type, built from its
//! descriptor (`prost-reflect`), with strings drawn from the fixture's real resource names now
//! and then so that requests get past name parsing into validation and writes; and byte-level
//! mutations of their encoding.

use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message as _;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage as _, Value,
};

/// A string the generator plants in some string fields, which the invalid-UTF-8 mutation
/// replaces (same length) in the encoding.
pub const MARK: &str = "~utf8-mark~";
/// What [`MARK`] becomes: 11 bytes that are no UTF-8.
const NOT_UTF8: [u8; 11] = [
    0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xff,
];

/// How deep generated messages nest.
const MAX_DEPTH: usize = 3;

/// Control characters the generator plants: C0 (with NUL, tab, line feed), DEL, C1.
const CONTROL: &[char] = &[
    '\0', '\u{1}', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}',
];

/// A byte-level change of an encoded request.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Sent as encoded.
    None,
    /// One byte XORed with a non-zero mask.
    Flip(Index, u8),
    /// Cut after a prefix.
    Truncate(Index),
    /// Every [`MARK`] replaced by invalid UTF-8.
    InvalidUtf8,
    /// A field of the message appended with a wire type its kind never has.
    WrongWireType(Index),
    /// Random bytes appended.
    Append(Vec<u8>),
    /// Random bytes instead of the request.
    Replace(Vec<u8>),
}

/// One generated call: the request, how its bytes are changed, and who calls.
#[derive(Clone)]
pub struct Case {
    pub message: DynamicMessage,
    pub mutation: Mutation,
    /// Index into the target's callers.
    pub caller: Index,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("message", &Compact(&self.message))
            .field("mutation", &self.mutation)
            .field("caller", &self.caller)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Case {
    /// The bytes sent.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = self.message.encode_to_vec();
        match &self.mutation {
            Mutation::None => {}
            Mutation::Flip(at, mask) => {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= mask.max(&1);
                }
            }
            Mutation::Truncate(at) => {
                if !bytes.is_empty() {
                    bytes.truncate(at.index(bytes.len()));
                }
            }
            Mutation::InvalidUtf8 => replace_marks(&mut bytes),
            Mutation::WrongWireType(which) => {
                let fields: Vec<FieldDescriptor> = self.message.descriptor().fields().collect();
                if !fields.is_empty() {
                    bytes.extend(wrong_wire_type(&fields[which.index(fields.len())]));
                }
            }
            Mutation::Append(extra) => bytes.extend(extra),
            Mutation::Replace(other) => bytes.clone_from(other),
        }
        bytes
    }
}

fn replace_marks(bytes: &mut [u8]) {
    let mark = MARK.as_bytes();
    let mut i = 0;
    while i + mark.len() <= bytes.len() {
        if &bytes[i..i + mark.len()] == mark {
            bytes[i..i + mark.len()].copy_from_slice(&NOT_UTF8);
            i += mark.len();
        } else {
            i += 1;
        }
    }
}

/// `field` encoded with a wire type prost refuses for its kind: a varint for a
/// length-delimited kind, 32 fixed bits for a varint or 64-bit kind, 64 for a 32-bit kind.
fn wrong_wire_type(field: &FieldDescriptor) -> Vec<u8> {
    let number = u64::from(field.number());
    let (wire_type, payload): (u64, &[u8]) = match field.kind() {
        Kind::String | Kind::Bytes | Kind::Message(_) => (0, &[1]),
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => (1, &[0; 8]),
        _ => (5, &[0; 4]),
    };
    let mut out = Vec::new();
    let mut key = (number << 3) | wire_type;
    while key >= 0x80 {
        out.push(u8::try_from(key & 0x7f).unwrap() | 0x80);
        key >>= 7;
    }
    out.push(u8::try_from(key).unwrap());
    out.extend_from_slice(payload);
    out
}

/// Cases for one RPC's input type: mostly whole requests, often mutated.
pub fn cases(input: &MessageDescriptor, real: &[String]) -> BoxedStrategy<Case> {
    let mutation = prop_oneof![
        10 => Just(Mutation::None),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, m)| Mutation::Flip(i, m)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => Just(Mutation::InvalidUtf8),
        2 => any::<Index>().prop_map(Mutation::WrongWireType),
        1 => proptest::collection::vec(any::<u8>(), 1..12).prop_map(Mutation::Append),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Mutation::Replace),
    ];
    (message(input, real, 0), mutation, any::<Index>())
        .prop_map(|(message, mutation, caller)| Case {
            message,
            mutation,
            caller,
        })
        .boxed()
}

/// Arbitrary messages of `desc`: each field set or not, nested messages down to
/// [`MAX_DEPTH`].
fn message(
    desc: &MessageDescriptor,
    real: &[String],
    depth: usize,
) -> BoxedStrategy<DynamicMessage> {
    let mut fields = Vec::new();
    for field in desc.fields() {
        if field.is_map() || (depth >= MAX_DEPTH && matches!(field.kind(), Kind::Message(_))) {
            continue;
        }
        let value = if field.is_list() {
            proptest::collection::vec(single(&field, real, depth), 0..4)
                .prop_map(Value::List)
                .boxed()
        } else {
            single(&field, real, depth)
        };
        let f = field.clone();
        fields.push(
            proptest::option::weighted(0.7, value)
                .prop_map(move |v| v.map(|v| (f.clone(), v)))
                .boxed(),
        );
    }
    let desc = desc.clone();
    fields
        .prop_map(move |values| {
            let mut m = DynamicMessage::new(desc.clone());
            for (field, value) in values.into_iter().flatten() {
                m.set_field(&field, value);
            }
            m
        })
        .boxed()
}

/// One value of `field`'s kind.
fn single(field: &FieldDescriptor, real: &[String], depth: usize) -> BoxedStrategy<Value> {
    match field.kind() {
        Kind::String => string(field.name(), real).prop_map(Value::String).boxed(),
        Kind::Bytes => proptest::collection::vec(any::<u8>(), 0..16)
            .prop_map(|b| Value::Bytes(b.into()))
            .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => prop_oneof![-3..1_200i32, any::<i32>()]
            .prop_map(Value::I32)
            .boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => prop_oneof![
            -3..2_000i64,
            any::<i64>(),
            // Now-ish Unix seconds and microseconds.
            1_700_000_000i64..1_900_000_000,
            1_700_000_000_000_000i64..1_900_000_000_000_000,
        ]
        .prop_map(Value::I64)
        .boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(Value::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(Value::U64).boxed(),
        Kind::Float => any::<f32>().prop_map(Value::F32).boxed(),
        Kind::Double => any::<f64>().prop_map(Value::F64).boxed(),
        Kind::Enum(e) => {
            let known: Vec<i32> = e.values().map(|v| v.number()).collect();
            prop_oneof![
                4 => proptest::sample::select(known),
                1 => any::<i32>(),
            ]
            .prop_map(Value::EnumNumber)
            .boxed()
        }
        Kind::Message(m) => message(&m, real, depth + 1)
            .prop_map(Value::Message)
            .boxed(),
    }
}

/// Strings: real resource names and values of the fixture, the same with a control character
/// planted, arbitrary Unicode, email-like, long, empty, and the UTF-8 mark; for fields that
/// hold an email or a human text, mostly a plausible one (so requests reach validation and
/// writes), often with a control character planted.
fn string(field: &str, real: &[String]) -> BoxedStrategy<String> {
    let real = proptest::sample::select(real.to_vec()).boxed();
    let email = "[a-z]{1,8}@[a-z]{1,6}\\.example".boxed();
    let text = "[A-Za-z][A-Za-z ]{0,19}".boxed();
    let fitting = if field.contains("email") || field == "cc" || field == "acting_for" {
        Some(email.clone())
    } else if field.contains("display_name") || field == "subject" || field == "description" {
        Some(text)
    } else {
        None
    };
    let any = prop_oneof![
        10 => real.clone(),
        2 => planted(real),
        2 => proptest::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        2 => email,
        1 => "[ -~]{0,30}",
        1 => (1usize..700).prop_map(|n| "x".repeat(n)),
        1 => Just(String::new()),
        1 => Just(MARK.to_owned()),
    ]
    .boxed();
    match fitting {
        None => any,
        Some(fitting) => prop_oneof![
            6 => fitting.clone(),
            3 => planted(fitting),
            3 => any,
        ]
        .boxed(),
    }
}

/// `base` with a control character planted somewhere.
fn planted(base: BoxedStrategy<String>) -> BoxedStrategy<String> {
    (base, proptest::sample::select(CONTROL), any::<Index>())
        .prop_map(|(s, c, at)| {
            let cut = s
                .char_indices()
                .map(|(i, _)| i)
                .nth(at.index(s.chars().count() + 1));
            let (a, b) = s.split_at(cut.unwrap_or(s.len()));
            format!("{a}{c}{b}")
        })
        .boxed()
}

/// The paths (`a.b[2].c`) of the string fields of `m` holding a control character the text
/// policy refuses there, and of those holding [`MARK`].
pub fn text_paths(m: &DynamicMessage) -> (Vec<String>, Vec<String>) {
    let mut out = (Vec::new(), Vec::new());
    walk(m, "", &mut out);
    out.0.sort();
    out.1.sort();
    out
}

fn walk(m: &DynamicMessage, prefix: &str, out: &mut (Vec<String>, Vec<String>)) {
    for (field, value) in m.fields() {
        let path = if prefix.is_empty() {
            field.name().to_owned()
        } else {
            format!("{prefix}.{}", field.name())
        };
        match value {
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    one(&field, item, &format!("{path}[{i}]"), out);
                }
            }
            other => one(&field, other, &path, out),
        }
    }
}

fn one(field: &FieldDescriptor, value: &Value, path: &str, out: &mut (Vec<String>, Vec<String>)) {
    match value {
        Value::String(s) => {
            let lines = shared::text::Lines::of_field(field.full_name());
            if shared::text::check(s, lines).is_err() {
                out.0.push(path.to_owned());
            }
            if s.contains(MARK) {
                out.1.push(path.to_owned());
            }
        }
        Value::Message(inner) => walk(inner, path, out),
        _ => {}
    }
}

/// `{field: value, ...}` without the descriptors, for failure reports.
pub struct Compact<'a>(pub &'a DynamicMessage);

impl std::fmt::Debug for Compact<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (field, value) in self.0.fields() {
            map.entry(&field.name(), &CompactValue(value));
        }
        map.finish()
    }
}

struct CompactValue<'a>(&'a Value);

impl std::fmt::Debug for CompactValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Value::Message(m) => Compact(m).fmt(f),
            Value::List(items) => f
                .debug_list()
                .entries(items.iter().map(CompactValue))
                .finish(),
            other => other.fmt(f),
        }
    }
}
