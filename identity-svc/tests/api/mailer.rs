//! Invitations through SMTP when a relay is configured: plain SMTP to a minimal relay run by
//! the test, and STARTTLS with AUTH to a real relay (aiosmtpd, see `smtp_relay.rs`).

use std::sync::{Arc, Mutex};

use shared::proto::identity::v1 as pb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use identity_svc::config::{SmtpSettings, SmtpTls};
use identity_svc::core::mailer::{Mail, Mailer};

use crate::helpers::*;
use crate::smtp_relay::{self, Relay};

crate::api_tests!(invitations_go_out_through_smtp_when_configured);

/// Accepts SMTP sessions on `listener` and records each message's DATA.
fn relay(listener: TcpListener, inbox: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let (r, mut w) = socket.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 relay.test ESMTP\r\n").await.ok();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            inbox.lock().unwrap().push(data.take().unwrap_or_default());
                            w.write_all(b"250 queued\r\n").await.ok();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 relay.test\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            w.write_all(b"221 bye\r\n").await.ok();
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(reply).await.ok();
                }
            });
        }
    });
}

async fn invitations_go_out_through_smtp_when_configured(b: Backend) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    relay(listener, inbox.clone());
    let mut app = spawn_app(b).await;
    app.stop().await;
    app.tweak = Some(Box::new(move |s| {
        s.smtp = Some(identity_svc::config::SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            from: "noreply@odc.example".into(),
            tls: SmtpTls::None,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
        });
    }));
    app.start().await;
    let org = app.create_org("Mail", "first@mail.example").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let message = loop {
        if let Some(m) = inbox.lock().unwrap().first().cloned() {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message reached the relay"
        );
        tokio::task::yield_now().await;
    };
    assert!(message.contains("first@mail.example"), "{message}");
    let token = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("invitation_token: "))
        .unwrap()
        .to_owned();
    // Nothing went to the mailbox directory.
    assert!(!app.mailbox().exists() || std::fs::read_dir(app.mailbox()).unwrap().next().is_none());
    let user = app
        .users(None)
        .accept_invitation(pb::AcceptInvitationRequest {
            invitation_token: token,
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, "first@mail.example");
    let _ = org;
}

/// The settings of identity for `relay`: STARTTLS verified against the relay's CA, AUTH with
/// the password read from `password_file`.
fn starttls_settings(relay: &Relay, password_file: &std::path::Path) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: relay.port(),
        from: "noreply@odc.example".into(),
        tls: SmtpTls::Starttls,
        ca_file: Some(relay.ca_file.clone()),
        username: Some(smtp_relay::USER.into()),
        password: None,
        password_file: Some(password_file.to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_go_out_over_starttls_with_auth_and_a_wrong_password_delivers_nothing() {
    const PASSWORD_OF_RELAY: &str = "relay-pass-7f3a";
    let test =
        "mailer::invitations_go_out_over_starttls_with_auth_and_a_wrong_password_delivers_nothing";
    let Some(relay) = Relay::start(test, PASSWORD_OF_RELAY, false).await else {
        return;
    };
    let secrets = tempfile::tempdir().unwrap();
    let right = secrets.path().join("right");
    std::fs::write(&right, format!("{PASSWORD_OF_RELAY}\n")).unwrap();
    let wrong = secrets.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();

    let mut app = spawn_app(Backend::Sqlite).await;
    app.stop().await;
    let smtp = starttls_settings(&relay, &right);
    app.tweak = Some(Box::new(move |s| {
        s.smtp = Some(smtp.clone());
        s.read_secret_files().unwrap();
    }));
    app.start().await;
    app.create_org("Mail over TLS", "first@tls.example").await;
    let message = relay.wait_for(1).await.remove(0);
    assert!(message.contains("first@tls.example"), "{message}");
    let token = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("invitation_token: "))
        .unwrap()
        .to_owned();
    assert!(!app.mailbox().exists() || std::fs::read_dir(app.mailbox()).unwrap().next().is_none());
    let user = app
        .users(None)
        .accept_invitation(pb::AcceptInvitationRequest {
            invitation_token: token,
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.email, "first@tls.example");

    // A wrong password: the organization and its invitation are made (it can be resent), the
    // relay refuses the AUTH and nothing is delivered. The call answers after the attempt.
    app.stop().await;
    let smtp = starttls_settings(&relay, &wrong);
    app.tweak = Some(Box::new(move |s| {
        s.smtp = Some(smtp.clone());
        s.read_secret_files().unwrap();
    }));
    app.start().await;
    app.create_org("Wrong password", "second@tls.example").await;
    assert_eq!(
        relay.messages().len(),
        1,
        "a message got through a refused AUTH"
    );

    // What the delivery says: the relay's refusal, never the password.
    let mut settings = starttls_settings(&relay, &wrong);
    settings.password = Some(shared::auth::Secret::new("not-the-password"));
    let error = Mailer::smtp(&settings)
        .unwrap()
        .send(mail("third@tls.example"))
        .await
        .unwrap_err();
    // What an operator reads (the delivery's last_error): the error with its causes.
    let error = shared::health::with_causes(&error);
    assert!(
        error.contains("535") || error.contains("uthentication"),
        "{error}"
    );
    assert!(!error.contains("not-the-password"), "{error}");
    // A relay whose certificate does not chain to the configured CA is refused before AUTH.
    let other_ca = shared::testkit::certs::TestCa::new("another CA");
    settings.ca_file = Some(other_ca.write_cert(secrets.path(), "other-ca.pem"));
    settings.password = Some(shared::auth::Secret::new(PASSWORD_OF_RELAY));
    let error = Mailer::smtp(&settings)
        .unwrap()
        .send(mail("fourth@tls.example"))
        .await
        .unwrap_err();
    // What an operator reads (the delivery's last_error): the error with its causes.
    let error = shared::health::with_causes(&error);
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "{error}"
    );
    assert_eq!(relay.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers_with_auth() {
    let test = "mailer::implicit_tls_delivers_with_auth";
    let Some(relay) = Relay::start(test, "implicit-pass", true).await else {
        return;
    };
    let settings = SmtpSettings {
        tls: SmtpTls::Implicit,
        password: Some(shared::auth::Secret::new("implicit-pass")),
        password_file: None,
        ..starttls_settings(&relay, std::path::Path::new("unused"))
    };
    Mailer::smtp(&settings)
        .unwrap()
        .send(mail("implicit@tls.example"))
        .await
        .unwrap();
    let message = relay.wait_for(1).await.remove(0);
    assert!(message.contains("implicit@tls.example"), "{message}");
}

fn mail(to: &str) -> Mail {
    Mail {
        to: to.into(),
        subject: "Test".into(),
        body: "Hello".into(),
        message_id: None,
    }
}
