//! The connection to identity: plain text for `http://`, TLS for `https://`, verifying
//! identity's certificate against `identity_ca_file` only and presenting portal-sync's own
//! certificate when one is configured (mTLS). Every call carries the infrastructure's token
//! and the current span's trace context (`traceparent`), so identity's spans join the sync's
//! trace.

use std::time::Duration;

use shared::proto::identity::v1 as pb;
use shared::tls::{ClientFileErrors, ClientFiles, TlsError};
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use super::{RunError, SyncSettings};

/// Adds the infrastructure's identity token and the current span's trace context.
#[derive(Clone)]
pub(super) struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        shared::traces::inject(req.metadata_mut());
        Ok(req)
    }
}

/// Largest identity message the sync accepts. A snapshot holds every user, role and role
/// assignment of the organization (at 100k users, some 210k messages of 100–200 bytes: tens
/// of MB), and a change event of a role lists its holders: tonic's default limit of 4 MiB
/// would make the sync of a large organization fail for good, retrying forever.
const MAX_IDENTITY_MESSAGE: usize = 1 << 30;

/// The client of identity's change feed the workers use.
pub(super) type AuditClient =
    pb::audit_client::AuditClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// A client of identity per `settings`, calling with `token` (connected on first use).
pub(super) fn client(settings: &SyncSettings, token: &str) -> Result<AuditClient, RunError> {
    let endpoint = identity(settings)?;
    let value = format!("Bearer {token}").parse().map_err(|_| {
        RunError::Identity(tonic::Status::invalid_argument(
            "identity token is not valid metadata",
        ))
    })?;
    Ok(
        pb::audit_client::AuditClient::with_interceptor(endpoint.connect_lazy(), Bearer(value))
            .max_decoding_message_size(MAX_IDENTITY_MESSAGE),
    )
}

/// What a misfit of the identity TLS settings says.
const TLS_ERRORS: ClientFileErrors = ClientFileErrors {
    ca_missing: "an https:// sync.identity_url needs sync.identity_ca_file",
    not_https: "sync.identity_ca_file, identity_cert_file and identity_key_file need an https:// \
                sync.identity_url",
    unpaired: "sync.identity_cert_file and sync.identity_key_file go together",
};

impl SyncSettings {
    /// Whether identity is reached over TLS (`https://`, in any case).
    pub fn identity_uses_tls(&self) -> bool {
        shared::tls::is_https(&self.identity_url)
    }

    /// The TLS files of the identity client.
    fn identity_files(&self) -> ClientFiles<'_> {
        ClientFiles {
            ca: self.identity_ca_file.as_deref(),
            cert: self.identity_cert_file.as_deref(),
            key: self.identity_key_file.as_deref(),
        }
    }

    /// Checks that the TLS settings fit the URL: `https://` needs `identity_ca_file`; TLS
    /// files with an `http://` URL are refused (they would silently go unused); the client
    /// certificate and key go together.
    pub fn check_tls(&self) -> Result<(), TlsError> {
        self.identity_files().check(&self.identity_url, &TLS_ERRORS)
    }
}

/// The endpoint of identity per `settings`; the TLS files are read now, so each connection
/// attempt picks up renewed ones.
pub(super) fn identity(settings: &SyncSettings) -> Result<Endpoint, RunError> {
    let endpoint = Endpoint::from_shared(settings.identity_url.trim().to_owned())?
        .connect_timeout(Duration::from_secs(5))
        // An open feed that goes silent (identity's host gone) breaks within 15 s, so the
        // status stops counting it as answering.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    match settings
        .identity_files()
        .config(&settings.identity_url, &TLS_ERRORS)?
    {
        Some(tls) => Ok(endpoint.tls_config(tls)?),
        None => Ok(endpoint),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn settings(url: &str, ca: bool, cert: bool, key: bool) -> SyncSettings {
        let file = |on: bool, name: &str| on.then(|| PathBuf::from(name));
        SyncSettings {
            identity_url: url.into(),
            identity_ca_file: file(ca, "/ca.pem"),
            identity_cert_file: file(cert, "/cert.pem"),
            identity_key_file: file(key, "/key.pem"),
            ..SyncSettings::default()
        }
    }

    #[test]
    fn tls_settings_must_fit_the_url() {
        assert!(
            settings("http://identity:1", false, false, false)
                .check_tls()
                .is_ok()
        );
        assert!(
            settings("HTTPS://identity:1", true, false, false)
                .check_tls()
                .is_ok()
        );
        assert!(
            settings("https://identity:1", true, true, true)
                .check_tls()
                .is_ok()
        );
        for (s, why) in [
            (
                settings("https://identity:1", false, false, false),
                "needs sync.identity_ca_file",
            ),
            (
                settings("http://identity:1", true, false, false),
                "need an https://",
            ),
            (
                settings("https://identity:1", true, true, false),
                "go together",
            ),
            (
                settings("https://identity:1", true, false, true),
                "go together",
            ),
        ] {
            let err = s.check_tls().unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_an_error_naming_it() {
        let s = settings("https://127.0.0.1:1", true, false, false);
        let err = identity(&s).unwrap_err().to_string();
        assert!(err.contains("/ca.pem"), "{err}");
    }
}
