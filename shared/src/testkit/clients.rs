//! What test clients send and read: the credentials interceptor (`authorization: Bearer` and
//! `x-acting-for`), and the invitation tokens identity writes to its mailbox directory.

use std::path::Path;

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The credentials of a client: a bearer token and the person acted for, each optional.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    token: Option<String>,
    acting_for: Option<String>,
}

impl Credentials {
    /// `authorization: Bearer <token>` when `token` is set, `x-acting-for` when `acting_for` is.
    pub fn new(token: Option<&str>, acting_for: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            acting_for: acting_for.map(str::to_owned),
        }
    }

    /// Only a bearer token (or nothing).
    pub fn bearer(token: Option<&str>) -> Self {
        Self::new(token, None)
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.token {
            let value = format!("Bearer {t}")
                .parse()
                .map_err(|_| Status::invalid_argument("token is not a valid header value"))?;
            req.metadata_mut().insert("authorization", value);
        }
        if let Some(p) = &self.acting_for {
            let value = p.parse().map_err(|_| {
                Status::invalid_argument("x-acting-for is not a valid header value")
            })?;
            req.metadata_mut().insert("x-acting-for", value);
        }
        Ok(req)
    }
}

/// A channel that sends [`Credentials`].
pub type Authed = InterceptedService<Channel, Credentials>;

/// The newest invitation token sent to `email`, read from the `.eml` files of identity's
/// mailbox directory (the line `invitation_token: <token>`).
///
/// # Panics
/// When the directory cannot be read or holds no invitation for `email`.
pub fn invitation_token(mailbox: &Path, email: &str) -> String {
    let to = format!("To: {email}");
    let mut newest: Option<(String, String)> = None;
    let entries = std::fs::read_dir(mailbox)
        .unwrap_or_else(|e| panic!("cannot read the mailbox {}: {e}", mailbox.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot read the mailbox {}: {e}", mailbox.display()))
            .path();
        // Only whole messages: identity writes each under a temporary name first.
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if !text.lines().any(|l| l.eq_ignore_ascii_case(&to)) {
            continue;
        }
        let token = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("invitation_token: "))
            .unwrap_or_else(|| panic!("{} has no invitation_token line", path.display()))
            .to_owned();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if newest.as_ref().is_none_or(|(n, _)| name > *n) {
            newest = Some((name, token));
        }
    }
    newest
        .unwrap_or_else(|| panic!("no invitation for {email}"))
        .1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_set_both_headers_or_none() {
        let req = Credentials::new(Some("tok"), Some("ada@x.example"))
            .call(Request::new(()))
            .unwrap();
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer tok");
        assert_eq!(req.metadata().get("x-acting-for").unwrap(), "ada@x.example");
        let req = Credentials::bearer(None).call(Request::new(())).unwrap();
        assert!(req.metadata().is_empty());
    }

    #[test]
    fn the_newest_invitation_of_the_address_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mail = |to: &str, token: &str| format!("To: {to}\r\n\r\ninvitation_token: {token}\r\n");
        std::fs::write(dir.path().join("1.eml"), mail("ada@x.example", "old")).unwrap();
        std::fs::write(dir.path().join("2.eml"), mail("ADA@x.example", "new")).unwrap();
        std::fs::write(dir.path().join("3.eml"), mail("bob@x.example", "bob")).unwrap();
        assert_eq!(invitation_token(dir.path(), "ada@x.example"), "new");
    }
}
