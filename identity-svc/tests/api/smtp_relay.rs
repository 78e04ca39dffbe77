//! A real SMTP relay for the tests: `smtp_relay.py` (aiosmtpd, from PyPI) run as a child
//! process with a certificate from a CA the test made. It requires STARTTLS, then AUTH for one
//! user, and writes each message it accepts to its inbox directory.
//!
//! The relay's own log goes to `relay.log` in its directory, shown when a wait fails.
//! Without aiosmtpd the test is skipped, saying so on stderr, except under CI (`CI=true`),
//! where that is a failure.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shared::testkit::certs::TestCa;

/// The relay's AUTH user.
pub const USER: &str = "identity-relay-user";

/// A running relay; killed when dropped.
pub struct Relay {
    child: Option<Child>,
    port: u16,
    /// The CA that signed the relay's certificate (PEM file).
    pub ca_file: PathBuf,
    dir: tempfile::TempDir,
    /// What [`Relay::restart`] starts again: the relay's arguments and password.
    args: Vec<std::ffi::OsString>,
    password: String,
}

impl Relay {
    /// Starts the relay on a free port of 127.0.0.1 (STARTTLS, or TLS from the first byte
    /// when `implicit`), accepting `USER` with `password`; `None` (the test is skipped) when
    /// aiosmtpd is not installed outside CI.
    pub async fn start(test: &str, password: &str, implicit: bool) -> Option<Relay> {
        if !aiosmtpd_installed() {
            let ci = std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1"));
            assert!(
                !ci,
                "{test} needs aiosmtpd under CI: python3 -m pip install aiosmtpd"
            );
            eprintln!("SKIPPED: {test} needs aiosmtpd (python3 -m pip install aiosmtpd)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let ca = TestCa::new("SMTP relay test CA");
        let ca_file = ca.write_cert(dir.path(), "ca.pem");
        let cert = ca.server_cert(&["127.0.0.1", "localhost"], dir.path(), "relay");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args: Vec<std::ffi::OsString> = vec![
            "--port".into(),
            port.to_string().into(),
            "--user".into(),
            USER.into(),
            "--dir".into(),
            inbox.into(),
            "--cert".into(),
            cert.cert.into(),
            "--key".into(),
            cert.key.into(),
        ];
        if implicit {
            args.push("--implicit".into());
        }
        let mut relay = Relay {
            child: None,
            port,
            ca_file,
            dir,
            args,
            password: password.to_owned(),
        };
        relay.restart().await;
        Some(relay)
    }

    /// Kills the relay: connections to its port are refused until [`Relay::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the relay (again) on the same port, certificate and inbox, and waits until it
    /// accepts connections.
    pub async fn restart(&mut self) {
        self.stop();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/smtp_relay.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(&self.args)
            .env("SMTP_RELAY_PASSWORD", &self.password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("relay.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the SMTP relay: {e}"));
        let stdout = child.stdout.take().unwrap();
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        self.child = Some(child);
        let line = tokio::time::timeout(Duration::from_secs(20), first_line)
            .await
            .expect("the SMTP relay did not start within 20 s")
            .unwrap()
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP relay failed to start: {}",
            std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default()
        );
    }

    /// The `Message-ID` of each message it accepted, in order.
    pub fn message_ids(&self) -> Vec<String> {
        self.messages()
            .iter()
            .map(|m| {
                m.lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("message-id")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_else(|| panic!("a message without Message-ID:\n{m}"))
            })
            .collect()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The messages it accepted so far, in order.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("inbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Waits (with a deadline) until it holds `count` messages and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the relay holds {} messages, not {count}; its log:\n{}",
                messages.len(),
                std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn aiosmtpd_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
