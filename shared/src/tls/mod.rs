//! TLS of both services' gRPC servers and of portal-sync's client to identity.
//!
//! * [`TlsSettings`] — the `tls` section of each service's settings: a certificate chain and
//!   its private key (PEM files) turn TLS on; a client CA file turns on client-certificate
//!   verification (mTLS). Nothing set means plain text, the default for local use.
//! * [`ServerTls`] — the loaded server configuration behind an atomic swap: TLS 1.3 and 1.2
//!   only, ALPN `h2`, rustls with the ring provider. [`ServerTls::incoming`] turns a listener
//!   into a stream of TLS connections for tonic (whose `remote_addr()` and `peer_certs()` keep
//!   working), and [`ServerTls::watch`] re-reads the files on SIGHUP and when they change
//!   ([`reload`]): new handshakes use the new certificate, open connections keep theirs.
//! * [`client_config`] — a tonic client TLS configuration from a CA file and an optional
//!   client certificate and key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

mod client;
mod incoming;
pub mod reload;

pub use client::{ClientFileErrors, ClientFiles, client_config, is_https};
pub use reload::ServerTls;

/// The TLS part of a service's settings (`[tls]` in the file, `<PREFIX>TLS__CERT_FILE` etc. in
/// the environment, `--tls-cert-file` etc. on the command line).
///
/// `cert_file` and `key_file` go together; `client_ca_file` needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM, leaf first). Unset: plain text.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1). Keep it readable only by
    /// the service's user.
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the client certificates. Set: every client must present
    /// a certificate signed by one of them (mTLS); a client without one is refused.
    pub client_ca_file: Option<PathBuf>,
    /// How often (milliseconds) the files are checked for changes (default 2000); `0` reloads
    /// only on SIGHUP.
    pub reload_interval_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval_ms: 2000,
        }
    }
}

impl TlsSettings {
    /// How the server is reached with these settings, or why they are incomplete.
    pub fn transport(&self) -> Result<Transport, TlsError> {
        match (&self.cert_file, &self.key_file, &self.client_ca_file) {
            (None, None, None) => Ok(Transport::Plaintext),
            (Some(_), Some(_), None) => Ok(Transport::Tls),
            (Some(_), Some(_), Some(_)) => Ok(Transport::MutualTls),
            (Some(_), None, _) => Err(TlsError::Incomplete(
                "tls.cert_file is set without tls.key_file",
            )),
            (None, Some(_), _) => Err(TlsError::Incomplete(
                "tls.key_file is set without tls.cert_file",
            )),
            (None, None, Some(_)) => Err(TlsError::Incomplete(
                "tls.client_ca_file is set without tls.cert_file and tls.key_file",
            )),
        }
    }

    /// [`reload_interval_ms`](Self::reload_interval_ms) as a [`Duration`]; `None` when off.
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.reload_interval_ms > 0).then(|| Duration::from_millis(self.reload_interval_ms))
    }
}

/// How a server is reached: what the start-up log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No TLS.
    Plaintext,
    /// TLS; clients are not asked for a certificate.
    Tls,
    /// TLS, and every client presents a certificate signed by the configured CA.
    MutualTls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plaintext => "plaintext",
            Self::Tls => "tls",
            Self::MutualTls => "mtls",
        })
    }
}

/// Why TLS could not be set up. The texts name files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file that goes with another one is missing from the settings.
    #[error("incomplete TLS settings: {0}")]
    Incomplete(&'static str),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM section of the expected kind.
    #[error("{} holds no {what} in PEM form: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected there ("certificate", "private key").
        what: &'static str,
        /// The parser's reason.
        reason: String,
    },
    /// rustls refused the certificates or the key (for example a key of another certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA file cannot verify client certificates.
    #[error("client CA refused: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
    /// tonic refused the client configuration.
    #[error("TLS client configuration refused: {0}")]
    Client(#[from] tonic::transport::Error),
}

/// The ring provider: the only crypto provider of the workspace.
#[expect(
    deprecated,
    reason = "rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; \
              the workspace keeps ring (one provider, no aws-lc-rs C build) until it moves as a whole"
)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes of `path`.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM `bytes` of `path`; at least one.
fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        path: path.to_owned(),
        what: "certificate",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE section".into()));
    }
    Ok(certs)
}

/// The private key in the PEM `bytes` of `path`.
fn private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: "private key",
        reason: e.to_string(),
    })
}

/// The contents of a server's TLS files, read together (compared to notice a change).
#[derive(Clone, PartialEq, Eq)]
struct ServerFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// The paths of a server's TLS files (TLS configured).
#[derive(Debug, Clone)]
struct ServerPaths {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl ServerPaths {
    fn from_settings(settings: &TlsSettings) -> Result<Option<Self>, TlsError> {
        settings.transport()?;
        Ok(match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Some(Self {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: settings.client_ca_file.clone(),
            }),
            _ => None,
        })
    }

    fn read(&self) -> Result<ServerFiles, TlsError> {
        Ok(ServerFiles {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
            client_ca: self.client_ca.as_deref().map(read).transpose()?,
        })
    }

    /// The rustls configuration of `files`: TLS 1.3 and 1.2, ALPN `h2`, the client CA's
    /// verifier (a certificate required) when there is one.
    fn server_config(&self, files: &ServerFiles) -> Result<ServerConfig, TlsError> {
        let certs = certificates(&self.cert, &files.cert)?;
        let key = private_key(&self.key, &files.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match (&self.client_ca, &files.client_ca) {
            (Some(path), Some(bytes)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(path, bytes)? {
                    roots.add(cert)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
