//! A tonic client TLS configuration from PEM files: what portal-sync uses to reach identity,
//! and both services to reach the trace collector. [`ClientFiles`] holds a client's settings
//! (CA, own certificate and key) and checks that they fit the URL's scheme.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::{TlsError, certificates, private_key, read};

/// Trusts only the CA certificates in `ca_file`, presents `cert_file` with `key_file` when
/// both are given (mTLS), and checks the server's name against `domain` when given (otherwise
/// against the host of the URL). The files are read now: call it again to pick up new ones.
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
    domain: Option<&str>,
) -> Result<ClientTlsConfig, TlsError> {
    let ca = read(ca_file)?;
    certificates(ca_file, &ca)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert_file, key_file)) = identity {
        let cert = read(cert_file)?;
        certificates(cert_file, &cert)?;
        let key = read(key_file)?;
        private_key(key_file, &key)?;
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = domain {
        config = config.domain_name(domain);
    }
    Ok(config)
}

/// Whether `url` is reached over TLS: its scheme is `https://`, in any case.
pub fn is_https(url: &str) -> bool {
    url.trim()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// What the errors of [`ClientFiles::check`] say: each names the client's own settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientFileErrors {
    /// An `https://` URL without a CA file.
    pub ca_missing: &'static str,
    /// A TLS file with an `http://` URL (it would silently go unused).
    pub not_https: &'static str,
    /// A certificate without its key, or a key without its certificate.
    pub unpaired: &'static str,
}

/// The TLS files of a client, as its settings hold them.
#[derive(Debug, Clone, Copy)]
pub struct ClientFiles<'a> {
    /// The CA certificates (PEM) the server's certificate must chain to; nothing else is
    /// trusted.
    pub ca: Option<&'a Path>,
    /// The client's certificate chain (PEM), presented for mTLS.
    pub cert: Option<&'a Path>,
    /// The private key (PEM) of `cert`.
    pub key: Option<&'a Path>,
}

impl ClientFiles<'_> {
    /// Checks that the files fit `url`: `https://` needs the CA file, `http://` takes no file,
    /// a certificate goes with its key. Reads nothing.
    pub fn check(&self, url: &str, errors: &ClientFileErrors) -> Result<(), TlsError> {
        let any = self.ca.is_some() || self.cert.is_some() || self.key.is_some();
        if is_https(url) && self.ca.is_none() {
            return Err(TlsError::Incomplete(errors.ca_missing));
        }
        if !is_https(url) && any {
            return Err(TlsError::Incomplete(errors.not_https));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(TlsError::Incomplete(errors.unpaired));
        }
        Ok(())
    }

    /// The client configuration for `url` once [`check`](Self::check)ed: `None` for
    /// `http://`; for `https://`, the files are read now (call it again to pick up new ones).
    pub fn config(
        &self,
        url: &str,
        errors: &ClientFileErrors,
    ) -> Result<Option<ClientTlsConfig>, TlsError> {
        self.check(url, errors)?;
        match self.ca {
            Some(ca) if is_https(url) => client_config(ca, self.cert.zip(self.key), None).map(Some),
            _ => Ok(None),
        }
    }
}
