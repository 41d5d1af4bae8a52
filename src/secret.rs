//! The server secret, and the connect tokens signed with it.
//!
//! A connect token is `<expiry>.<mac>`: HMAC-SHA256 over the session id
//! and the expiry (Unix seconds), keyed with a secret that every node of a
//! cluster shares. Any node can check a token by recomputing it, nothing
//! per session is stored (so a reader of the database, its WAL or a backup
//! learns no token), and a leaked URL stops working at its expiry even if
//! the session was extended, as well as when the session ends. The secret itself
//! lives in a file only browserd's user can read, made on first start.
//!
//! This module never decides whether a session may be reached: the relay
//! checks a token only for a session that is live on this node.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Fewer bytes than the HMAC's output would make the secret, not the
/// hash, the weak point.
pub const MIN_SECRET_BYTES: usize = 32;

/// What each token signs before the session id, so a MAC made with the
/// same secret for another purpose (issue 15's API keys, expiring tokens)
/// is never a valid connect token.
const CONNECT_CONTEXT: &[u8] = b"browserd connect token v2\0";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "cannot read the server secret {path}: {source}; browserd's user must be able to read it (or remove it to have a new one made)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the server secret {path} holds {len} bytes, fewer than {MIN_SECRET_BYTES}: write at least {MIN_SECRET_BYTES} random bytes to it (e.g. `head -c 32 /dev/urandom > {path}`), the same file on every node"
    )]
    Short { path: PathBuf, len: usize },
    #[error("cannot create the server secret {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The key of every connect token. Its `Debug` never shows the key.
pub struct ServerSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

impl ServerSecret {
    /// Reads the secret at `path`, or makes one there (32 bytes from the
    /// OS, mode 0600) when no file exists.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        match std::fs::read(path) {
            Ok(key) => Self::checked(path, key),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(SecretError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn checked(path: &Path, key: Vec<u8>) -> Result<Self, SecretError> {
        if key.len() < MIN_SECRET_BYTES {
            return Err(SecretError::Short {
                path: path.to_owned(),
                len: key.len(),
            });
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the server secret is readable by other users: whoever reads it can connect to every session (chmod 600 it)"
            );
        }
        Ok(Self { key })
    }

    fn create(path: &Path) -> Result<Self, SecretError> {
        let failed = |source| SecretError::Create {
            path: path.to_owned(),
            source,
        };
        let mut key = vec![0u8; MIN_SECRET_BYTES];
        getrandom::fill(&mut key).map_err(|e| failed(std::io::Error::other(e)))?;
        // `create_new`: two nodes starting at once on a shared directory
        // never overwrite each other's secret; the loser reads the winner's.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let mut file = match created {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::load_or_create(path);
            }
            Err(e) => return Err(failed(e)),
        };
        if let Err(e) = file.write_all(&key).and_then(|()| file.sync_all()) {
            // A half-written secret would refuse every later start.
            let _ = std::fs::remove_file(path);
            return Err(failed(e));
        }
        tracing::info!(path = %path.display(), "created the server secret");
        Ok(Self { key })
    }

    /// A secret from bytes already in hand (tests, benches).
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// A connect token for session `id` that works until `expires`:
    /// `<Unix seconds>.<base64url MAC>`.
    pub fn connect_token(&self, id: &str, expires: SystemTime) -> String {
        let expires = unix_seconds(expires);
        let mac = self.connect_mac(id, expires).finalize().into_bytes();
        format!("{expires}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Whether `token` is session `id`'s and has not expired at `now`
    /// (the MAC compared in constant time).
    pub fn verify_connect_token(&self, id: &str, token: &str, now: SystemTime) -> bool {
        let Some((expires, mac)) = token.split_once('.') else {
            return false;
        };
        // Digits only: `+5` or ` 5` would parse, and sign the same expiry
        // as a different token.
        let Some(expires) = expires
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| expires.parse::<u64>().ok())
            .flatten()
        else {
            return false;
        };
        let Ok(given) = URL_SAFE_NO_PAD.decode(mac) else {
            return false;
        };
        self.connect_mac(id, expires).verify_slice(&given).is_ok() && unix_seconds(now) < expires
    }

    /// A MAC over `parts` for one purpose, named by `context` (which must
    /// differ from every other purpose's, so a MAC made for one is never
    /// valid for another), URL-safe base64. Each part is length-prefixed:
    /// no two lists of parts sign the same bytes.
    pub fn sign(&self, context: &[u8], parts: &[&[u8]]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac_of(context, parts).finalize().into_bytes())
    }

    /// Whether `given` is [`ServerSecret::sign`]'s MAC of `parts`, checked
    /// in constant time.
    pub fn verify(&self, context: &[u8], parts: &[&[u8]], given: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
            return false;
        };
        self.mac_of(context, parts).verify_slice(&given).is_ok()
    }

    fn mac_of(&self, context: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        mac.update(context);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// Fills `out` with a key for one purpose, named by `info`: HKDF-SHA256
    /// over the secret, so a key made here shows nothing of the secret or
    /// of the keys made for other purposes, and every node that shares the
    /// secret makes the same one.
    pub(crate) fn derive_key(&self, info: &[u8], out: &mut [u8]) {
        hkdf::Hkdf::<Sha256>::new(None, &self.key)
            .expand(info, out)
            .expect("callers ask for keys far below HKDF-SHA256's 8160-byte output limit");
    }

    fn connect_mac(&self, id: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        mac.update(CONNECT_CONTEXT);
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(&expires.to_be_bytes());
        mac
    }
}

/// Whole seconds since the epoch, rounded up: a token never expires
/// before the instant it was made for.
fn unix_seconds(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    since.as_secs() + u64::from(since.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_verify_for_their_session_secret_and_time_only() {
        let secret = ServerSecret::from_bytes(vec![7; 32]);
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = now + Duration::from_secs(60);
        let token = secret.connect_token("a", expires);
        assert!(token.starts_with("1000060."));
        assert!(secret.verify_connect_token("a", &token, now));
        assert!(!secret.verify_connect_token("b", &token, now));
        assert!(!secret.verify_connect_token("a", &token, expires));
        assert!(!secret.verify_connect_token("a", &token[..token.len() - 1], now));
        assert!(!secret.verify_connect_token("a", "", now));
        assert!(!secret.verify_connect_token("a", "1000060.not base64 !", now));
        // The expiry is signed: moving it breaks the MAC.
        let (_, mac) = token.split_once('.').expect("two parts");
        assert!(!secret.verify_connect_token("a", &format!("2000000.{mac}"), now));
        assert!(!secret.verify_connect_token("a", &format!("+1000060.{mac}"), now));
        let other = ServerSecret::from_bytes(vec![8; 32]);
        assert!(!other.verify_connect_token("a", &token, now));
    }

    #[test]
    fn signatures_cover_their_purpose_and_every_part_boundary() {
        let secret = ServerSecret::from_bytes(vec![7; 32]);
        let mac = secret.sign(b"purpose a", &[b"ab", b"c"]);
        assert!(secret.verify(b"purpose a", &[b"ab", b"c"], &mac));
        assert!(!secret.verify(b"purpose b", &[b"ab", b"c"], &mac));
        assert!(!secret.verify(b"purpose a", &[b"a", b"bc"], &mac));
        assert!(!secret.verify(b"purpose a", &[b"abc"], &mac));
        assert!(!secret.verify(b"purpose a", &[b"ab", b"c"], &mac[1..]));
        assert!(!secret.verify(b"purpose a", &[b"ab", b"c"], "not base64 !"));
        let other = ServerSecret::from_bytes(vec![8; 32]);
        assert!(!other.verify(b"purpose a", &[b"ab", b"c"], &mac));
    }

    #[test]
    fn derived_keys_are_rfc_5869_hkdf_sha256() {
        // RFC 5869, test case 3 (no salt, no info).
        let secret = ServerSecret::from_bytes(vec![0x0b; 22]);
        let mut okm = [0u8; 42];
        secret.derive_key(b"", &mut okm);
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    #[test]
    fn a_secret_is_made_private_once_and_then_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        let made = ServerSecret::load_or_create(&path).expect("created");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = ServerSecret::load_or_create(&path).expect("read");
        assert_eq!(
            made.connect_token("x", UNIX_EPOCH),
            read.connect_token("x", UNIX_EPOCH)
        );
    }

    #[test]
    fn a_short_or_unreadable_secret_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let short = dir.path().join("short");
        std::fs::write(&short, b"too short").expect("write");
        assert!(matches!(
            ServerSecret::load_or_create(&short),
            Err(SecretError::Short { len: 9, .. })
        ));
        // A directory where the file should be: unreadable as a secret.
        assert!(matches!(
            ServerSecret::load_or_create(dir.path()),
            Err(SecretError::Read { .. })
        ));
    }
}
