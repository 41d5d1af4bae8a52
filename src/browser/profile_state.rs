//! A persistent context's state in a browser's profile: which files and
//! cookies make it up (measured on Chromium 156: with these files and the
//! cookies restored into an empty profile, a page reads back its
//! localStorage, its IndexedDB records and its service worker
//! registration, and its server sees its session cookie), collected from
//! a profile after a graceful close and written into a fresh one before a
//! launch.
//!
//! The cookies are read over CDP (the `Cookies` file has no session
//! cookies, and Chromium may encrypt it with a key kept outside the
//! profile), and the profile files are those in [`SAVED`]. Those come from
//! a profile that the session's client had full control of, so they are
//! read without following links and written back only under [`SAVED`].
//! Sealing the state at rest is the contexts module's, not this one's.

use std::ffi::OsStr;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::domain::context::{BrowserState, MAX_UNPACKED};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn state() -> BrowserState {
        BrowserState {
            cookies: json!([]),
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
