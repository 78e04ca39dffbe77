//! A real OpenID provider for the tests: `oidc-provider-mock` (PyPI) run as a child process on
//! a free port of 127.0.0.1. It serves discovery and a JWKS (one RS256 key, generated at start,
//! so a restart on the same port is a key rotation), and issues ID tokens through its own
//! authorization-code flow, which [`Provider::id_token`] drives over HTTP like a browser and a
//! client would: authorize (the form's "sign in as"), then the token endpoint.
//!
//! Without the package the test is skipped, saying so on stderr, except under CI (`CI=true`),
//! where that is a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The redirect URI the tests' client uses (never followed).
const REDIRECT: &str = "http://127.0.0.1/callback";

/// A running provider; killed when dropped.
#[derive(Debug)]
pub struct Provider {
    child: Child,
    port: u16,
    token_max_age: u32,
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
}

fn installed() -> bool {
    Command::new("python3")
        .args(["-c", "import oidc_provider_mock"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Provider {
    /// Starts a provider whose tokens live `token_max_age` seconds; `None` (the test is
    /// skipped) when the package is not installed outside CI.
    pub async fn start(test: &str, token_max_age: u32) -> Option<Provider> {
        if !installed() {
            let ci = std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1"));
            assert!(
                !ci,
                "{test} needs oidc-provider-mock under CI: python3 -m pip install oidc-provider-mock"
            );
            eprintln!(
                "SKIPPED: {test} needs oidc-provider-mock (python3 -m pip install oidc-provider-mock)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("no free port: {e}"))
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"))
            .port();
        let log = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("no log file: {e}"));
        let child = spawn(port, token_max_age, &log);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("no HTTP client: {e}"));
        let p = Provider {
            child,
            port,
            token_max_age,
            log,
            http,
        };
        p.wait_ready().await;
        Some(p)
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the provider and starts it again on the same port: a new signing key.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.token_max_age, &self.log);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID provider did not start: {}",
                std::fs::read_to_string(self.log.path()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets the claims the provider gives subject `sub` (`email`, `email_verified`, ...).
    pub async fn set_user(&self, sub: &str, claims: serde_json::Value) {
        let r = self
            .http
            .put(format!("{}/users/{sub}", self.issuer()))
            .json(&claims)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the provider refused the user: {e}"));
        assert!(r.status().is_success(), "set user: {}", r.status());
    }

    /// An ID token for `sub`, issued to `client_id`, with `nonce` (the provider's own
    /// authorization-code flow).
    pub async fn id_token(&self, client_id: &str, sub: &str, nonce: &str) -> String {
        let r = self
            .http
            .post(format!("{}/oauth2/authorize", self.issuer()))
            .query(&[
                ("client_id", client_id),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "openid email profile"),
                ("nonce", nonce),
                ("state", "s"),
            ])
            .form(&[("sub", sub), ("action", "allow")])
            .send()
            .await
            .unwrap_or_else(|e| panic!("authorize failed: {e}"));
        let location = r
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("no redirect from authorize: {}", r.status()))
            .to_str()
            .unwrap_or_else(|e| panic!("the redirect is not text: {e}"))
            .to_owned();
        let code = reqwest::Url::parse(&location)
            .unwrap_or_else(|e| panic!("the redirect is not a URL: {e}"))
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map_or_else(|| panic!("no code in {location}"), |(_, v)| v.into_owned());
        let body: serde_json::Value = self
            .http
            .post(format!("{}/oauth2/token", self.issuer()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", client_id),
                ("client_secret", "unused"),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("the token endpoint failed: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("the token response is not JSON: {e}"));
        body["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token in {body}"))
            .to_owned()
    }
}

fn spawn(port: u16, token_max_age: u32, log: &tempfile::NamedTempFile) -> Child {
    Command::new("python3")
        .args(["-m", "oidc_provider_mock", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--token-max-age", &token_max_age.to_string()])
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap_or_else(|e| panic!("no log file: {e}")))
        .stderr(log.reopen().unwrap_or_else(|e| panic!("no log file: {e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start oidc-provider-mock: {e}"))
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
