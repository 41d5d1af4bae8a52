//! A context's browser state as one sealed blob, and back.
//!
//! A blob is `[format][nonce][ChaCha20-Poly1305(zstd(archive))]`, with the
//! format byte and the context id as associated data: a blob opens only
//! with the key it was sealed with and for the context it was sealed for.
//! The archive is length-prefixed: the cookies' JSON, then each file's
//! relative path and contents. Which files and cookies make up a state,
//! and reading and writing them in a profile, is the browser's
//! ([`crate::browser::profile_state`]); this module only seals and opens.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use ring::aead::{Aad, NONCE_LEN, Nonce};

use super::SealKey;
use crate::domain::context::{BrowserState, MAX_UNPACKED};

/// The first byte of every sealed blob: how the rest is laid out.
const FORMAT: u8 = 1;
const TAG_LEN: usize = 16;
/// zstd's default level: a profile's LevelDB and JSON files shrink several
/// times over, in milliseconds.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the browser state takes {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the saved browser state cannot be opened: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Compresses and seals `state` for context `context_id`. `TooLarge` when
/// the sealed blob would be over `limit` bytes, or the state over
/// [`MAX_UNPACKED`] (which [`open`] would refuse).
pub fn seal(
    state: &BrowserState,
    key: &SealKey,
    context_id: &str,
    limit: usize,
) -> Result<Vec<u8>, SnapshotError> {
    let archive = pack(state);
    if archive.len() > MAX_UNPACKED {
        return Err(SnapshotError::TooLarge {
            size: archive.len(),
            limit: MAX_UNPACKED,
        });
    }
    let compressed = zstd::bulk::compress(&archive, ZSTD_LEVEL)?;
    let size = 1 + NONCE_LEN + compressed.len() + TAG_LEN;
    if size > limit {
        return Err(SnapshotError::TooLarge { size, limit });
    }
    // Random, since nodes share no counter: at 96 bits, 2^32 saves under
    // one key keep the chance of any nonce repeating below 2^-32.
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| SnapshotError::Io(io::Error::other(e)))?;
    let mut blob = Vec::with_capacity(size);
    blob.push(FORMAT);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&compressed);
    let aad = associated_data(context_id);
    let tag = key
        .cipher()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut blob[1 + NONCE_LEN..],
        )
        .map_err(|_| io::Error::other("the state is too long for the cipher"))?;
    blob.extend_from_slice(tag.as_ref());
    Ok(blob)
}

/// Opens a blob [`seal`] made with `key` for `context_id`. `Corrupt` for
/// anything else: another key, another context, an altered byte.
pub fn open(sealed: &[u8], key: &SealKey, context_id: &str) -> Result<BrowserState, SnapshotError> {
    let corrupt = |why: &str| SnapshotError::Corrupt(why.to_owned());
    let (&format, rest) = sealed.split_first().ok_or_else(|| corrupt("it is empty"))?;
    if format != FORMAT {
        return Err(SnapshotError::Corrupt(format!("unknown format {format}")));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(corrupt("it is too short"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
    let mut opened = ciphertext.to_vec();
    let aad = associated_data(context_id);
    let compressed = key
        .cipher()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut opened,
        )
        .map_err(|_| {
            corrupt(
                "it does not authenticate: sealed with another server secret, for another context, or altered",
            )
        })?;
    let mut archive = Vec::new();
    zstd::stream::read::Decoder::with_buffer(&*compressed)
        .and_then(|d| d.take(MAX_UNPACKED as u64 + 1).read_to_end(&mut archive))
        .map_err(|e| SnapshotError::Corrupt(format!("cannot decompress it: {e}")))?;
    if archive.len() > MAX_UNPACKED {
        return Err(corrupt("it unpacks to more than the largest state"));
    }
    unpack(&archive)
}

/// The format byte and the context id: a blob moved to another context's
/// row, or read as another format, does not open.
fn associated_data(context_id: &str) -> Vec<u8> {
    let mut data = vec![FORMAT];
    data.extend_from_slice(context_id.as_bytes());
    data
}

fn pack(state: &BrowserState) -> Vec<u8> {
    let cookies = serde_json::to_vec(&state.cookies).expect("a JSON value serializes");
    let mut out = Vec::new();
    put(&mut out, &cookies);
    out.extend_from_slice(&(state.files.len() as u64).to_le_bytes());
    for (path, data) in &state.files {
        put(&mut out, path.as_os_str().as_bytes());
        put(&mut out, data);
    }
    out
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn unpack(archive: &[u8]) -> Result<BrowserState, SnapshotError> {
    let mut reader = Reader(archive);
    let cookies = serde_json::from_slice(reader.bytes()?)
        .map_err(|e| SnapshotError::Corrupt(format!("its cookies are not JSON: {e}")))?;
    let count = reader.number()?;
    // Not allocated from `count`: it is only trusted as far as the bytes
    // that follow bear it out.
    let mut files = Vec::new();
    for _ in 0..count {
        let path = PathBuf::from(OsStr::from_bytes(reader.bytes()?));
        files.push((path, reader.bytes()?.to_vec()));
    }
    if !reader.0.is_empty() {
        return Err(SnapshotError::Corrupt("trailing bytes".to_owned()));
    }
    Ok(BrowserState { cookies, files })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        if self.0.len() < len {
            return Err(SnapshotError::Corrupt("it ends early".to_owned()));
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn number(&mut self) -> Result<u64, SnapshotError> {
        let bytes = self.take(8)?.try_into().expect("took 8 bytes");
        Ok(u64::from_le_bytes(bytes))
    }

    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = usize::try_from(self.number()?).unwrap_or(usize::MAX);
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::secret::ServerSecret;

    fn key(byte: u8) -> SealKey {
        SealKey::derive(&ServerSecret::from_bytes(vec![byte; 32]))
    }

    fn state() -> BrowserState {
        BrowserState {
            cookies: json!([{"name": "sid", "value": "s3cret", "domain": "a.test", "session": true}]),
            files: vec![
                (
                    PathBuf::from("Default/Local Storage/leveldb/000003.log"),
                    b"who=alice".repeat(100),
                ),
                (PathBuf::from("Default/Preferences"), b"{}".to_vec()),
            ],
        }
    }

    #[test]
    fn a_sealed_state_opens_with_its_key_and_context_only() {
        let sealed = seal(&state(), &key(1), "ctx-a", usize::MAX).expect("sealed");
        // Compressed: 900 bytes of the same text are far fewer sealed.
        assert!(sealed.len() < 300, "{} bytes", sealed.len());
        assert!(
            !sealed.windows(6).any(|w| w == b"s3cret"),
            "cookies are in the clear"
        );
        assert_eq!(open(&sealed, &key(1), "ctx-a").expect("opens"), state());
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            seal(&state(), &key(1), "ctx-a", usize::MAX).expect("sealed")
        );
        for (key, context) in [(key(2), "ctx-a"), (key(1), "ctx-b")] {
            assert!(matches!(
                open(&sealed, &key, context),
                Err(SnapshotError::Corrupt(_))
            ));
        }
        for at in [0, 5, sealed.len() / 2, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[at] ^= 1;
            assert!(
                matches!(
                    open(&altered, &key(1), "ctx-a"),
                    Err(SnapshotError::Corrupt(_))
                ),
                "byte {at}"
            );
        }
        for short in [&[][..], &sealed[..20]] {
            assert!(matches!(
                open(short, &key(1), "ctx-a"),
                Err(SnapshotError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn a_state_over_the_limit_is_not_sealed() {
        let fits = seal(&state(), &key(1), "ctx", usize::MAX)
            .expect("sealed")
            .len();
        assert!(seal(&state(), &key(1), "ctx", fits).is_ok());
        let refused = seal(&state(), &key(1), "ctx", fits - 1);
        assert!(
            matches!(refused, Err(SnapshotError::TooLarge { size, limit }) if size == fits && limit == fits - 1),
            "{refused:?}"
        );
    }
}
