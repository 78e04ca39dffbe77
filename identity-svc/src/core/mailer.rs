//! Delivers invitation messages: through SMTP when configured, otherwise into a local mailbox
//! directory (one `.eml` file per message) that operators and tests read.
//!
//! The message body carries the invitation secret; nothing here logs a body.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::Error;

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
    /// An SMTP relay (plain SMTP on the given host and port, for a local relay).
    Smtp {
        /// The transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// Sender address.
        from: String,
    },
}

impl Mailer {
    /// An SMTP mailer for `host:port` sending as `from`.
    pub fn smtp(host: &str, port: u16, from: String) -> Self {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .build();
        Mailer::Smtp { transport, from }
    }

    /// Delivers one message.
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
