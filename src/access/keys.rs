//! API keys as text: `browserd_<id>_<secret>`. The prefix lets secret
//! scanners find a leaked key; the id names it in events, logs and the
//! admin API; only a SHA-256 of the secret is stored. A plain hash is
//! enough: the secret is 256 random bits, not a password, so there is
//! nothing to guess that a slow hash would protect.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// What every key starts with.
pub const PREFIX: &str = "browserd_";
/// Hex digits of a key id.
const ID_LEN: usize = 16;
/// Random bytes of a key's secret (43 base64url characters).
const SECRET_BYTES: usize = 32;

/// A key as presented by a client, split but not yet checked.
#[derive(Debug)]
pub struct Presented<'a> {
    pub id: &'a str,
    secret: &'a str,
}

impl<'a> Presented<'a> {
    /// Splits `browserd_<id>_<secret>`; `None` for anything else.
    pub fn parse(key: &'a str) -> Option<Self> {
        let rest = key.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_at_checked(ID_LEN)?;
        let secret = secret.strip_prefix('_')?;
        (is_key_id(id) && !secret.is_empty()).then_some(Self { id, secret })
    }

    /// Whether this key's secret hashes to `stored` (hex), compared in
    /// constant time.
    pub fn matches(&self, stored: &str) -> bool {
        let mine = hash(self.secret);
        mine.len() == stored.len()
            && mine
                .bytes()
                .zip(stored.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// Whether `id` is shaped like a key id (16 lowercase hex digits).
pub fn is_key_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new key: (id, the key to show once, the hash to store).
pub fn generate() -> (String, String, String) {
    let mut bytes = [0u8; ID_LEN / 2 + SECRET_BYTES];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    let (id, secret) = bytes.split_at(ID_LEN / 2);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let key = format!("{PREFIX}{id}_{secret}");
    let hashed = hash(&secret);
    (id, key, hashed)
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_its_hash_only() {
        let (id, key, stored) = generate();
        assert!(key.starts_with("browserd_"));
        let presented = Presented::parse(&key).expect("parses");
        assert_eq!(presented.id, id);
        assert!(presented.matches(&stored));
        let (_, other, other_hash) = generate();
        assert!(!presented.matches(&other_hash));
        let forged = format!("{PREFIX}{id}_{}", &other[PREFIX.len() + ID_LEN + 1..]);
        assert!(!Presented::parse(&forged).expect("parses").matches(&stored));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for key in [
            "",
            "browserd_",
            "browserd_0123456789abcdef",
            "browserd_0123456789abcdef_",
            "browserd_0123456789ABCDEF_secret",
            "browserd_0123456789abcde_secret",
            "other_0123456789abcdef_secret",
        ] {
            assert!(Presented::parse(key).is_none(), "{key:?}");
        }
    }
}
