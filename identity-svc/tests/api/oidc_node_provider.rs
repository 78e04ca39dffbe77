//! A second real OpenID provider for the tests, one that signs ES256: the certified
//! `oidc-provider` (npm), configured by `oidc_node_provider.mjs` and run with node as a child
//! process on a free port of 127.0.0.1. Its key set holds an EC P-256 key and an RSA key made at
//! start (so a restart on the same port is a key rotation); client [`ES256_CLIENT`] gets ID
//! tokens signed ES256, client [`RS256_CLIENT`] RS256. [`Provider::id_token`] drives the
//! provider's authorization-code flow over HTTP like a browser and a client would: authorize
//! (with `login_hint`, which the script's interaction signs in), its redirects with the cookies
//! they set, then the token endpoint.
//!
//! `.ci/run` installs the package, pinned, into `.ci/.tools/oidc-provider` (git-ignored).
//! Without node or the package the test is skipped, saying so on stderr, except under CI
//! (`CI=true`), where that is a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// The client whose ID tokens are signed ES256.
pub const ES256_CLIENT: &str = "odc-portal";
/// The client whose ID tokens are signed RS256.
pub const RS256_CLIENT: &str = "odc-portal-rs256";
/// The redirect URI of both clients (never followed).
const REDIRECT: &str = "http://127.0.0.1/callback";
/// The secret of both clients.
const SECRET: &str = "secret";
/// How to install what the tests need (from the repository's root).
const INSTALL: &str =
    "npm install --prefix .ci/.tools/oidc-provider --no-save oidc-provider@9.13.3";

/// A running provider; killed when dropped.
pub struct Provider {
    child: Child,
    port: u16,
    accounts: String,
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
}

/// Where `.ci/run` installs the package.
fn node_modules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/.tools/oidc-provider/node_modules")
}

fn installed() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    node && node_modules().join("oidc-provider/package.json").is_file()
}

impl Provider {
    /// Starts a provider that knows `accounts` (subject → claims); `None` (the test is skipped)
    /// when node or the package is missing outside CI.
    pub async fn start(test: &str, accounts: &serde_json::Value) -> Option<Provider> {
        if !installed() {
            let ci = std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1"));
            assert!(
                !ci,
                "{test} needs node and oidc-provider under CI: {INSTALL}"
            );
            eprintln!("SKIPPED: {test} needs node and oidc-provider ({INSTALL})");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let accounts = accounts.to_string();
        let child = spawn(port, &accounts, &log);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let p = Provider {
            child,
            port,
            accounts,
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

    /// Stops the provider and starts it again on the same port: new signing keys.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, &self.accounts, &self.log);
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

    /// The provider's published key set, read the way a client reads it: through the
    /// discovery document's `jwks_uri`.
    pub async fn jwks(&self) -> serde_json::Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        let doc: serde_json::Value = self.get_json(&url).await;
        self.get_json(doc["jwks_uri"].as_str().expect("jwks_uri"))
            .await
    }

    async fn get_json(&self, url: &str) -> serde_json::Value {
        let r = self.http.get(url).send().await.unwrap();
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        r.json().await.unwrap()
    }

    /// An ID token for `sub`, issued to `client_id`, with `nonce` (the provider's own
    /// authorization-code flow).
    pub async fn id_token(&self, client_id: &str, sub: &str, nonce: &str) -> String {
        let mut url = Url::parse(&format!("{}/auth", self.issuer())).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile")
            .append_pair("nonce", nonce)
            .append_pair("state", "s")
            .append_pair("login_hint", sub);
        let code = self.follow_to_code(url).await;
        let r = self
            .http
            .post(format!("{}/token", self.issuer()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", client_id),
                ("client_secret", SECRET),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        body["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token ({status}): {body}"))
            .to_owned()
    }

    /// Follows the authorization's redirects (authorize → interaction → authorize again),
    /// carrying the cookies they set, up to the redirect URI; its `code`.
    async fn follow_to_code(&self, mut url: Url) -> String {
        let mut cookies = BTreeMap::new();
        for _ in 0..5 {
            let mut req = self.http.get(url.clone());
            if !cookies.is_empty() {
                let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                req = req.header(COOKIE, jar.join("; "));
            }
            let r = req.send().await.unwrap();
            for c in r.headers().get_all(SET_COOKIE) {
                let pair = c.to_str().unwrap().split(';').next().unwrap_or_default();
                if let Some((k, v)) = pair.split_once('=') {
                    cookies.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
            let Some(location) = r.headers().get(LOCATION) else {
                let status = r.status();
                panic!(
                    "no redirect from {url} ({status}): {}",
                    r.text().await.unwrap()
                );
            };
            let next = url.join(location.to_str().unwrap()).unwrap();
            if next.as_str().starts_with(REDIRECT) {
                return next
                    .query_pairs()
                    .find(|(k, _)| k == "code")
                    .map_or_else(|| panic!("no code in {next}"), |(_, v)| v.into_owned());
            }
            url = next;
        }
        panic!("the authorization did not reach the redirect URI");
    }
}

fn spawn(port: u16, accounts: &str, log: &tempfile::NamedTempFile) -> Child {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/oidc_node_provider.mjs"
    );
    Command::new("node")
        .arg(script)
        .arg(node_modules())
        .arg(port.to_string())
        .arg(accounts)
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node with oidc-provider: {e}"))
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
