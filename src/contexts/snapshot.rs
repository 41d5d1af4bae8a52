//! A browser's state as one sealed blob, and back.
//!
//! What is saved is what a logged-in user needs and nothing a browser
//! rebuilds anyway: the cookies, read over CDP (the `Cookies` file has no
//! session cookies, and Chromium may encrypt it with a key kept outside the
//! profile), and the profile files in [`SAVED`]. Measured on Chromium 156:
//! with those files and the cookies restored into an empty profile, a page
//! reads back its localStorage, its IndexedDB records and its service
//! worker registration, and its server sees its session cookie.
//!
//! A blob is `[format][nonce][ChaCha20-Poly1305(zstd(archive))]`, with the
//! format byte and the context id as associated data: a blob opens only
//! with the key it was sealed with and for the context it was sealed for.
//! The archive is length-prefixed: the cookies' JSON, then each file's
//! relative path and contents.
//!
//! The files come from a profile that the session's client had full
//! control of, so they are read without following links and written back
//! only under [`SAVED`]. This module does not launch, close or own any
//! browser.

use std::ffi::OsStr;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use ring::aead::{Aad, NONCE_LEN, Nonce};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::SealKey;

/// What of a profile is saved, relative to it: a file, or a directory and
/// everything in it.
const SAVED: &[&str] = &[
    // localStorage: one LevelDB for every origin.
    "Default/Local Storage/leveldb",
    // IndexedDB: a LevelDB (and a blob directory) per origin. Chromium
    // finds them again without the quota database (`WebStorage`), which
    // it rebuilds from what is there.
    "Default/IndexedDB",
    // Service worker registrations, and the scripts they run: without its
    // script a registration is dropped. Not `CacheStorage`, what the
    // workers cached: they fetch it again.
    "Default/Service Worker/Database",
    "Default/Service Worker/ScriptCache",
    // Site permissions (content settings), among the profile's other
    // preferences.
    "Default/Preferences",
];

/// LevelDB's lock file, remade on open, and its text logs, which only say
/// what happened: neither is state.
const SKIPPED: &[&str] = &["LOCK", "LOG", "LOG.old"];

/// How deep directories under a [`SAVED`] one are read. Chromium's go two
/// levels down; a browser that nests deeper made them to slow the save.
const MAX_DEPTH: usize = 8;

/// The largest archive, before compression, that is collected, sealed or
/// opened: the whole of it is held in memory, and zstd can expand a small
/// blob a thousandfold.
pub const MAX_UNPACKED: usize = 1 << 30;

/// The first byte of every sealed blob: how the rest is laid out.
const FORMAT: u8 = 1;
const TAG_LEN: usize = 16;
/// zstd's default level: a profile's LevelDB and JSON files shrink several
/// times over, in milliseconds.
const ZSTD_LEVEL: i32 = 3;

/// What a session saves: its cookies and the state files of its profile.
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserState {
    /// CDP `Network.Cookie[]` from `Storage.getCookies`, session cookies
    /// included; given back as they are to `Storage.setCookies`.
    pub cookies: serde_json::Value,
    /// Paths relative to the profile, with their contents.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

/// Cookie values and file contents are the user's secrets: only counts.
impl std::fmt::Debug for BrowserState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserState")
            .field("cookies", &self.cookies.as_array().map_or(0, Vec::len))
            .field("files", &self.files.len())
            .field(
                "file_bytes",
                &self.files.iter().map(|(_, d)| d.len()).sum::<usize>(),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the browser state takes {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the saved browser state cannot be opened: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads the state files out of `profile`, whose browser has exited.
/// Links, sockets and FIFOs are skipped, never followed; more than
/// `max_bytes` (at most [`MAX_UNPACKED`]) bytes of files is an error of
/// kind `FileTooLarge`, found before more is read: a page can fill its
/// storage with gigabytes, and every save holds what it read in memory.
pub fn collect(
    profile: &Path,
    cookies: serde_json::Value,
    max_bytes: usize,
) -> io::Result<BrowserState> {
    let root = rustix::fs::open(
        profile,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut collected = Collected {
        files: Vec::new(),
        bytes: 0,
        max: max_bytes.min(MAX_UNPACKED),
    };
    for saved in SAVED {
        let path = Path::new(saved);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let mut at = root.try_clone()?;
        let mut found = true;
        for part in parent.components() {
            match open_entry(&at, part.as_os_str())? {
                Some(dir) if is(&dir, FileType::Directory)? => at = dir,
                _ => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            collected.gather(&at, name, path.to_owned(), 0)?;
        }
    }
    let mut files = collected.files;
    files.sort();
    Ok(BrowserState { cookies, files })
}

struct Collected {
    files: Vec<(PathBuf, Vec<u8>)>,
    bytes: usize,
    /// The most bytes of files read.
    max: usize,
}

impl Collected {
    /// Reads `name` in `parent`, a file or a whole directory, as `path`.
    fn gather(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: PathBuf,
        depth: usize,
    ) -> io::Result<()> {
        if SKIPPED.iter().any(|s| OsStr::new(s) == name) {
            return Ok(());
        }
        let Some(entry) = open_entry(parent, name)? else {
            return Ok(());
        };
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&entry)?.st_mode);
        match kind {
            FileType::Directory if depth < MAX_DEPTH => {
                let mut names = Vec::new();
                for item in rustix::fs::Dir::read_from(&entry)? {
                    let item = item?;
                    let name = OsStr::from_bytes(item.file_name().to_bytes());
                    if name != "." && name != ".." {
                        names.push(name.to_owned());
                    }
                }
                for name in names {
                    let below = path.join(&name);
                    self.gather(&entry, &name, below, depth + 1)?;
                }
            }
            FileType::RegularFile => {
                let mut data = Vec::new();
                let room = self.max.saturating_sub(self.bytes) as u64;
                std::fs::File::from(entry)
                    .take(room + 1)
                    .read_to_end(&mut data)?;
                self.bytes += data.len();
                if self.bytes > self.max {
                    return Err(io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        format!("the profile's state files exceed {} bytes", self.max),
                    ));
                }
                self.files.push((path, data));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Opens `name` in `dir` without following a link and without blocking on
/// a FIFO; `None` for what is missing or cannot be state (a link, a
/// socket).
fn open_entry(dir: &impl AsFd, name: &OsStr) -> io::Result<Option<OwnedFd>> {
    let opened = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    );
    match opened {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is(fd: &OwnedFd, kind: FileType) -> io::Result<bool> {
    Ok(FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode) == kind)
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

/// Writes the state's files into `profile`, a fresh profile whose browser
/// has not started: directories 0700, files 0600, owned by the caller.
/// Any path that is not relative, plain (no `..`) and under [`SAVED`] is
/// refused before anything is written: blobs are authenticated, but a
/// path out of the profile would be written with browserd's rights.
pub fn restore_files(state: &BrowserState, profile: &Path) -> io::Result<()> {
    if let Some((path, _)) = state.files.iter().find(|(path, _)| !restorable(path)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "refusing to restore {}: not a saved profile path",
                path.display()
            ),
        ));
    }
    for (path, data) in &state.files {
        let target = profile.join(path);
        if let Some(parent) = target.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)?
            .write_all(data)?;
    }
    Ok(())
}

fn restorable(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
        && SAVED.iter().any(|saved| path.starts_with(saved))
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

    #[test]
    fn restore_writes_only_plain_paths_under_the_saved_ones() {
        let profile = tempfile::tempdir().expect("temp dir");
        for bad in [
            "../x",
            "Default/IndexedDB/../../x",
            "/etc/x",
            "Default/Cache/x",
            "Default/Cookies",
            "",
        ] {
            let mut state = state();
            state.files.push((PathBuf::from(bad), b"x".to_vec()));
            let refused = restore_files(&state, profile.path()).expect_err(bad);
            assert_eq!(refused.kind(), io::ErrorKind::InvalidData, "{bad}");
            // Refused before anything is written.
            assert_eq!(
                std::fs::read_dir(profile.path()).expect("dir").count(),
                0,
                "{bad}"
            );
        }
        assert!(!profile.path().parent().expect("parent").join("x").exists());
        restore_files(&state(), profile.path()).expect("restored");
        let back = collect(profile.path(), json!([]), MAX_UNPACKED).expect("collected");
        let mut want = state().files;
        want.sort();
        assert_eq!(back.files, want);
    }

    #[test]
    fn collect_takes_saved_files_and_never_follows_links() {
        let profile = tempfile::tempdir().expect("temp dir");
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("secret"), b"host file").expect("write");
        let p = profile.path();
        let idb = p.join("Default/IndexedDB/http_a.test_0.indexeddb.leveldb");
        std::fs::create_dir_all(&idb).expect("mkdir");
        std::fs::create_dir_all(p.join("Default/Cache")).expect("mkdir");
        std::fs::write(idb.join("000003.log"), b"record").expect("write");
        std::fs::write(idb.join("LOCK"), b"").expect("write");
        std::fs::write(p.join("Default/Cache/data_0"), b"cached").expect("write");
        std::fs::write(p.join("Default/Cookies"), b"sqlite").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), idb.join("CURRENT"))
            .expect("link");
        std::os::unix::fs::symlink(outside.path(), p.join("Default/Service Worker")).expect("link");
        std::os::unix::fs::symlink(outside.path().join("secret"), p.join("Default/Preferences"))
            .expect("link");
        let state = collect(p, json!([]), MAX_UNPACKED).expect("collected");
        let paths: Vec<_> = state.files.iter().map(|(path, _)| path.clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from(
                "Default/IndexedDB/http_a.test_0.indexeddb.leveldb/000003.log"
            )]
        );
    }

    #[test]
    fn collect_stops_reading_past_its_limit() {
        let profile = tempfile::tempdir().expect("temp dir");
        let idb = profile.path().join("Default/IndexedDB/big");
        std::fs::create_dir_all(&idb).expect("mkdir");
        std::fs::write(idb.join("000003.log"), vec![7u8; 4096]).expect("write");
        let refused = collect(profile.path(), json!([]), 4095).expect_err("over the limit");
        assert_eq!(refused.kind(), io::ErrorKind::FileTooLarge);
        assert!(refused.to_string().contains("4095"), "{refused}");
        collect(profile.path(), json!([]), 4096).expect("at the limit");
    }
}
