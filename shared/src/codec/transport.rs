//! What tonic's transport refuses before the codec sees a request: a message over the size
//! limit (tonic answers `OUT_OF_RANGE`), a frame cut short or with a bad compression flag
//! (`INTERNAL`). Both reach the client without details, unlike every error of ours, which
//! carries `google.rpc.ErrorInfo`. [`RequestErrorsLayer`] rewrites such an answer to what the
//! codec answers for an undecodable request: `INVALID_ARGUMENT`, reason `MALFORMED_REQUEST`
//! in the service's domain, keeping tonic's message.
//!
//! It recognizes them by shape, not wording: a trailers-only answer (the call failed before a
//! handler answered) with code `OUT_OF_RANGE` or `INTERNAL` and no details. Our handlers never
//! answer so (their `INTERNAL` and `OUT_OF_RANGE` carry `ErrorInfo`: `shared::errors`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// Tower layer rewriting transport refusals of a request (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestErrorsLayer;

impl<S> Layer<S> for RequestErrorsLayer {
    type Service = RequestErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestErrors { inner }
    }
}

/// The service of [`RequestErrorsLayer`].
#[derive(Debug, Clone)]
pub struct RequestErrors<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestErrors<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let package = package_of(req.uri().path());
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(package) = package {
                rewrite(&package, response.headers_mut());
            }
            Ok(response)
        })
    }
}

/// `identity.v1` of `/identity.v1.Users/Login` (`None` for anything else, and for the
/// packages that are not ours: health, reflection).
fn package_of(path: &str) -> Option<String> {
    let service = path.strip_prefix('/')?.split('/').next()?;
    let (package, _) = service.rsplit_once('.')?;
    super::is_our_package(package).then(|| package.to_owned())
}

/// Rewrites a trailers-only transport refusal in `headers` (see the module documentation).
pub(crate) fn rewrite(package: &str, headers: &mut http::HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let transport =
        matches!(status.code(), Code::OutOfRange | Code::Internal) && status.details().is_empty();
    if !transport {
        return;
    }
    let replacement = super::malformed(package, status.message(), Vec::new());
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if let Err(error) = replacement.add_header(headers) {
        tracing::warn!(%error, "cannot encode the status of a malformed request");
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt as _;

    use super::*;

    fn refused(status: &Status) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        headers
    }

    #[test]
    fn the_size_limit_becomes_malformed_request() {
        let mut headers = refused(&Status::out_of_range(
            "Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes",
        ));
        rewrite("portal.v1", &mut headers);
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("too large"),
            "{}",
            status.message()
        );
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "MALFORMED_REQUEST");
        assert_eq!(info.domain, "portal.odc");
    }

    #[test]
    fn errors_with_details_are_ours_and_kept() {
        let ours = crate::errors::status("identity.odc", Code::OutOfRange, "TOKEN_AHEAD", "ahead");
        let mut headers = refused(&ours);
        rewrite("identity.v1", &mut headers);
        let status = Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::OutOfRange);
        let mut headers = refused(&Status::permission_denied("no"));
        rewrite("identity.v1", &mut headers);
        assert_eq!(
            Status::from_header_map(&headers).unwrap().code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn packages_come_from_the_path() {
        assert_eq!(
            package_of("/identity.v1.Users/Login").as_deref(),
            Some("identity.v1")
        );
        assert_eq!(package_of("/nothing"), None);
        assert_eq!(package_of("/grpc.health.v1.Health/Check"), None);
    }
}
