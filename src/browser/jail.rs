//! The jail every browser runs in. A session's client has full control of
//! its browser, so the browser must see nothing of the host it could use:
//! each Chromium starts under bubblewrap (`bwrap`) in its own mount, pid,
//! IPC and cgroup namespaces, with the system directories read-only, a
//! fresh `/proc` and `/dev`, private `/tmp` and `/dev/shm`, and read-write
//! only its own profile and TMPDIR, bound at their host paths so that a
//! path means the same inside and out. The data directory (database, WAL,
//! other profiles) and browserd's binary directory are not there at all.
//! There is no network namespace: pages need the network.
//!
//! Browsers never run as root, nor as browserd's own user. bwrap runs as
//! root only to build the mounts (the data directory stays 0700: no other
//! uid ever needs to reach into it) and `setpriv` then drops the browser to
//! an identity of its own, a uid and gid that no other live browser has,
//! so two sessions' files are apart even without the mount namespace, and
//! browserd's own files (its secret, wherever an operator put it) are
//! another user's. When browserd is not root it is root of a user
//! namespace of its own ([`subids`](super::subids)), whose other ids are
//! its user's subordinate ids: the browsers' identities come from those.
//! Without such ids a jail is refused: a browser with browserd's uid could
//! read whatever browserd can. Chromium's own sandbox stays on when it can
//! start inside the jail (it needs to make user namespaces of its own);
//! [`Jail::build`] checks.
//!
//! This module builds commands and checks that a jail can be made. It does
//! not spawn, watch or kill browsers: that is `process`'s.

use std::collections::BTreeSet;
use std::io;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// The uids (and equal gids) that browsers get when browserd runs as the
/// host's root: 65536 ids from 2,100,000,000, above the ranges that
/// `useradd` and systemd's container ranges hand out, and below 2^31 for
/// tools that read ids as signed. In a user namespace of browserd's own,
/// the ids it maps instead (see [`browser_ids`]). Each live browser holds
/// one; a new one is drawn at random so that two browserd instances on one
/// host rarely try the same id, and an id some process still runs as is
/// never reused.
pub const IDS: Range<u32> = 2_100_000_000..2_100_065_536;

/// System directories a browser may read: programs, libraries, fonts and
/// fontconfig's cache. A symlink (a merged-/usr `/lib`) is recreated as
/// the same symlink. Not `/var`, `/home`, `/root`, `/srv`, `/run` or
/// `/mnt`: data lives there; nor the whole of `/etc` (see [`ETC`]).
const SYSTEM_DIRS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/var/cache/fontconfig",
];

/// What a browser reads of `/etc`, each bound where it exists: the
/// dynamic linker's cache, users and name service (Chromium looks its uid
/// up), DNS, time zone and locale, fonts, certificates, MIME types, and
/// the Chromium package's own settings (Debian's wrapper script reads
/// them). The rest of `/etc` is where operators keep secrets (a
/// `--secret-file` under `/etc/browserd`, database passwords, keys).
const ETC: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/locale.alias",
    "/etc/locale.conf",
    "/etc/default/locale",
    "/etc/fonts",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/chromium",
    "/etc/chromium.d",
];

/// Drops root inside the jail (util-linux, on every Debian system).
const SETPRIV: &str = "/usr/bin/setpriv";

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("bubblewrap (`bwrap`) was not found on PATH")]
    NoBwrap,
    #[error("the configured --bwrap-path {0} is not a file")]
    BadBwrapPath(PathBuf),
    #[error("{0} is missing (util-linux): it drops each browser's root")]
    NoSetpriv(&'static str),
    #[error("{program} could not make a jail: {cause}")]
    Refused { program: PathBuf, cause: String },
    #[error("no free browser uid is left in {}..{}", .0.start, .0.end)]
    NoFreeId(Range<u32>),
    #[error(
        "browserd is not root and has no ids of its own to run browsers as, so they would run as its user and could read its files (its secret, its database): give its user a subordinate uid and gid range in /etc/subuid and /etc/subgid (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 <user>`) and install newuidmap/newgidmap (Debian: uidmap), or run browserd as root, or lower --isolation to none"
    )]
    SharedUid,
    #[error("browserd's user namespace maps no ids for browsers besides its own")]
    NoIds,
}

/// How browsers are started: jailed (the default) or, with `--isolation
/// none`, as plain children of browserd.
#[derive(Clone)]
pub struct Jail {
    bwrap: Option<Arc<Bwrap>>,
}

struct Bwrap {
    program: PathBuf,
    /// The uids (and equal gids) browsers are given.
    ids: Range<u32>,
    /// Identities held by live browsers of this browserd.
    taken: Mutex<BTreeSet<u32>>,
    /// Chromium's own sandbox could start inside a jail.
    sandbox: bool,
}

/// A browser's uid and gid while it lives; dropped, it is free again.
pub struct Identity {
    id: u32,
    owner: Arc<Bwrap>,
}

impl Drop for Identity {
    fn drop(&mut self) {
        let mut taken = self.owner.taken.lock().expect("identity set poisoned");
        taken.remove(&self.id);
    }
}

impl Identity {
    pub fn uid(&self) -> u32 {
        self.id
    }
}

/// A browser's command, ready for its flags, and what it runs as.
pub struct Jailed {
    pub command: Command,
    /// `None` when the browser runs unjailed, as browserd's own user.
    pub identity: Option<Identity>,
}

impl Jail {
    /// No jail (`--isolation none`): every session's client can read what
    /// browserd's user can, and Chromium's sandbox is off, as it cannot
    /// start as root.
    pub fn none() -> Self {
        Self { bwrap: None }
    }

    /// Finds bwrap (`configured`, else on PATH) and proves that a jail can
    /// be made here by making one. Whether Chromium's own sandbox can run
    /// inside it is checked too; if it cannot, browsers run without it,
    /// with a warning, rather than not at all.
    pub fn build(configured: Option<&Path>) -> Result<Self, JailError> {
        let program = find_bwrap(configured)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(JailError::SharedUid);
        }
        if !Path::new(SETPRIV).is_file() {
            return Err(JailError::NoSetpriv(SETPRIV));
        }
        let ids = browser_ids()?;
        tracing::info!(
            first = ids.start,
            last = ids.end - 1,
            "browsers run under uids and gids of their own"
        );
        let mut bwrap = Arc::new(Bwrap {
            program,
            ids,
            taken: Mutex::new(BTreeSet::new()),
            sandbox: false,
        });
        bwrap
            .probe(&["/usr/bin/true"])
            .map_err(|cause| JailError::Refused {
                program: bwrap.program.clone(),
                cause,
            })?;
        // Chromium's namespace sandbox makes a user namespace per renderer.
        let sandbox = bwrap.probe(&["/usr/bin/unshare", "--user", "/usr/bin/true"]);
        if let Err(cause) = &sandbox {
            tracing::warn!(
                %cause,
                "Chromium's own sandbox cannot start inside the browser jail: browsers run jailed, with --no-sandbox"
            );
        }
        Arc::get_mut(&mut bwrap)
            .expect("the probes' identities are dropped")
            .sandbox = sandbox.is_ok();
        Ok(Self { bwrap: Some(bwrap) })
    }

    /// Whether browsers are jailed (`--isolation jail`).
    pub fn is_jailed(&self) -> bool {
        self.bwrap.is_some()
    }

    /// The command that starts `chrome` with its profile and TMPDIR, which
    /// must exist and be empty: they are made the browser's own (0700, and
    /// its uid's when it has one). The caller adds Chromium's flags and
    /// environment; bwrap hands its environment and inherited descriptors
    /// (a CDP pipe on 3 and 4) on to the browser unchanged.
    pub fn command(&self, chrome: &Path, profile: &Path, tmp: &Path) -> io::Result<Jailed> {
        let Some(bwrap) = &self.bwrap else {
            let mut command = Command::new(chrome);
            command.arg("--no-sandbox");
            return Ok(Jailed {
                command,
                identity: None,
            });
        };
        let identity = bwrap.identity()?;
        for dir in [profile, tmp] {
            std::os::unix::fs::chown(dir, Some(identity.id), Some(identity.id))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut command = bwrap.command(&[profile, tmp]);
        let chrome_dir = chrome.canonicalize()?.parent().map(Path::to_owned);
        if let Some(dir) = chrome_dir.filter(|dir| !is_system(dir)) {
            // A browser from elsewhere (a Playwright download) brings its
            // libraries and resources beside it.
            command
                .args(mkdirs(&dir))
                .arg("--ro-bind")
                .arg(&dir)
                .arg(&dir);
        }
        command.arg("--").args(setpriv(identity.id)).arg(chrome);
        if !bwrap.sandbox {
            command.arg("--no-sandbox");
        }
        Ok(Jailed {
            command,
            identity: Some(identity),
        })
    }
}

impl Bwrap {
    /// Runs `argv` in a jail like a browser's, with nothing bound
    /// read-write; `Err` carries what bwrap or `argv` said.
    fn probe(self: &Arc<Self>, argv: &[&str]) -> Result<(), String> {
        let identity = self.identity().map_err(|e| e.to_string())?;
        let mut command = self.command(&[]);
        command.arg("--").args(setpriv(identity.id));
        let output = command
            .args(argv)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        Err(if said.is_empty() {
            output.status.to_string()
        } else {
            said
        })
    }

    /// bwrap with the namespaces and the read-only system, and `writable`
    /// bound read-write at their own paths; the caller adds `--` and the
    /// program.
    fn command(&self, writable: &[&Path]) -> Command {
        let mut command = Command::new(&self.program);
        // As root (of the host, or of browserd's own user namespace), bwrap
        // needs no user namespace to mount; setpriv drops root after.
        command.args([
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-cgroup-try",
            // bwrap's own parent-death signal for the browser: browserd's
            // kill of bwrap reaches into the pid namespace.
            "--die-with-parent",
        ]);
        for dir in SYSTEM_DIRS {
            let path = Path::new(dir);
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        command.arg("--symlink").arg(target).arg(path);
                    }
                }
                Ok(meta) if meta.is_dir() => {
                    command
                        .args(mkdirs(path))
                        .arg("--ro-bind")
                        .arg(path)
                        .arg(path);
                }
                _ => {}
            }
        }
        for path in ETC {
            // Followed if a symlink (`/etc/resolv.conf` often is one, into
            // `/run`): the file itself is what is bound.
            command
                .args(mkdirs(Path::new(path)))
                .arg("--ro-bind-try")
                .arg(path)
                .arg(path);
        }
        command.args([
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp",
        ]);
        for dir in writable {
            command.args(mkdirs(dir)).arg("--bind").arg(dir).arg(dir);
        }
        // browserd's working directory is not in the jail.
        command.args(["--chdir", "/"]);
        command
    }

    /// A uid no live browser of this browserd holds and no process runs as.
    fn identity(self: &Arc<Self>) -> io::Result<Identity> {
        let in_use = super::process_table::uids();
        let mut taken = self.taken.lock().expect("identity set poisoned");
        let ids = &self.ids;
        let span = ids.end - ids.start;
        let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
        let id = (0..span)
            .map(|i| ids.start + (start + i) % span)
            .find(|id| !taken.contains(id) && !in_use.contains(id))
            .ok_or_else(|| io::Error::other(JailError::NoFreeId(ids.clone())))?;
        taken.insert(id);
        Ok(Identity {
            id,
            owner: self.clone(),
        })
    }
}

/// The ids browsers may be given: [`IDS`] where this process's user
/// namespace maps them all as uids and gids (the host's, where every id
/// is), else the longest run of ids both maps hold besides 0 (browserd's
/// own in a namespace of its own).
pub fn browser_ids() -> Result<Range<u32>, JailError> {
    let read = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
    let (uids, gids) = (read("/proc/self/uid_map"), read("/proc/self/gid_map"));
    ids_for_browsers(&parse_id_map(&uids), &parse_id_map(&gids)).ok_or(JailError::NoIds)
}

/// The inner ranges of a `/proc/<pid>/uid_map` (`inner outer count` lines).
fn parse_id_map(map: &str) -> Vec<Range<u32>> {
    map.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u64>);
            let (Some(Ok(inner)), Some(Ok(_)), Some(Ok(count))) =
                (fields.next(), fields.next(), fields.next())
            else {
                return None;
            };
            let end = (inner + count).min(u64::from(u32::MAX));
            Some(u32::try_from(inner).ok()?..u32::try_from(end).ok()?)
        })
        .collect()
}

fn ids_for_browsers(uids: &[Range<u32>], gids: &[Range<u32>]) -> Option<Range<u32>> {
    let covers = |map: &[Range<u32>], ids: &Range<u32>| {
        map.iter().any(|r| r.start <= ids.start && ids.end <= r.end)
    };
    if covers(uids, &IDS) && covers(gids, &IDS) {
        return Some(IDS);
    }
    uids.iter()
        .flat_map(|u| {
            gids.iter()
                .map(move |g| u.start.max(g.start).max(1)..u.end.min(g.end))
        })
        .filter(|both| both.start < both.end)
        .max_by_key(|both| both.end - both.start)
}

/// bwrap makes missing parents of a mount point 0700, which a browser with
/// a uid of its own could not cross: each ancestor is made 0755 first (in
/// the jail's own tmpfs root; the host's directories are not touched).
fn mkdirs(path: &Path) -> Vec<std::ffi::OsString> {
    let mut ancestors: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .filter(|a| a.parent().is_some())
        .collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .flat_map(|a| ["--perms".into(), "0755".into(), "--dir".into(), a.into()])
        .collect()
}

fn setpriv(id: u32) -> Vec<String> {
    vec![
        SETPRIV.to_owned(),
        format!("--reuid={id}"),
        format!("--regid={id}"),
        "--clear-groups".to_owned(),
        "--".to_owned(),
    ]
}

fn is_system(dir: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|system| dir.starts_with(system))
}

fn find_bwrap(configured: Option<&Path>) -> Result<PathBuf, JailError> {
    if let Some(path) = configured {
        return path
            .is_file()
            .then(|| path.to_owned())
            .ok_or_else(|| JailError::BadBwrapPath(path.to_owned()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("bwrap"))
        .find(|candidate| candidate.is_file())
        .ok_or(JailError::NoBwrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_ids_both_maps_hold_and_never_browserd_s_own() {
        let host = parse_id_map("         0          0 4294967295\n");
        assert_eq!(ids_for_browsers(&host, &host), Some(IDS));
        // browserd root of a namespace of its own: 0 is its user, 1.. its
        // user's subordinate ids.
        let own = parse_id_map("0 10001 1\n1 100000 65536\n");
        assert_eq!(ids_for_browsers(&own, &own), Some(1..65537));
        let fewer_gids = parse_id_map("0 10001 1\n1 100000 1000\n");
        assert_eq!(ids_for_browsers(&own, &fewer_gids), Some(1..1001));
        // Only browserd's own id mapped: nothing to give a browser.
        let alone = parse_id_map("0 10001 1\n");
        assert_eq!(ids_for_browsers(&alone, &alone), None);
    }
}
