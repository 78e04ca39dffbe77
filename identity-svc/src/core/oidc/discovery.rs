//! Fetching what verifies a provider's tokens: its discovery document
//! (`{issuer}/.well-known/openid-configuration`, whose `issuer` must be the configured one) and
//! the key set its `jwks_uri` names. Bounded: a timeout per request, a few redirects, at most
//! [`MAX_DOCUMENT`] bytes per document, https only unless the settings allow http.

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::Refusal;

/// Largest discovery document or key set read (bytes).
const MAX_DOCUMENT: usize = 512 * 1024;

/// The fields of a discovery document we use.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Builds the HTTP client: rustls with ring and the public web PKI roots.
pub(super) fn client(
    timeout: std::time::Duration,
    allow_http: bool,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .https_only(!allow_http)
        .user_agent(concat!("odc-identity/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// An UNAVAILABLE refusal naming what failed.
fn unavailable(what: &str, url: &str, e: impl std::fmt::Display) -> Refusal {
    Refusal::Unavailable(format!("cannot fetch the {what} {url}: {e}"))
}

/// GETs `url` and parses its JSON body, reading at most [`MAX_DOCUMENT`] bytes.
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    what: &str,
    url: &str,
) -> Result<T, Refusal> {
    let mut resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| unavailable(what, url, e))?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(what, url, e))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(unavailable(what, url, "the document is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| unavailable(what, url, e))
}

/// The key set of the provider with issuer `issuer`, through its discovery document.
pub(super) async fn fetch_keys(http: &reqwest::Client, issuer: &str) -> Result<JwkSet, Refusal> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = get_json(http, "discovery document", &url).await?;
    if doc.issuer != issuer {
        return Err(Refusal::Unavailable(format!(
            "the discovery document {url} names issuer {:?}, not {issuer:?}",
            doc.issuer
        )));
    }
    get_json(http, "key set", &doc.jwks_uri).await
}
