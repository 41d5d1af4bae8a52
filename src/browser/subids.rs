//! Ids of its own for browsers when browserd is not root, as rootless
//! container engines get them: browserd's user's subordinate ids
//! (`/etc/subuid`, `/etc/subgid`), mapped by the setuid helpers
//! `newuidmap` and `newgidmap` (Debian: `uidmap`) into a user namespace
//! that browserd enters at start. There browserd is root, its own uid
//! mapped to 0, so every file it owns on the host is root's there; and
//! the jail drops each browser to one of the other ids, a user the host
//! never gave anything to. Nothing of the host changes: the namespace
//! grants nothing beyond browserd's own user and those ids.
//!
//! It must run while the process has one thread (a user namespace cannot
//! be entered later), so the binary calls [`enter`] before it starts its
//! runtime.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SubIdError {
    #[error(
        "user {user} has no subordinate {kind} range in {file}: add one (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`) so that browsers get ids of their own"
    )]
    NoRange {
        user: String,
        kind: &'static str,
        file: &'static str,
    },
    #[error("{0} is not installed (Debian: apt-get install uidmap)")]
    NoHelper(&'static str),
    #[error("cannot make a user namespace: {0}")]
    Unshare(io::Error),
    #[error("{helper} refused to map the ids: {status}")]
    Refused {
        helper: &'static str,
        status: String,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A run of subordinate ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u32,
    count: u32,
}

/// What the parent sends once its namespace exists.
const ONE: u8 = 1;

const NEWUIDMAP: &str = "/usr/bin/newuidmap";
const NEWGIDMAP: &str = "/usr/bin/newgidmap";

/// Whether browserd would run its browsers under ids of their own only
/// through [`enter`]: it is not root.
pub fn needed() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() != 0 }
}

/// Makes this process root of a new user namespace that maps its own uid
/// and gid to 0 and its user's first subordinate ranges to 1 and up.
/// Call it while the process has a single thread.
pub fn enter() -> Result<(), SubIdError> {
    // SAFETY: these getters have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    let subuid = range("/etc/subuid", &user, uid).ok_or_else(|| SubIdError::NoRange {
        user: user.clone(),
        kind: "uid",
        file: "/etc/subuid",
    })?;
    let subgid = range("/etc/subgid", &user, uid).ok_or_else(|| SubIdError::NoRange {
        user: user.clone(),
        kind: "gid",
        file: "/etc/subgid",
    })?;
    for helper in [NEWUIDMAP, NEWGIDMAP] {
        if !std::path::Path::new(helper).is_file() {
            return Err(SubIdError::NoHelper(helper));
        }
    }
    // The helpers map a namespace from outside it: a child forked before
    // the unshare maps this process's namespace once it exists.
    let mut ends = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `ends`.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: both descriptors were just made and are owned here alone.
    let (ready_rx, ready_tx) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    // SAFETY: the process has one thread (this function's precondition),
    // so the child may run anything.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if child == 0 {
        drop(ready_tx);
        let mut byte = 0u8;
        // SAFETY: reads one byte into `byte` from a descriptor owned here.
        let got = unsafe { libc::read(ready_rx.as_raw_fd(), (&raw mut byte).cast(), 1) };
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() }.to_string();
        let map = |helper: &str, own: u32, sub: Range| {
            Command::new(helper)
                .args([&parent, "0", &own.to_string(), "1", "1"])
                .args([sub.start.to_string(), sub.count.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        };
        let mapped = got == 1 && map(NEWUIDMAP, uid, subuid) && map(NEWGIDMAP, gid, subgid);
        // SAFETY: _exit ends the child without running the parent's
        // destructors or atexit handlers twice.
        unsafe { libc::_exit(if mapped { 0 } else { 1 }) };
    }
    drop(ready_rx);
    // SAFETY: unshare changes only this (single-threaded) process.
    let unshared = if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    if unshared.is_ok() {
        // SAFETY: writes one byte from a local to a descriptor owned here.
        // Should it fail, the child reads end-of-file and maps nothing.
        let one = ONE;
        unsafe { libc::write(ready_tx.as_raw_fd(), (&raw const one).cast(), 1) };
    }
    drop(ready_tx);
    let mut status = 0;
    // SAFETY: waits for the child forked above, and only it.
    unsafe { libc::waitpid(child, &mut status, 0) };
    unshared.map_err(SubIdError::Unshare)?;
    if status != 0 {
        return Err(SubIdError::Refused {
            helper: "newuidmap/newgidmap",
            status: std::process::ExitStatus::from_raw(status).to_string(),
        });
    }
    Ok(())
}

/// The name of user `uid`, from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

/// The first range of `file` (`/etc/subuid` format, `name:start:count`)
/// for the user named `user` or numbered `uid`.
fn range(file: &str, user: &str, uid: u32) -> Option<Range> {
    parse_range(&std::fs::read_to_string(file).ok()?, user, uid)
}

fn parse_range(text: &str, user: &str, uid: u32) -> Option<Range> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        if owner != user && owner != uid.to_string() {
            return None;
        }
        let start = fields.next()?.parse().ok()?;
        let count = fields.next()?.parse().ok()?;
        (count > 0).then_some(Range { start, count })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_user_s_range_by_name_or_number() {
        let subuid =
            "alice:100000:65536\nbrowserd:165536:65536\n10002:231072:1000\nempty:300000:0\n";
        assert_eq!(
            parse_range(subuid, "browserd", 10001),
            Some(Range {
                start: 165536,
                count: 65536
            })
        );
        assert_eq!(
            parse_range(subuid, "bob", 10002),
            Some(Range {
                start: 231072,
                count: 1000
            })
        );
        assert_eq!(parse_range(subuid, "carol", 10003), None);
        assert_eq!(parse_range(subuid, "empty", 10004), None);
    }
}
