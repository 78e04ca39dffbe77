//! Property-based tests of every RPC of both services, through the real servers, on SQLite and
//! PostgreSQL: arbitrary requests of each RPC's input type (enumerated from the descriptor
//! set with `prost-reflect`) and byte-level mutations of them (flipped bytes, truncation,
//! wrong wire types, invalid UTF-8 in string fields, control characters in strings), sent as
//! raw bytes as the fixture's administrator, the operator or anonymously. For every case:
//!
//! * never `INTERNAL`, `UNKNOWN` or `DATA_LOSS`, and every error carries `ErrorInfo` in the
//!   service's domain;
//! * a request that does not decode is `INVALID_ARGUMENT` (`MALFORMED_REQUEST`; the string
//!   fields holding invalid UTF-8 named), and one whose strings hold a control character their
//!   field refuses is `INVALID_ARGUMENT` naming each such field;
//! * nothing is stored from a refused request (a fingerprint of the database);
//! * no panic anywhere in the services; the server answers health `SERVING` after each RPC.
//!
//! `PROPERTY_CASES` sets the cases per RPC (default [`DEFAULT_CASES`]), e.g.
//! `PROPERTY_CASES=5000` for a deeper run (under nextest with `--profile long`, whose time
//! limit allows it; `.config/nextest.toml`).

mod generate;
mod regressions;
mod targets;

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::bytes::{Buf as _, BufMut as _};
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::harness::Backend;
use generate::{Case, Mutation};
use targets::Target;

crate::e2e_tests!(
    every_identity_rpc_refuses_bad_input_cleanly,
    every_portal_rpc_refuses_bad_input_cleanly,
    oversized_requests_are_invalid_argument,
    identity_refuses_control_characters_and_invalid_utf8,
    portal_refuses_control_characters_and_invalid_utf8,
);

async fn identity_refuses_control_characters_and_invalid_utf8(b: Backend) {
    regressions::identity(b).await;
}

async fn portal_refuses_control_characters_and_invalid_utf8(b: Backend) {
    regressions::portal(b).await;
}

/// Cases per RPC unless `PROPERTY_CASES` says otherwise.
const DEFAULT_CASES: u32 = 200;

fn cases_per_rpc() -> u32 {
    std::env::var("PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

async fn every_identity_rpc_refuses_bad_input_cleanly(b: Backend) {
    run(targets::identity(b).await, b).await;
}

async fn every_portal_rpc_refuses_bad_input_cleanly(b: Backend) {
    run(targets::portal(b).await, b).await;
}

/// Runs the cases of every RPC of the target's package, one RPC after the other.
async fn run(target: Target, backend: Backend) {
    install_panic_counter();
    let pool = DescriptorPool::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    let methods: Vec<MethodDescriptor> = pool
        .services()
        .filter(|s| s.package_name() == target.package)
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .collect();
    assert!(!methods.is_empty(), "no RPC in {}", target.package);
    let cases = cases_per_rpc();
    let target = Arc::new(target);
    let started = Instant::now();
    for method in &methods {
        let (t, m) = (Arc::clone(&target), method.clone());
        let handle = tokio::runtime::Handle::current();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut runner = TestRunner::new(Config {
                cases,
                failure_persistence: None,
                max_shrink_iters: 256,
                ..Config::default()
            });
            let strategy = generate::cases(&m.input(), &t.real);
            runner.run(&strategy, |case| handle.block_on(one_case(&t, &m, case)))
        })
        .await
        .unwrap();
        if let Err(failure) = outcome {
            panic!("{}: {failure}", method.full_name());
        }
        assert_serving(&target).await;
        if method.name() == "Logout" {
            target.refresh_session().await;
        }
    }
    eprintln!(
        "property suite {} on {backend:?}: {} RPCs x {cases} cases in {:.1?}; answers: {:?}",
        target.package,
        methods.len(),
        started.elapsed(),
        target.codes.lock().unwrap()
    );
}

/// What the answer to a case must be.
#[derive(Debug)]
enum Expect {
    /// Anything but a server fault.
    Any,
    /// INVALID_ARGUMENT with reason MALFORMED_REQUEST; the fields named when known.
    Malformed(Vec<String>),
    /// INVALID_ARGUMENT naming (at least) these fields.
    Fields(Vec<String>),
}

fn expectation(method: &MethodDescriptor, case: &Case, bytes: &[u8]) -> Expect {
    match DynamicMessage::decode(method.input(), bytes) {
        Err(_) => {
            let (_, marks) = generate::text_paths(&case.message);
            let only_utf8 = matches!(case.mutation, Mutation::InvalidUtf8);
            Expect::Malformed(if only_utf8 { marks } else { Vec::new() })
        }
        Ok(decoded) => {
            let (control, _) = generate::text_paths(&decoded);
            if control.is_empty() {
                Expect::Any
            } else {
                Expect::Fields(control)
            }
        }
    }
}

async fn one_case(t: &Target, method: &MethodDescriptor, case: Case) -> Result<(), TestCaseError> {
    let bytes = case.bytes();
    let expect = expectation(method, &case, &bytes);
    let before = t.baseline().await;
    let panics = PANICS.load(Ordering::SeqCst);
    let answer = call(t, method, bytes, t.caller(case.caller)).await;
    proptest::prop_assert_eq!(PANICS.load(Ordering::SeqCst), panics, "a service panicked");
    let code = answer.as_ref().err().map_or(Code::Ok, Status::code);
    *t.codes
        .lock()
        .unwrap()
        .entry(format!("{code:?}"))
        .or_default() += 1;
    let after = t.fingerprint().await;
    t.set_baseline(after.clone());
    let Err(status) = answer else {
        proptest::prop_assert!(
            matches!(expect, Expect::Any),
            "answered OK where {:?} was expected",
            expect
        );
        return Ok(());
    };
    judge(t, &status, &expect)?;
    proptest::prop_assert_eq!(
        &after,
        &before,
        "a refused request changed the database: {:?}",
        status
    );
    Ok(())
}

fn judge(t: &Target, status: &Status, expect: &Expect) -> Result<(), TestCaseError> {
    proptest::prop_assert!(
        !matches!(
            status.code(),
            Code::Internal | Code::Unknown | Code::DataLoss
        ),
        "server fault: {:?}",
        status
    );
    let details = status.get_error_details();
    let info = details.error_info();
    let domain = shared::codec::error_domain(t.package);
    proptest::prop_assert!(
        info.is_some_and(|i| i.domain == domain),
        "no ErrorInfo of {}: {:?}",
        domain,
        status
    );
    let named: Vec<String> = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    match expect {
        Expect::Any => {}
        Expect::Malformed(fields) => {
            proptest::prop_assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status);
            let reason = info.map(|i| i.reason.as_str()).unwrap_or_default();
            proptest::prop_assert_eq!(reason, "MALFORMED_REQUEST", "{:?}", status);
            for f in fields {
                proptest::prop_assert!(named.contains(f), "{} not named: {:?}", f, status);
            }
        }
        Expect::Fields(fields) => {
            proptest::prop_assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status);
            for f in fields {
                proptest::prop_assert!(named.contains(f), "{} not named: {:?}", f, status);
            }
        }
    }
    Ok(())
}

/// Sends `body` as the request of `method` (a server stream counts as answered once its
/// headers arrive).
async fn call(
    t: &Target,
    method: &MethodDescriptor,
    body: Vec<u8>,
    (token, acting_for): targets::Caller,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(t.channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let mut request = tonic::Request::new(body);
    request.set_timeout(Duration::from_secs(20));
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    if let Some(who) = acting_for {
        request
            .metadata_mut()
            .insert("x-acting-for", MetadataValue::try_from(who).unwrap());
    }
    let path = http::uri::PathAndQuery::from_str(&format!(
        "/{}/{}",
        method.parent_service().full_name(),
        method.name()
    ))
    .unwrap();
    if method.is_server_streaming() {
        grpc.server_streaming(request, path, RawCodec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(request, path, RawCodec).await.map(|_| ())
    }
}

async fn assert_serving(t: &Target) {
    let status = tonic_health::pb::health_client::HealthClient::new(t.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the health check answers")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// Panics raised outside this test crate (in a service) since the process started.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn install_panic_counter() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .location()
                .is_some_and(|l| !l.file().starts_with("tests/"));
            if ours {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Requests over the size limit (4 MiB) are INVALID_ARGUMENT with ErrorInfo, not tonic's
/// OUT_OF_RANGE without details; on each service and for a server-streaming RPC.
async fn oversized_requests_are_invalid_argument(b: Backend) {
    let identity = targets::identity(b).await;
    let portal = targets::portal(b).await;
    let pool = DescriptorPool::decode(shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    for (t, method) in [
        (&identity, "identity.v1.Users.CreateUser"),
        (&identity, "identity.v1.Audit.WatchChanges"),
        (&portal, "portal.v1.Companies.CreateCompany"),
    ] {
        let (service, name) = method.rsplit_once('.').unwrap();
        let method = pool
            .get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == name))
            .unwrap();
        // Field 1 (a string) holding 4 MiB + 1 byte.
        let size = 4 * 1024 * 1024 + 1;
        let mut body = vec![0x0a];
        let mut n = size;
        while n >= 0x80 {
            body.push(u8::try_from(n & 0x7f).unwrap() | 0x80);
            n >>= 7;
        }
        body.push(u8::try_from(n).unwrap());
        body.resize(body.len() + size, b'a');
        let before = t.fingerprint().await;
        let caller = t.callers.lock().unwrap()[0].clone();
        let status = call(t, &method, body, caller).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "MALFORMED_REQUEST");
        assert_eq!(info.domain, shared::codec::error_domain(t.package));
        assert_eq!(t.fingerprint().await, before);
        assert_serving(t).await;
    }
}

/// Sends and receives raw protobuf bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}
