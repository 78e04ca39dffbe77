//! Secrets kept at rest: sealed (encrypted and authenticated) with keys the operator provides.
//!
//! A service that must store a secret it will use again — the portal keeps the identity token
//! of each ODC infrastructure — seals it with the *primary* key of a [`Keyring`] before it
//! reaches the database, and opens it when it needs it. The database alone then yields nothing:
//! the key lives in a file beside the service, not in the database.
//!
//! **The key file** holds one key per line, `<key id> <32 random bytes in base64>`; blank lines
//! and lines starting with `#` are ignored. The first key is the primary: it seals every new
//! value. Every key in the file can open what it sealed. Make a key with
//! `echo "k2 $(openssl rand -base64 32)"`.
//!
//! **Rotation**: put the new key on the first line and keep the old ones below it; restart the
//! service, which re-seals every stored value under the new primary key at start-up (and logs
//! how many). Once that is done the old lines may be removed.
//!
//! **Format of a sealed value**: `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`,
//! ChaCha20-Poly1305 with a random 96-bit nonce. The caller gives a *context* (for example the
//! row's id) that is authenticated with it, so a sealed value copied to another row does not
//! open there.
//!
//! Keys are never logged, displayed or put in an error; only key ids and file paths are.

use std::fmt;
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngExt as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The prefix (and version) of every sealed value.
const PREFIX: &str = "sealed:v1:";
/// The length of a key, in bytes.
const KEY_LEN: usize = 32;
/// The longest key id.
const MAX_ID_LEN: usize = 32;

/// Why a key file could not be used or a value not opened. Messages name key ids and paths,
/// never a key or a secret.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    /// The key file could not be read or written.
    #[error("cannot use the key file {}: {source}", path.display())]
    File {
        /// The key file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A line of the key file is not `<id> <base64 of 32 bytes>`.
    #[error("key file line {line}: {reason}")]
    Syntax {
        /// The line number (1-based).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file holds no key.
    #[error("the key file holds no key")]
    Empty,
    /// The value was sealed with a key the key file no longer holds.
    #[error("sealed with key `{0}`, which is not in the key file")]
    UnknownKey(String),
    /// The secret is longer than the cipher can seal (256 GiB).
    #[error("the secret is too long to seal")]
    TooLong,
    /// The value is damaged, or was sealed for another context.
    #[error("a sealed value does not open (damaged, or sealed for another record)")]
    Damaged,
}

/// One key of a [`Keyring`].
struct Key {
    id: String,
    key: LessSafeKey,
}

/// The keys that seal and open stored secrets: the first is the primary.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses a key file's text (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, SealingError> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: &str| SealingError::Syntax {
                line: index + 1,
                reason: reason.to_owned(),
            };
            let mut parts = line.split_whitespace();
            let (Some(id), Some(material), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(syntax("expected `<key id> <base64 key>`"));
            };
            if id.len() > MAX_ID_LEN
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(syntax("a key id is 1 to 32 letters, digits, `-` or `_`"));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(syntax("this key id is already used above"));
            }
            let bytes = STANDARD
                .decode(material)
                .map_err(|_| syntax("the key is not valid base64"))?;
            if bytes.len() != KEY_LEN {
                return Err(syntax("a key is 32 bytes (44 base64 characters)"));
            }
            let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                .map_err(|_| syntax("the key is not usable"))?;
            keys.push(Key {
                id: id.to_owned(),
                key: LessSafeKey::new(key),
            });
        }
        if keys.is_empty() {
            return Err(SealingError::Empty);
        }
        Ok(Self { keys })
    }

    /// Reads the key file `path`.
    pub fn load(path: &Path) -> Result<Self, SealingError> {
        let text = std::fs::read_to_string(path).map_err(|source| SealingError::File {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Reads the key file `path`, first creating it (mode 0600) with one new random key when
    /// it does not exist. If another process creates it first, its key wins.
    pub fn load_or_create(path: &Path) -> Result<Self, SealingError> {
        let file_error = |source| SealingError::File {
            path: path.to_owned(),
            source,
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                let text = format!(
                    "# Keys sealing stored secrets; the first seals. See the README.\nk1 {}\n",
                    STANDARD.encode(rand::rng().random::<[u8; KEY_LEN]>())
                );
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(file_error)?;
                tracing::info!(path = %path.display(), "generated a new key file (mode 0600)");
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(file_error(e)),
        }
        Self::load(path)
    }

    /// The id of the primary key (the one that seals).
    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `secret` under the primary key, bound to `context`.
    pub fn seal(&self, secret: &str, context: &str) -> Result<String, SealingError> {
        let primary = &self.keys[0];
        let nonce_bytes: [u8; NONCE_LEN] = rand::rng().random();
        let mut data = secret.as_bytes().to_vec();
        primary
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealingError::TooLong)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(format!(
            "{PREFIX}{}:{}",
            primary.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Opens a value [`seal`](Self::seal)ed for `context`. A value without the sealed prefix
    /// is one stored before sealing existed and is returned as it is (start-up re-seals those).
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SealingError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, payload) = rest.split_once(':').ok_or(SealingError::Damaged)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealingError::UnknownKey(id.to_owned()))?;
        let mut data = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SealingError::Damaged)?;
        if data.len() < NONCE_LEN {
            return Err(SealingError::Damaged);
        }
        let mut sealed = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| SealingError::Damaged)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| SealingError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealingError::Damaged)
    }

    /// Whether `stored` should be sealed again: it is not sealed, or not under the primary key.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_none_or(|(id, _)| id != self.primary_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(id: &str, byte: u8) -> String {
        format!("{id} {}\n", STANDARD.encode([byte; KEY_LEN]))
    }

    #[test]
    fn seals_opens_and_binds_the_context() {
        let ring = Keyring::parse(&key_line("k1", 7)).unwrap();
        let sealed = ring.seal("idt_secret", "infra-1").unwrap();
        assert!(sealed.starts_with("sealed:v1:k1:"), "{sealed}");
        assert!(!sealed.contains("idt_secret"));
        assert_ne!(
            sealed,
            ring.seal("idt_secret", "infra-1").unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(ring.open(&sealed, "infra-1").unwrap(), "idt_secret");
        assert!(matches!(
            ring.open(&sealed, "infra-2"),
            Err(SealingError::Damaged)
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            ring.open(&tampered, "infra-1"),
            Err(SealingError::Damaged)
        ));
    }

    #[test]
    fn rotation_opens_old_values_and_reseals_them_under_the_new_primary() {
        let old = Keyring::parse(&key_line("k1", 1)).unwrap();
        let sealed = old.seal("tok", "ctx").unwrap();
        assert!(!old.needs_reseal(&sealed));
        let rotated = Keyring::parse(&(key_line("k2", 2) + &key_line("k1", 1))).unwrap();
        assert_eq!(rotated.primary_id(), "k2");
        assert!(rotated.needs_reseal(&sealed));
        assert_eq!(rotated.open(&sealed, "ctx").unwrap(), "tok");
        let resealed = rotated.seal("tok", "ctx").unwrap();
        assert!(!rotated.needs_reseal(&resealed));
        let new_only = Keyring::parse(&key_line("k2", 2)).unwrap();
        assert_eq!(new_only.open(&resealed, "ctx").unwrap(), "tok");
        assert!(matches!(
            new_only.open(&sealed, "ctx"),
            Err(SealingError::UnknownKey(id)) if id == "k1"
        ));
    }

    #[test]
    fn plain_legacy_values_open_as_they_are_and_need_sealing() {
        let ring = Keyring::parse(&key_line("k1", 3)).unwrap();
        assert_eq!(ring.open("idt_plain", "ctx").unwrap(), "idt_plain");
        assert!(ring.needs_reseal("idt_plain"));
    }

    #[test]
    fn bad_key_files_are_refused_with_the_line_and_never_the_key() {
        let secret = STANDARD.encode([9u8; 16]);
        for (text, expected) in [
            (String::new(), "holds no key"),
            ("# only a comment\n".to_owned(), "holds no key"),
            (format!("k1 {secret}\n"), "line 1: a key is 32 bytes"),
            (
                "k1 not-base64!\n".to_owned(),
                "line 1: the key is not valid base64",
            ),
            ("k1\n".to_owned(), "line 1: expected"),
            (
                format!(
                    "\n{}bad/id {}\n",
                    key_line("k1", 1),
                    STANDARD.encode([1u8; 32])
                ),
                "line 3: a key id",
            ),
            (
                key_line("k1", 1) + &key_line("k1", 2),
                "line 2: this key id is already used",
            ),
        ] {
            let err = Keyring::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains(&secret));
        }
    }

    #[test]
    fn creates_a_private_key_file_once_and_debug_shows_only_ids() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let first = Keyring::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.seal("tok", "ctx").unwrap();
        let again = Keyring::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, "ctx").unwrap(), "tok");
        let text = std::fs::read_to_string(&path).unwrap();
        let material = text
            .lines()
            .last()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap();
        let debug = format!("{first:?}");
        assert_eq!(debug, r#"Keyring { key_ids: ["k1"] }"#);
        assert!(!debug.contains(material));
    }
}
