//! Delivers invitation messages: through SMTP when configured, otherwise into a local mailbox
//! directory (one `.eml` file per message) that operators and tests read.
//!
//! The message body carries the invitation secret; nothing here logs a body.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpSettings, SmtpTls};
use crate::error::Error;

/// Why the SMTP settings cannot make a mailer (said at start-up; never names the password).
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    /// AUTH without TLS would send the password in clear text.
    #[error(
        "smtp.username needs smtp.tls = \"starttls\" or \"implicit\" (AUTH would send the password in clear text)"
    )]
    AuthWithoutTls,
    /// A user name without a password, or the other way round.
    #[error("smtp.username and smtp.password (or smtp.password_file) go together")]
    HalfCredentials,
    /// The CA file cannot be read.
    #[error("smtp.ca_file: cannot read {path}: {source}")]
    CaFile {
        /// The file.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no PEM certificate.
    #[error("smtp.ca_file: no PEM certificate in {0}")]
    NoCertificate(String),
    /// The TLS parameters are unusable (e.g. a malformed certificate in the CA file).
    #[error("smtp TLS: {0}")]
    Tls(#[source] lettre::transport::smtp::Error),
}

/// A message to deliver.
#[derive(Clone)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body (may contain a secret: never log it).
    pub body: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Where messages go.
#[derive(Debug, Clone)]
pub enum Mailer {
    /// One file per message in this directory.
    Mailbox(PathBuf),
    /// An SMTP relay (plain, STARTTLS or implicit TLS; AUTH when configured).
    Smtp {
        /// The transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// Sender address.
        from: String,
    },
}

impl Mailer {
    /// An SMTP mailer for the relay of `settings` (its password already read from
    /// `password_file`, see [`crate::config::Settings::read_secret_files`]). With TLS the relay's
    /// certificate must chain to `ca_file` (or a public root) and name `host`.
    pub fn smtp(settings: &SmtpSettings) -> Result<Self, SmtpSetupError> {
        let host = settings.host.as_str();
        let builder = match settings.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Required(tls_parameters(settings)?)),
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Wrapper(tls_parameters(settings)?)),
        };
        let mut builder = builder.port(settings.port);
        match (&settings.username, &settings.password) {
            (None, None) => {}
            (Some(_), Some(_)) if settings.tls == SmtpTls::None => {
                return Err(SmtpSetupError::AuthWithoutTls);
            }
            (Some(user), Some(password)) => {
                builder = builder
                    .credentials(Credentials::new(user.clone(), password.expose().to_owned()));
            }
            _ => return Err(SmtpSetupError::HalfCredentials),
        }
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from: settings.from.clone(),
        })
    }

    /// Delivers one message.
    #[tracing::instrument(name = "mail_send", skip_all)]
    pub async fn send(&self, mail: Mail) -> Result<(), Error> {
        match self {
            Mailer::Mailbox(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| Error::Internal(format!("mailbox {}: {e}", dir.display())))?;
                let name = format!(
                    "{}-{}.eml",
                    super::clock::SystemClock.now_micros(),
                    uuid::Uuid::new_v4()
                );
                let text = format!(
                    "To: {}\nSubject: {}\nContent-Type: text/plain; charset=utf-8\n\n{}\n",
                    mail.to, mail.subject, mail.body
                );
                let path = dir.join(name);
                tokio::fs::write(&path, text)
                    .await
                    .map_err(|e| Error::Internal(format!("mailbox {}: {e}", path.display())))
            }
            Mailer::Smtp { transport, from } => {
                let parse = |a: &str| {
                    a.parse::<Mailbox>()
                        .map_err(|e| Error::Internal(format!("mail address: {e}")))
                };
                let message = Message::builder()
                    .from(parse(from)?)
                    .to(parse(&mail.to)?)
                    .subject(mail.subject)
                    .body(mail.body)
                    .map_err(|e| Error::Internal(format!("mail: {e}")))?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Internal(format!("smtp: {e}")))
            }
        }
    }
}

/// TLS to the relay `settings.host`: TLS 1.2 or later, its certificate verified against
/// `settings.ca_file` only when set, else against the public web PKI roots.
fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, SmtpSetupError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| SmtpSetupError::CaFile {
            path: path.display().to_string(),
            source,
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(SmtpSetupError::NoCertificate(path.display().to_string()));
        }
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(Certificate::from_pem(&pem).map_err(SmtpSetupError::Tls)?);
    }
    builder.build_rustls().map_err(SmtpSetupError::Tls)
}

#[cfg(test)]
mod tests {
    use shared::auth::Secret;

    use super::*;

    fn relay(tls: SmtpTls) -> SmtpSettings {
        SmtpSettings {
            host: "relay.example".into(),
            port: 587,
            from: "no-reply@example.com".into(),
            tls,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
        }
    }

    #[test]
    fn auth_needs_tls_and_both_halves_and_errors_never_show_the_password() {
        let mut s = relay(SmtpTls::None);
        s.username = Some("identity".into());
        s.password = Some(Secret::new("hunter2"));
        let err = Mailer::smtp(&s).unwrap_err();
        assert!(matches!(err, SmtpSetupError::AuthWithoutTls), "{err}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        s.tls = SmtpTls::Starttls;
        assert!(Mailer::smtp(&s).is_ok());
        s.password = None;
        let err = Mailer::smtp(&s).unwrap_err();
        assert!(matches!(err, SmtpSetupError::HalfCredentials), "{err}");
        s.username = None;
        s.password = Some(Secret::new("hunter2"));
        assert!(matches!(
            Mailer::smtp(&s).unwrap_err(),
            SmtpSetupError::HalfCredentials
        ));
    }

    #[test]
    fn a_ca_file_must_be_readable_and_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = relay(SmtpTls::Implicit);
        s.ca_file = Some(dir.path().join("missing.pem"));
        let err = Mailer::smtp(&s).unwrap_err();
        assert!(matches!(err, SmtpSetupError::CaFile { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        s.ca_file = Some(junk);
        assert!(matches!(
            Mailer::smtp(&s).unwrap_err(),
            SmtpSetupError::NoCertificate(_)
        ));
        // No TLS, no CA file read: a plain local relay needs nothing else.
        s.tls = SmtpTls::None;
        s.ca_file = None;
        assert!(Mailer::smtp(&s).is_ok());
    }
}
