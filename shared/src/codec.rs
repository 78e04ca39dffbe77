//! The codec both services are generated with (`codec_path` in `build.rs`): prost's
//! ([`tonic_prost::ProstCodec`]), plus what a server owes a request it cannot use.
//!
//! * A request that cannot be decoded (bytes that are not a protobuf message, a wrong wire
//!   type, a truncated field, a string field holding invalid UTF-8) is answered
//!   `INVALID_ARGUMENT` with `google.rpc.ErrorInfo { reason: "MALFORMED_REQUEST", domain }`
//!   (and a `google.rpc.BadRequest` naming the string fields that are not UTF-8), where prost's
//!   codec answers `INTERNAL` without details.
//! * Every string field of every request, at any depth, is held to the text policy of
//!   [`crate::text`] (no control character; line feeds and tabs only in the fields documented as
//!   multi-line) before any handler runs: `INVALID_ARGUMENT` with a `google.rpc.BadRequest`
//!   naming each bad field (`user.display_name`). So NUL never reaches a database, whatever a
//!   handler forgets.
//!
//! Which messages are requests comes from the descriptor set ([`crate::proto`]): the input
//! types of our RPCs. A client (portal-sync's client of identity) decodes responses with the
//! same codec and keeps prost's behaviour for them.
//!
//! What the transport refuses before the codec sees the message (a message over the size
//! limit, a truncated frame) is turned into the same `MALFORMED_REQUEST` by
//! [`transport::RequestErrorsLayer`].

pub mod transport;
mod wire;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

use prost::bytes::Buf as _;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, MessageDescriptor};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use crate::errors::FieldViolations;

/// `ErrorInfo.reason` of a request that cannot be decoded.
pub const MALFORMED_REQUEST_REASON: &str = "MALFORMED_REQUEST";

/// The `ErrorInfo` domain of the services of protobuf package `package`: `identity.v1` →
/// `identity.odc`, `portal.v1` → `portal.odc` (each service's `ERROR_DOMAIN`).
pub fn error_domain(package: &str) -> String {
    let service = package.split('.').next().unwrap_or(package);
    format!("{service}.odc")
}

/// `INVALID_ARGUMENT`, reason [`MALFORMED_REQUEST_REASON`] in the domain of `package`, with a
/// `BadRequest` when `fields` names any.
pub fn malformed(package: &str, message: &str, fields: Vec<FieldViolation>) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        MALFORMED_REQUEST_REASON,
        error_domain(package),
        HashMap::new(),
    );
    if !fields.is_empty() {
        details.set_bad_request(fields);
    }
    Status::with_error_details(
        Code::InvalidArgument,
        format!("the request cannot be decoded: {message}"),
        details,
    )
}

/// Requests by package, then by name within it (looked up without allocating).
type Requests = HashMap<String, HashMap<String, MessageDescriptor>>;

/// The input types of every RPC of our descriptor set.
static REQUESTS: LazyLock<Requests> = LazyLock::new(|| {
    let mut out: Requests = HashMap::new();
    let Ok(pool) = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET) else {
        // The set is built by build.rs; `requests_are_known` fails the build's tests otherwise.
        return out;
    };
    for method in pool
        .services()
        .flat_map(|s| s.methods().collect::<Vec<_>>())
    {
        let input = method.input();
        let package = input.package_name().to_owned();
        let name = input
            .full_name()
            .strip_prefix(&format!("{package}."))
            .unwrap_or(input.full_name())
            .to_owned();
        out.entry(package).or_default().insert(name, input);
    }
    out
});

/// Whether `package` holds RPCs of ours.
fn is_our_package(package: &str) -> bool {
    REQUESTS.contains_key(package)
}

/// The descriptor of `package.name` when it is the input of one of our RPCs.
fn request_descriptor(package: &str, name: &str) -> Option<&'static MessageDescriptor> {
    REQUESTS.get(package)?.get(name)
}

/// [`ProstCodec`] whose decoder refuses undecodable requests and control characters cleanly
/// (see the module documentation).
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            inner: ProstCodec::<T, U>::default().decoder(),
        }
    }
}

/// Decodes `U`; for a request, as the module documentation says.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Name + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let Some(descriptor) = request_descriptor(U::PACKAGE, U::NAME) else {
            return self.inner.decode(buf);
        };
        let len = buf.remaining();
        let chunk = buf.chunk();
        let decoded = if chunk.len() == len {
            decode_request::<U>(descriptor, chunk)
        } else {
            let copy = buf.copy_to_bytes(len);
            decode_request::<U>(descriptor, &copy)
        };
        buf.advance(buf.remaining());
        decoded.map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// Decodes the request, then holds its string fields to the text policy. An undecodable
/// request is refused as such (`MALFORMED_REQUEST`, naming the string fields that are not
/// UTF-8) before any field is judged; then the control characters are ordinary bad fields
/// (`INVALID_ARGUMENT`).
fn decode_request<U: Message + Name + Default>(
    descriptor: &MessageDescriptor,
    bytes: &[u8],
) -> Result<U, Status> {
    let problems = match wire::check(descriptor, bytes) {
        Ok(problems) => problems,
        Err(wire::Malformed(why)) => return Err(malformed(U::PACKAGE, why, Vec::new())),
    };
    let not_utf8: Vec<FieldViolation> = problems
        .iter()
        .filter(|(_, p)| *p == wire::Problem::NotUtf8)
        .map(|(field, _)| FieldViolation::new(field, "must be valid UTF-8"))
        .collect();
    if !not_utf8.is_empty() {
        return Err(malformed(
            U::PACKAGE,
            "a string field is not valid UTF-8",
            not_utf8,
        ));
    }
    let decoded =
        U::decode(bytes).map_err(|e| malformed(U::PACKAGE, &e.to_string(), Vec::new()))?;
    if problems.is_empty() {
        return Ok(decoded);
    }
    let mut violations = FieldViolations::new(error_domain(U::PACKAGE));
    for (field, problem) in problems {
        if let wire::Problem::Control(c) = problem {
            violations.add(field, c.to_string());
        }
    }
    Err(violations.into_status())
}

#[cfg(test)]
mod tests;
