//! The files browserd makes in a browser's profile for a relayed client:
//! an upload's copy, a download directory, and a finished download's copy
//! out. The browser may have replaced anything in its profile, so every
//! step below the profile is by descriptor (`openat`, no symlinks
//! followed), and everything made belongs to the profile's owner.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Gid, Mode, OFlags, Uid};

/// Directories of the profile that browserd fills or has the browser fill.
const UPLOAD_DIR: &str = "browserd-uploads";
pub(super) const DOWNLOAD_DIR: &str = "browserd-downloads";

/// Names the directories made in profiles: one per upload, one per
/// download scope, unique across every connection.
static NEXT_DIR: AtomicU64 = AtomicU64::new(1);

/// A single file name: no directory part, nothing relative.
pub(super) fn plain_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none()
}

/// Copies one file a trusted client named into a new directory of the
/// profile; returns the copy's path. The source is read with browserd's
/// rights, which the client has too.
pub(super) fn copy_in(profile: &Path, source: &Path) -> Result<String, String> {
    let shown = source.display();
    if !source.is_absolute() {
        return Err(format!("{shown}: upload paths must be absolute"));
    }
    let name = source
        .file_name()
        .ok_or_else(|| format!("{shown}: not a file"))?;
    let mut from = std::fs::File::open(source).map_err(|e| format!("{shown}: {e}"))?;
    if from.metadata().is_ok_and(|m| !m.is_file()) {
        return Err(format!("{shown}: only regular files are uploaded by path"));
    }
    let fail = |e: io::Error| {
        tracing::warn!(error = %e, "cannot copy an upload into the profile");
        "the session cannot take uploads now".to_owned()
    };
    let (root, owner) = open_profile(profile).map_err(fail)?;
    let uploads = make_dir(&root, UPLOAD_DIR, owner).map_err(fail)?;
    let number = NEXT_DIR.fetch_add(1, Ordering::Relaxed).to_string();
    let dir = make_dir(&uploads, &number, owner).map_err(fail)?;
    let to = rustix::fs::openat(
        &dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| fail(e.into()))?;
    rustix::fs::fchown(&to, Some(owner.0), Some(owner.1)).map_err(|e| fail(e.into()))?;
    io::copy(&mut from, &mut std::fs::File::from(to)).map_err(|e| format!("{shown}: {e}"))?;
    let path = profile.join(UPLOAD_DIR).join(number).join(name);
    path.into_os_string()
        .into_string()
        .map_err(|_| format!("{shown}: not a UTF-8 path"))
}

/// Makes a new download directory in the profile; returns its path.
pub(super) fn make_download_dir(profile: &Path) -> io::Result<String> {
    let (root, owner) = open_profile(profile)?;
    let downloads = make_dir(&root, DOWNLOAD_DIR, owner)?;
    let number = NEXT_DIR.fetch_add(1, Ordering::Relaxed).to_string();
    make_dir(&downloads, &number, owner)?;
    profile
        .join(DOWNLOAD_DIR)
        .join(number)
        .into_os_string()
        .into_string()
        .map_err(|_| io::Error::other("the profile path is not UTF-8"))
}

/// Copies `<dir>/<name>` (a download directory of the profile) to
/// `<requested>/<name>`, replacing a file of that name but never writing
/// through a symlink.
pub(super) fn copy_out(profile: &Path, dir: &Path, name: &str, requested: &Path) -> io::Result<()> {
    let (root, _) = open_profile(profile)?;
    let relative = dir
        .strip_prefix(profile)
        .map_err(|_| io::Error::other("a download directory outside the profile"))?;
    let mut at = root;
    for part in relative.components() {
        let Component::Normal(part) = part else {
            return Err(io::Error::other("an odd download directory"));
        };
        at = open_dir(&at, part)?;
    }
    let from = rustix::fs::openat(
        &at,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if !rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&from)?.st_mode).is_file() {
        return Err(io::Error::other("the download is not a regular file"));
    }
    std::fs::create_dir_all(requested)?;
    let target = rustix::fs::open(
        requested,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let to = rustix::fs::openat(
        &target,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    io::copy(&mut std::fs::File::from(from), &mut std::fs::File::from(to))?;
    Ok(())
}

/// The profile directory, and its owner, who is given what is made in it.
fn open_profile(profile: &Path) -> io::Result<(OwnedFd, (Uid, Gid))> {
    let root = rustix::fs::open(
        profile,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&root)?;
    let owner = (Uid::from_raw(stat.st_uid), Gid::from_raw(stat.st_gid));
    Ok((root, owner))
}

/// A subdirectory, made if missing, never through a symlink.
fn make_dir(parent: &OwnedFd, name: &str, owner: (Uid, Gid)) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = open_dir(parent, name.as_ref())?;
    rustix::fs::fchown(&dir, Some(owner.0), Some(owner.1))?;
    Ok(dir)
}

fn open_dir(parent: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_written_out() {
        for name in ["a.pdf", "3f2a-guid", "report (1).csv"] {
            assert!(plain_name(name), "{name}");
        }
        for name in ["", ".", "..", "../x", "a/b", "/etc/passwd"] {
            assert!(!plain_name(name), "{name}");
        }
    }
}
