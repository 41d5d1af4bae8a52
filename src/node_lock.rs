//! One node per data directory and per SQLite file. A second `browserd
//! serve` on the same data directory would take the first one's browsers
//! for leftovers of a crash and delete their profiles at start; two on one
//! SQLite file would each take the other's sessions for their own. Each
//! is held by an exclusive `flock` on a file beside it, which the kernel
//! releases when the process ends, however it ends (`kill -9` included),
//! so a restart is never refused by a lock nobody holds.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another browserd (pid {holder}) already serves from {what}: one node per data directory and per SQLite file (several nodes share a PostgreSQL database, each with its own --data-dir)"
    )]
    Held { what: String, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NodeLock {
    /// Takes the lock of `what`, kept in the file `path`, which then names
    /// this process.
    pub fn take(path: &Path, what: &str) -> Result<Self, LockError> {
        let failed = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(failed)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(failed(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(LockError::Held {
                what: what.to_owned(),
                holder: holder.trim().to_owned(),
            });
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .map_err(failed)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("browserd.lock");
        let first = NodeLock::take(&path, "the data directory").expect("free");
        match NodeLock::take(&path, "the data directory") {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        NodeLock::take(&path, "the data directory").expect("free again");
    }
}
