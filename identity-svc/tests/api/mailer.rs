//! Invitations through SMTP when a relay is configured (a minimal relay run by the test).

use std::sync::{Arc, Mutex};

use shared::proto::identity::v1 as pb;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::*;

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
