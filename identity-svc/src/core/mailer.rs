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

/// Why a message was not delivered: a sentence for an operator (the delivery's `last_error`),
/// never a body nor a password.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mailbox directory cannot be written.
    #[error("cannot write to the mailbox directory {path}")]
    Mailbox {
        /// The file or directory.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The sender or recipient is not an address lettre can send to.
    #[error("the address {address:?} cannot be used in a message: {reason}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The message cannot be built.
    #[error("the message cannot be built: {0}")]
    Build(String),
    /// The relay is unreachable or refused the message.
    #[error("the SMTP relay {relay} did not accept the message")]
    Smtp {
        /// `host:port`.
        relay: String,
        /// What the SMTP client said.
        #[source]
        source: lettre::transport::smtp::Error,
    },
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
    /// The `Message-ID` header, angle brackets included (`<id@domain>`): the same on every
    /// attempt of one message, so a relay or a reader can tell a repeat. `None`: one is made.
    pub message_id: Option<String>,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("message_id", &self.message_id)
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
        /// The transport (boxed: it is large, the mailbox variant is a path).
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        /// Sender address.
        from: String,
        /// `host:port`, for the errors.
        relay: String,
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
        let mut builder = builder.port(settings.port).timeout(Some(SMTP_TIMEOUT));
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
            transport: Box::new(builder.build()),
            from: settings.from.clone(),
            relay: format!("{host}:{}", settings.port),
        })
    }

    /// Delivers one message.
    #[tracing::instrument(name = "mail_send", skip_all)]
    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        match self {
            Mailer::Mailbox(dir) => write_to_mailbox(dir, mail).await,
            Mailer::Smtp {
                transport,
                from,
                relay,
            } => {
                let parse = |a: &str| {
                    a.parse::<Mailbox>().map_err(|e| MailError::Address {
                        address: a.to_owned(),
                        reason: e.to_string(),
                    })
                };
                let message = Message::builder()
                    .from(parse(from)?)
                    .to(parse(&mail.to)?)
                    .subject(mail.subject)
                    .message_id(mail.message_id)
                    .body(mail.body)
                    .map_err(|e| MailError::Build(e.to_string()))?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|source| MailError::Smtp {
                        relay: relay.clone(),
                        source,
                    })
            }
        }
    }
}

/// The longest one SMTP command may take: shorter than the outbox's shortest lease
/// ([`crate::config::MailSettings`]), so a hung relay does not outlive a claim.
pub const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes `mail` as one `.eml` file of `dir`, named after the time it is written: whole or
/// not at all (a temporary name, then renamed), so a reader never sees half a message.
async fn write_to_mailbox(dir: &std::path::Path, mail: Mail) -> Result<(), MailError> {
    let failed = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| MailError::Mailbox { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(failed(dir))?;
    let name = format!(
        "{}-{}.eml",
        super::clock::SystemClock.now_micros(),
        uuid::Uuid::new_v4()
    );
    let message_id = mail
        .message_id
        .map(|id| format!("Message-ID: {id}\n"))
        .unwrap_or_default();
    let text = format!(
        "To: {}\nSubject: {}\n{message_id}Content-Type: text/plain; charset=utf-8\n\n{}\n",
        mail.to, mail.subject, mail.body
    );
    let path = dir.join(name);
    let partial = path.with_extension("eml.part");
    tokio::fs::write(&partial, text)
        .await
        .map_err(failed(&partial))?;
    tokio::fs::rename(&partial, &path)
        .await
        .map_err(failed(&path))
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
