//! Removing a browser: killing its whole process tree, helpers outside
//! its process group included, and deleting its directories; and the same
//! for what a browserd that died left behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Browser, KILL_GRACE, process, process_table};

impl Browser {
    /// Kills the browser's whole process tree, including the crash handlers
    /// outside its process group, waits until they are gone and deletes its
    /// profile directory.
    pub async fn destroy(&self) {
        // Found before the kill: a zombie's command line is empty.
        let helpers: BTreeSet<i32> = process_table::mentioning(&self.user_data_dir)
            .into_iter()
            .collect();
        if !self.group.kill(KILL_GRACE).await {
            tracing::warn!(
                pid = self.group.pid,
                "browser process group outlived its kill grace"
            );
        }
        if let Some(egress) = &self.egress {
            egress.stop();
        }
        // Reaped by browserd's reaper (they are its children), so a
        // zombie is not gone yet.
        if !kill_mentioning(&self.user_data_dir, helpers, |pid| !process::exists(pid)).await {
            tracing::warn!("browser helpers outlived their kill grace");
        }
        remove_profile(&self.user_data_dir);
    }
}

pub(super) fn remove_profile(profile: &Path) {
    // The reverse of creation: whatever a crash interrupts, a TMPDIR left
    // behind still has its profile, which the next start's sweep finds.
    for dir in [&temp_dir(profile), profile] {
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a browser's directory");
        }
    }
}

/// The browser's $TMPDIR, named after its profile so that teardown, and a
/// restart's sweep of leftover profiles, can remove it by name. Chromium
/// keeps its single-instance socket there, in a directory it deletes only
/// on a clean exit, and links it from the profile only a moment later: a
/// browser killed in between would otherwise leave it behind in /tmp. (It
/// can't live in the profile: a Unix socket path is at most 108 bytes.)
pub fn temp_dir(user_data_dir: &Path) -> PathBuf {
    let name = user_data_dir.file_name().unwrap_or_default();
    std::env::temp_dir().join(format!("browserd-{}", name.to_string_lossy()))
}

/// Removes what a dead browserd left of a browser: every process whose
/// command line names `user_data_dir` (so an unrelated process that reused a
/// recorded pid is never touched), then the directory, once none of them
/// runs (a killed browser's last writes would otherwise land after the
/// removal). They are not browserd's children: an exited one may stay a
/// zombie of its parent's.
pub async fn remove_leftover(user_data_dir: &Path) {
    let gone =
        |pid| !process::exists(pid) || process_table::stat(pid).is_none_or(|s| s.state == 'Z');
    if !kill_mentioning(user_data_dir, BTreeSet::new(), gone).await {
        tracing::warn!(dir = %user_data_dir.display(), "a leftover browser outlived its kill grace");
    }
    remove_profile(user_data_dir);
}

/// SIGKILLs `pids` and every process whose command line names `profile`,
/// again until each is `gone`, for up to [`KILL_GRACE`]. Returns whether
/// they all are.
async fn kill_mentioning(
    profile: &Path,
    mut pids: BTreeSet<i32>,
    gone: impl Fn(i32) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + KILL_GRACE;
    loop {
        pids.extend(process_table::mentioning(profile));
        pids.retain(|&pid| !gone(pid));
        if pids.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!(?pids, "processes outlived their kill grace");
            return false;
        }
        kill_all(pids.iter().copied());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn kill_all(pids: impl IntoIterator<Item = i32>) {
    for pid in pids {
        // SAFETY: plain kill(2) of a process verified by its command line.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
