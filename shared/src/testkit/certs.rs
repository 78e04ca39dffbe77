//! Certificates for tests, made with `rcgen`: a CA, server certificates (for `127.0.0.1` and
//! `localhost`, or given hosts), client certificates; written as PEM files into a directory of
//! the test's, and the client TLS configurations that trust them. The gRPC TLS tests, the
//! PostgreSQL cluster with TLS and the SMTP relay all take theirs from here.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::ClientTlsConfig;

use crate::tls::TlsSettings;

/// A certificate authority of a test.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    ///
    /// # Panics
    /// When rcgen fails (it does not for these parameters).
    pub fn new(name: &str) -> Self {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let issuer = CertifiedIssuer::self_signed(params, key).unwrap_or_else(|e| panic!("{e}"));
        Self { issuer }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self) -> Leaf {
        self.leaf(
            "server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// Writes the CA certificate to `dir/<file>` and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_cert(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), written to
    /// `dir/<stem>.crt` and `dir/<stem>.key` with mode 0600 (PostgreSQL refuses a key readable
    /// by others).
    ///
    /// # Panics
    /// When a host is no valid name or the files cannot be written.
    pub fn server_cert(&self, hosts: &[&str], dir: &Path, stem: &str) -> ServerCert {
        let name = hosts.first().copied().unwrap_or("server");
        let leaf = self.leaf(name, hosts, ExtendedKeyUsagePurpose::ServerAuth);
        let files = ServerCert {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        write_private(&files.cert, &leaf.cert_pem);
        write_private(&files.key, &leaf.key_pem);
        files
    }

    fn leaf(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("{e}"));
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The PEM files of a server certificate and its key.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM), mode 0600.
    pub key: PathBuf,
}

/// Writes `text` to `path` with mode 0600.
fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// PEM files of a test in a temporary directory, written (and replaced) by name.
#[derive(Debug)]
pub struct PemDir {
    dir: tempfile::TempDir,
}

impl Default for PemDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PemDir {
    /// An empty directory.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// The path of `name` inside.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` (replacing it atomically: written beside, then renamed, the
    /// way certificate managers do) and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &path)
            .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
        path
    }

    /// Writes `leaf` as `<name>.pem` and `<name>.key`; returns both paths.
    pub fn write_leaf(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.pem"), &leaf.cert_pem),
            self.write(&format!("{name}.key"), &leaf.key_pem),
        )
    }

    /// Server settings serving `server.pem`/`server.key` (written from a new certificate of
    /// `ca`), requiring client certificates of `client_ca` when given (written as
    /// `client-ca.pem`), checking the files every `reload_interval_ms`.
    pub fn server_settings(
        &self,
        ca: &TestCa,
        client_ca: Option<&TestCa>,
        reload_interval_ms: u64,
    ) -> TlsSettings {
        let (cert, key) = self.write_leaf("server", &ca.server());
        TlsSettings {
            cert_file: Some(cert),
            key_file: Some(key),
            client_ca_file: client_ca.map(|ca| self.write("client-ca.pem", &ca.pem())),
            reload_interval_ms,
        }
    }
}

/// A client configuration trusting only `ca`, presenting `identity` when given.
pub fn client_config(ca: &TestCa, identity: Option<&Leaf>) -> ClientTlsConfig {
    let config =
        ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()));
    match identity {
        Some(leaf) => config.identity(tonic::transport::Identity::from_pem(
            &leaf.cert_pem,
            &leaf.key_pem,
        )),
        None => config,
    }
}
