//! Browser processes as process groups: spawn, watch, kill, reap.
//!
//! Each browser leads its own process group, so one `killpg` reaches every
//! helper it forked. browserd makes itself a child subreaper, so helpers
//! orphaned when the browser dies are re-parented to it rather than to PID 1
//! (which, in many containers, never reaps them), and reaps them per group
//! with `waitpid(-pgid)`: it never touches a child it did not spawn here.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a kill asks the reaper whether the group is empty yet.
const KILL_POLL: Duration = Duration::from_millis(10);

/// What is known about a spawned group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupState {
    /// The leader's wait status once it has exited.
    pub leader_exit: Option<i32>,
    /// No process of the group is left, zombies included.
    pub empty: bool,
}

#[derive(Clone)]
pub struct ProcessGroups {
    inner: Arc<Inner>,
}

struct Inner {
    /// Groups spawned here and not yet empty, by pgid (= the leader's pid).
    /// Held across fork and insert, so the reaper never sees a child whose
    /// group it does not know yet.
    groups: Mutex<HashMap<i32, watch::Sender<GroupState>>>,
    /// Wakes the reaper for a pass besides SIGCHLD (a new group, a kill).
    wake: Notify,
}

/// A spawned browser process group.
pub struct Group {
    pub pid: u32,
    state: watch::Receiver<GroupState>,
    owner: ProcessGroups,
}

impl ProcessGroups {
    /// Starts the reaper on the tracker; it stops when `stop` is cancelled.
    pub fn start(tracker: &TaskTracker, stop: CancellationToken) -> io::Result<Self> {
        // SAFETY: prctl with these arguments only sets a process attribute.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sigchld = signal(SignalKind::child())?;
        let groups = Self {
            inner: Arc::new(Inner {
                groups: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        };
        let reaper = groups.clone();
        tracker.spawn(async move {
            loop {
                reaper.reap();
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = reaper.inner.wake.notified() => {}
                    // A zombie re-parented while its SIGCHLD was coalesced
                    // with another would otherwise wait for the next signal.
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => break,
                }
            }
        });
        Ok(groups)
    }

    /// The groups spawned here that still have a process.
    pub fn pgids(&self) -> Vec<i32> {
        let groups = self.inner.groups.lock().expect("group registry poisoned");
        groups.keys().copied().collect()
    }

    /// Spawns `command` as the leader of a new process group that is killed
    /// if browserd dies. Stdout is discarded; stderr is returned to read.
    pub fn spawn(&self, mut command: Command) -> io::Result<(Group, ChildStderr)> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: setpgid and prctl are async-signal-safe and touch only the
        // child. PDEATHSIG fires when the spawning thread exits; tokio worker
        // threads live as long as the runtime, which is browserd's lifetime.
        unsafe {
            command.pre_exec(|| {
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut groups = self.inner.groups.lock().expect("group registry poisoned");
        let mut child = command.spawn()?;
        let pid = child.id();
        let (tx, state) = watch::channel(GroupState::default());
        groups.insert(pid as i32, tx);
        drop(groups);
        self.inner.wake.notify_one();
        let stderr = child.stderr.take().expect("stderr was piped");
        // `child` is dropped without wait(): the reaper owns its exit status.
        let group = Group {
            pid,
            state,
            owner: self.clone(),
        };
        Ok((group, stderr))
    }

    /// One pass: reap every exited member of every known group, and the
    /// browsers' crash handlers, which leave their group but, orphaned,
    /// become browserd's children.
    fn reap(&self) {
        let mut groups = self.inner.groups.lock().expect("group registry poisoned");
        groups.retain(|&pgid, tx| {
            loop {
                let mut status = 0;
                // SAFETY: waitpid on a group we spawned; status is a valid out-pointer.
                let pid = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == pgid {
                    tx.send_modify(|s| s.leader_exit = Some(status));
                }
            }
            let empty = !group_alive(pgid);
            if empty {
                tx.send_modify(|s| s.empty = true);
            }
            !empty
        });
        drop(groups);
        // Finding crash handlers reads the stat of every process on the
        // host, on a runtime thread, at every SIGCHLD: milliseconds that
        // stalled the sessions' event fan-out. Only a zombie child that no
        // group accounts for can be one.
        if zombie_child_left() {
            reap_crash_handlers();
        }
    }
}

/// Whether some child of browserd has exited and is still unreaped.
fn zombie_child_left() -> bool {
    // SAFETY: an all-zero siginfo_t is valid; waitid with WNOWAIT only
    // reports a child's state and leaves it to be reaped.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let found = libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        found == 0 && info.si_pid() != 0
    }
}

/// Reaps zombie children of browserd named like Chromium's crash handler.
/// Only those: any other child belongs to someone else's `wait`.
fn reap_crash_handlers() {
    let me = std::process::id() as i32;
    for pid in super::process_table::pids() {
        let Some(stat) = super::process_table::stat(pid) else {
            continue;
        };
        if stat.state == 'Z' && stat.ppid == me && stat.comm.starts_with("chrome_crashpad") {
            let mut status = 0;
            // SAFETY: waitpid on one specific zombie child of ours.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        }
    }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    exists(-pgid)
}

/// Whether process `pid` exists, zombies included (until it is reaped).
pub fn exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// SIGKILLs every process in group `pgid`.
pub fn kill_group(pgid: i32) {
    // SAFETY: plain kill(2); ESRCH (already gone) is fine.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

impl Group {
    pub fn is_running(&self) -> bool {
        let state = self.state.borrow();
        state.leader_exit.is_none() && !state.empty
    }

    /// Resolves once the leader has exited, with its wait status.
    pub async fn leader_exited(&self) -> i32 {
        let mut state = self.state.clone();
        let exited = state
            .wait_for(|s| s.leader_exit.is_some() || s.empty)
            .await
            .map(|s| s.leader_exit.unwrap_or(0));
        match exited {
            Ok(status) => status,
            // The reaper stopped (shutdown): nothing more will be learnt.
            Err(_) => std::future::pending().await,
        }
    }

    /// Kills the whole group and waits, up to `grace`, until every member
    /// is reaped. Returns whether the group is gone.
    pub async fn kill(&self, grace: Duration) -> bool {
        kill_group(self.pid as i32);
        self.gone_within(grace).await
    }

    /// Waits, up to `grace`, until every member of the group is reaped.
    /// Returns whether the group is gone.
    pub async fn gone_within(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        let mut state = self.state.clone();
        // A jailed browser's processes die in its pid namespace, reaped by
        // its init, not by browserd: no SIGCHLD says when the last is gone,
        // so the reaper is asked again until the group is empty.
        while tokio::time::Instant::now() < deadline {
            self.owner.inner.wake.notify_one();
            let poll = tokio::time::timeout(KILL_POLL, state.wait_for(|s| s.empty)).await;
            match poll {
                Ok(Ok(_)) => return true,
                Ok(Err(_)) => break, // the reaper stopped (shutdown)
                Err(_) => {}
            }
        }
        !group_alive(self.pid as i32)
    }
}
