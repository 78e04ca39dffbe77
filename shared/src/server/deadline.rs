//! The deadline of every call: a call that has no answer within the server's request timeout
//! (`grpc.request_timeout_secs`), or within the client's shorter `grpc-timeout`, is answered
//! `DEADLINE_EXCEEDED` with `google.rpc.ErrorInfo { reason: "DEADLINE_EXCEEDED", domain }` in
//! the server's domain, like every other error of ours. (tonic's own request timeout answers
//! `CANCELLED`, "Timeout expired", without details; the server no longer sets it.)
//!
//! The deadline bounds the wait for the call's answer, as tonic's does: a stream's deadline
//! covers its start, not the messages that follow.
//!
//! tonic still reads the client's `grpc-timeout` outside this layer. This layer takes its clock
//! before tonic does and tonic polls it first, so with the same deadline this answer wins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Code;
use tonic::codegen::http;
use tower::{Layer, Service};

/// `ErrorInfo.reason` of a call answered after its deadline passed.
pub const REASON: &str = "DEADLINE_EXCEEDED";

/// Tower layer answering calls past their deadline (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct DeadlineLayer {
    timeout: Duration,
    domain: Arc<str>,
}

impl DeadlineLayer {
    /// Calls get `timeout` (or the client's shorter `grpc-timeout`); expired ones are answered
    /// in `domain`.
    pub(crate) fn new(timeout: Duration, domain: impl Into<Arc<str>>) -> Self {
        Self {
            timeout,
            domain: domain.into(),
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            timeout: self.timeout,
            domain: Arc::clone(&self.domain),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Deadline<S> {
    inner: S,
    timeout: Duration,
    domain: Arc<str>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Deadline<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let limit = client_timeout(req.headers()).map_or(self.timeout, |c| c.min(self.timeout));
        // The clock starts before the inner call (and before tonic's, see the module docs).
        let expired = tokio::time::sleep(limit);
        let domain = Arc::clone(&self.domain);
        let response = self.inner.call(req);
        Box::pin(async move {
            tokio::select! {
                biased;
                result = response => result,
                () = expired => Ok(exceeded(&domain, limit).into_http()),
            }
        })
    }
}

/// The status of a call not answered within `limit`.
fn exceeded(domain: &str, limit: Duration) -> tonic::Status {
    crate::errors::status(
        domain,
        Code::DeadlineExceeded,
        REASON,
        format!(
            "the call was not answered within its deadline of {} ms",
            limit.as_millis()
        ),
    )
}

/// The client's `grpc-timeout` (1 to 8 digits and a unit: `H`, `M`, `S`, `m`, `u`, `n`);
/// `None` when absent or malformed.
fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let unit_at = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(unit_at);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// The `ErrorInfo` domain of a server running `service_names` (`identity.v1.Users` →
/// `identity.odc`); `grpc.odc` for a server naming none.
pub(crate) fn server_domain(service_names: &[&str]) -> String {
    crate::codec::error_domain(service_names.first().copied().unwrap_or("grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(value: &'static str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static(value));
        client_timeout(&headers)
    }

    #[test]
    fn the_client_timeout_is_read_in_every_unit_and_malformed_ones_are_ignored() {
        assert_eq!(timeout("2H"), Some(Duration::from_hours(2)));
        assert_eq!(timeout("3M"), Some(Duration::from_mins(3)));
        assert_eq!(timeout("4S"), Some(Duration::from_secs(4)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "+1S", "1.5S"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        assert_eq!(client_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn an_expired_call_carries_error_info_in_the_servers_domain() {
        use tonic_types::StatusExt as _;
        let domain = server_domain(&["portal.v1.Companies", "portal.v1.Sync"]);
        let status = exceeded(&domain, Duration::from_secs(2));
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("2000 ms"), "{}", status.message());
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (REASON, "portal.odc")
        );
    }
}
