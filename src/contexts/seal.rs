//! The key contexts are sealed with. Derived from the server secret, which
//! every node of a cluster already shares, so any node can open a context
//! any other saved, and no second secret has to be managed.

use ring::aead::{CHACHA20_POLY1305, LessSafeKey, UnboundKey};

use crate::secret::ServerSecret;

/// Names this key's purpose in the derivation: a key for anything else
/// made from the same secret differs from it.
const INFO: &[u8] = b"browserd context key v1";

/// A ChaCha20-Poly1305 key for context snapshots. Its `Debug` never shows
/// the key.
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// HKDF-SHA256 over the server secret, info `browserd context key v1`.
    pub fn derive(secret: &ServerSecret) -> Self {
        let mut key = [0u8; 32];
        secret.derive_key(INFO, &mut key);
        Self(key)
    }

    pub(super) fn cipher(&self) -> LessSafeKey {
        let key = UnboundKey::new(&CHACHA20_POLY1305, &self.0)
            .expect("a 32-byte key is ChaCha20-Poly1305's length");
        LessSafeKey::new(key)
    }
}
