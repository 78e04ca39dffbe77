//! A tonic client TLS configuration from PEM files: what portal-sync uses to reach identity.

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
