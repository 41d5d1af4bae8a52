//! Launching and removing Chromium. Owns browser processes, their profile
//! and temp directories and the one CDP pipe to each ([`pipe`]), which
//! browserd's own calls and every relayed client share; knows nothing of
//! sessions, statuses or the database. A persistent context's state goes
//! into a profile before its browser starts, and comes out of it after a
//! graceful close ([`Browser::save_state`]); what that state holds is
//! [`profile_state`]'s, and how it is sealed is `contexts`'.

pub mod cdp;
pub mod jail;
mod options;
pub mod pipe;
pub mod process;
pub mod process_table;
pub mod profile_state;
mod proxy_hop;
mod sockets;
pub mod subids;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::context::BrowserState;

use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cdp::CdpError;
use jail::{Identity, Jail};
pub use options::LaunchOptions;
use pipe::Pipe;
use process::{Group, ProcessGroups};
use proxy_hop::ProxyHop;
pub use sockets::Sockets;

/// Height of Chromium's own UI in each window (tab strip and toolbar), in
/// CSS pixels. Headless Chromium is the whole browser drawn off-screen:
/// `--window-size`, which it applies to every new window (a new page, a new
/// browser context's page), is the outer size, and pages get this much less
/// height. Measured on Chromium 156 (`outerHeight - innerHeight`): the same
/// at every height from 1 to 4320, and nothing in width. The viewport
/// integration test fails if a Chromium changes it.
const WINDOW_FRAME_HEIGHT: u32 = 87;

/// How long browserd waits for its own CDP calls (version, targets).
const CDP_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a browser's exit once its CDP socket has closed.
const EXIT_AFTER_CLOSE: Duration = Duration::from_millis(500);
/// How long a killed browser's process group may take to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The flags every browser is launched with. Headless, and nothing that
/// phones home: these machines may have no route out, and a session should
/// not pay for background traffic. Whether Chromium's sandbox is on is the
/// jail's call ([`jail::Jail::command`]).
const BASE_FLAGS: &[&str] = &[
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Otherwise, unjailed, the first tab gets an infobar warning of
    // --no-sandbox, which takes 56 px off that page's viewport for its
    // whole life. The switch
    // turns off Chromium's startup infobars; ChromeDriver passes it to every
    // Chrome it starts.
    "--test-type",
    // A hidden WebUI renderer per context that no client asked for (~115 MiB).
    "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup,PreloadTopChromeWebUI",
    // CDP on fds 3 and 4, and no DevTools port: a port on 127.0.0.1 is
    // reachable from every page of every session on the host.
    "--remote-debugging-pipe",
];

/// What a browser keeps of browserd's environment: where programs are, and
/// the locale and time zone its pages see.
const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create the browser directory {dir}: {source}")]
    BrowserDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {chrome}: {source}")]
    Spawn {
        chrome: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the browser's CDP pipe: {0}")]
    Pipe(std::io::Error),
    #[error("cannot start the browser's local proxy hop: {0}")]
    ProxyHop(std::io::Error),
    #[error("the browser exited before answering CDP; its last output: {0}")]
    Exited(String),
    #[error("the browser did not become ready within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Cdp(#[from] CdpError),
    #[error("cannot restore the context's state into the profile: {0}")]
    Restore(std::io::Error),
}

/// Why a browser's state was not saved. The browser may be closed or
/// still running: the caller destroys it either way.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Cdp(#[from] CdpError),
    #[error("the browser did not exit within {0:?} of being asked to close")]
    Timeout(Duration),
    #[error("the browser did not close cleanly: {0}")]
    Unclean(String),
    #[error("cannot read the browser's state files: {0}")]
    Collect(std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    pub target_id: String,
    pub url: String,
    pub title: String,
}

#[derive(Clone)]
pub struct Launcher {
    chrome: PathBuf,
    jail: Jail,
    launch_timeout: Duration,
    /// The largest CDP message carried either way.
    max_message_size: usize,
    groups: ProcessGroups,
    tracker: TaskTracker,
}

/// A running browser. Dropping it does not stop it: call [`Browser::destroy`].
pub struct Browser {
    group: Group,
    pipe: Pipe,
    version: String,
    user_data_dir: PathBuf,
    /// The uid the browser runs as, held until it is dropped.
    _identity: Option<Identity>,
    /// Where the browser's proxy traffic goes when its proxy needs
    /// credentials; stopped with the browser.
    proxy_hop: Option<ProxyHop>,
}

/// Finds a browser: the configured path, else Debian's `/usr/bin/chromium`,
/// else the usual names on PATH.
pub fn find_chrome(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return path.is_file().then(|| path.to_owned());
    }
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed.to_owned());
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
        "chrome",
    ];
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|candidate| candidate.is_file())
}

impl Launcher {
    pub fn start(
        chrome: PathBuf,
        jail: Jail,
        launch_timeout: Duration,
        max_message_size: usize,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        Ok(Self {
            chrome,
            jail,
            launch_timeout,
            max_message_size,
            groups: ProcessGroups::start(tracker, stop)?,
            tracker: tracker.clone(),
        })
    }

    /// What tells this launcher's browsers' connections from others'.
    pub fn sockets(&self) -> Sockets {
        Sockets::new(self.groups.clone())
    }

    /// Starts a browser with its profile in `user_data_dir` and waits until
    /// it answers CDP. On failure nothing is left: no process, no directory.
    pub async fn launch(
        &self,
        user_data_dir: &Path,
        options: &LaunchOptions,
    ) -> Result<Browser, LaunchError> {
        let proxy_hop = ProxyHop::for_proxy(options.proxy.as_ref(), &self.tracker)
            .await
            .map_err(LaunchError::ProxyHop)?;
        let spawned = self.spawn(user_data_dir, options, proxy_hop.as_ref());
        let (group, stderr, identity, ends) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                remove_profile(user_data_dir);
                return Err(e);
            }
        };
        if let Some(hop) = &proxy_hop {
            hop.serve_group(group.pid as i32);
        }
        // The child has its own copies now; browserd's must go, or the
        // browser's exit would never read as the pipe's end.
        let pipe::Ends {
            browser_reads,
            browser_writes,
            to_browser,
            from_browser,
        } = ends;
        drop((browser_reads, browser_writes));
        let pipe = Pipe::start(
            from_browser,
            to_browser,
            self.max_message_size,
            &self.tracker,
        );
        let last_words = drain_stderr(stderr);
        let ready = pipe.call("Browser.getVersion", json!({}), self.launch_timeout);
        let outcome = match ready.await {
            Ok(version) => Ok(version["product"].as_str().unwrap_or("unknown").to_owned()),
            Err(CdpError::Timeout { .. }) => Err(LaunchError::Timeout(self.launch_timeout)),
            Err(CdpError::Closed) => {
                let said = tokio::time::timeout(EXIT_AFTER_CLOSE, last_words).await;
                Err(LaunchError::Exited(
                    said.ok().and_then(Result::ok).unwrap_or_default(),
                ))
            }
            Err(e) => Err(e.into()),
        };
        // Before any client can load a page, so none is sent without them.
        let outcome = match outcome {
            Ok(version) => restore_cookies(&pipe, options).await.map(|()| version),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(version) => Ok(Browser {
                group,
                pipe,
                version,
                user_data_dir: user_data_dir.to_owned(),
                _identity: identity,
                proxy_hop,
            }),
            Err(e) => {
                group.kill(KILL_GRACE).await;
                remove_profile(user_data_dir);
                Err(e)
            }
        }
    }

    /// Makes the browser's directories and starts it (jailed, with its
    /// CDP pipe on fds 3 and 4). The caller removes the directories if
    /// this fails.
    fn spawn(
        &self,
        user_data_dir: &Path,
        options: &LaunchOptions,
        proxy_hop: Option<&ProxyHop>,
    ) -> Result<
        (
            Group,
            std::process::ChildStderr,
            Option<Identity>,
            pipe::Ends,
        ),
        LaunchError,
    > {
        let tmp = temp_dir(user_data_dir);
        for dir in [user_data_dir, &tmp] {
            std::fs::create_dir_all(dir).map_err(|source| LaunchError::BrowserDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let jailed = self
            .jail
            .command(&self.chrome, user_data_dir, &tmp)
            .map_err(|source| LaunchError::BrowserDir {
                dir: user_data_dir.to_owned(),
                source,
            })?;
        let (mut command, identity) = (jailed.command, jailed.identity);
        if let Some(state) = &options.restore {
            restore_files(state, user_data_dir, identity.as_ref()).map_err(LaunchError::Restore)?;
        }
        // A clean environment: the browser runs its users' code and must not
        // inherit browserd's (database URL, BROWSERD_*, OTEL_* headers).
        // HOME is the profile, so nothing lands in browserd's home either.
        command.env_clear();
        for kept in INHERITED_ENV {
            if let Some(value) = std::env::var_os(kept) {
                command.env(kept, value);
            }
        }
        command.env("HOME", user_data_dir);
        command.env("TMPDIR", &tmp);
        // Chromium keeps crash-reporter state under $XDG_CONFIG_HOME, shared
        // by every browser of the user unless moved. In the profile it is
        // private to the session, deleted with it, and names the profile on
        // the crash handlers' command lines, which is how teardown finds
        // them after they leave the browser's process group.
        command.env("XDG_CONFIG_HOME", user_data_dir);
        command.args(BASE_FLAGS);
        command.arg(format!("--user-data-dir={}", user_data_dir.display()));
        // The session's viewport is what its pages get, so the window is
        // that plus the frame. No switch sizes the page itself, and a
        // per-page Emulation override would make browserd a CDP client
        // inside its users' pages. Chromium keeps windows at least 500 px
        // wide: a narrower viewport gets 500.
        command.arg(format!(
            "--window-size={},{}",
            options.viewport.width,
            options.viewport.height + WINDOW_FRAME_HEIGHT
        ));
        if let Some(agent) = &options.user_agent {
            command.arg(format!("--user-agent={agent}"));
        }
        let proxy_server = match (proxy_hop, &options.proxy) {
            (Some(hop), _) => Some(hop.proxy_server()),
            (None, proxy) => proxy.as_ref().map(|p| p.server.clone()),
        };
        if let Some(server) = proxy_server {
            command.arg(format!("--proxy-server={server}"));
        }
        command.arg("about:blank");
        let ends = pipe::Ends::new().map_err(LaunchError::Pipe)?;
        let fds = [
            ends.browser_reads.as_raw_fd(),
            ends.browser_writes.as_raw_fd(),
        ];
        // SAFETY: fcntl, dup2 and close are async-signal-safe and touch only
        // the child's descriptors.
        unsafe {
            command.pre_exec(move || place_pipe(fds));
        }
        let (group, stderr) = self
            .groups
            .spawn(command)
            .map_err(|source| LaunchError::Spawn {
                chrome: self.chrome.clone(),
                source,
            })?;
        Ok((group, stderr, identity, ends))
    }
}

/// Writes a context's files into a new profile, owned by the uid its
/// browser will run as (the jail gives it only the profile directory).
/// Synchronous: a few milliseconds for a context of a few MB.
fn restore_files(
    state: &BrowserState,
    profile: &Path,
    identity: Option<&Identity>,
) -> std::io::Result<()> {
    profile_state::restore_files(state, profile)?;
    match identity {
        Some(identity) => give_tree(profile, identity.uid()),
        None => Ok(()),
    }
}

/// Chowns what is under `dir` (only what [`restore_files`] wrote: no
/// browser has run in it yet) to `id`, the browser's uid and gid.
fn give_tree(dir: &Path, id: u32) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        std::os::unix::fs::lchown(&path, Some(id), Some(id))?;
        if entry.file_type()?.is_dir() {
            give_tree(&path, id)?;
        }
    }
    Ok(())
}

/// Gives a restored context's cookies to the new browser's default
/// browser context, session cookies included.
async fn restore_cookies(pipe: &Pipe, options: &LaunchOptions) -> Result<(), LaunchError> {
    let Some(state) = &options.restore else {
        return Ok(());
    };
    let none = state.cookies.is_null() || state.cookies.as_array().is_some_and(Vec::is_empty);
    if !none {
        // `Network.Cookie`s as `Storage.getCookies` gave them: Chromium
        // takes them as `CookieParam`s, ignoring the fields it computes
        // (`size`, `session`); a session cookie's `expires` of -1 keeps
        // it a session cookie.
        let params = json!({"cookies": state.cookies});
        pipe.call("Storage.setCookies", params, CDP_CALL_TIMEOUT)
            .await?;
    }
    Ok(())
}

/// Puts the CDP pipe where `--remote-debugging-pipe` looks for it: fd 3
/// (the browser reads) and fd 4 (it writes). Runs in the child between
/// fork and exec. Both are first copied above 4, so that neither dup2 can
/// overwrite the other end (or be a no-op that leaves close-on-exec set).
fn place_pipe([reads, writes]: [i32; 2]) -> std::io::Result<()> {
    // SAFETY: plain descriptor calls on the child's own table.
    unsafe {
        let reads = libc::fcntl(reads, libc::F_DUPFD, 5);
        let writes = libc::fcntl(writes, libc::F_DUPFD, 5);
        if reads < 0 || writes < 0 || libc::dup2(reads, 3) < 0 || libc::dup2(writes, 4) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::close(reads);
        libc::close(writes);
    }
    Ok(())
}

/// Reads the browser's stderr on a thread of its own until it closes, so
/// the pipe never fills (Chromium logs dozens of lines per launch); then
/// sends its last lines, which say why a browser that never answered died.
fn drain_stderr(stderr: std::process::ChildStderr) -> oneshot::Receiver<String> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            tail.push(line);
            if tail.len() > 5 {
                tail.remove(0);
            }
        }
        let _ = tx.send(tail.join(" | "));
    });
    rx
}

impl Browser {
    pub fn pid(&self) -> u32 {
        self.group.pid
    }

    /// The browser's CDP pipe, for the relay; never handed to clients.
    pub fn pipe(&self) -> &Pipe {
        &self.pipe
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Its `--user-data-dir`.
    pub fn profile(&self) -> &Path {
        &self.user_data_dir
    }

    /// Neither its process nor browserd's CDP link to it has gone away.
    pub fn is_alive(&self) -> bool {
        self.group.is_running() && !self.pipe.is_closed()
    }

    /// The open pages, without Chromium's internal WebUI targets.
    pub async fn pages(&self) -> Result<Vec<PageInfo>, CdpError> {
        let targets = self
            .pipe
            .call("Target.getTargets", json!({}), CDP_CALL_TIMEOUT)
            .await?;
        let infos = targets["targetInfos"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(infos
            .iter()
            .filter(|t| t["type"] == "page")
            .map(|t| {
                let text = |key: &str| t[key].as_str().unwrap_or_default().to_owned();
                PageInfo {
                    target_id: text("targetId"),
                    url: text("url"),
                    title: text("title"),
                }
            })
            .filter(|p| !(p.url.starts_with("chrome://") && p.url.contains(".top-chrome")))
            .collect())
    }

    /// Resolves when the browser is gone on its own: its process exited or
    /// its CDP connection was lost. Says which.
    pub async fn lost(&self) -> String {
        tokio::select! {
            status = self.group.leader_exited() => describe_exit(status),
            () = self.pipe.closed() => {
                // The pipe usually closes a moment before the exit is
                // reaped, and the exit status says more.
                match tokio::time::timeout(EXIT_AFTER_CLOSE, self.group.leader_exited()).await {
                    Ok(status) => describe_exit(status),
                    Err(_) => "the browser's CDP pipe was closed".to_owned(),
                }
            }
        }
    }

    /// Saves what a persistent context keeps of this browser: its cookies
    /// (default browser context, session cookies included), then, after
    /// asking it to close, so that its LevelDB stores (localStorage,
    /// IndexedDB) are written out, and waiting for its processes to exit,
    /// its state files, at most `max_bytes` of them (see
    /// [`profile_state::collect`]). All within `timeout`.
    ///
    /// The browser is gone afterwards, or going, whatever the outcome. To
    /// its watchers this looks like a crash ([`Browser::lost`] resolves):
    /// the caller stops watching it before calling this, and calls
    /// [`Browser::destroy`] after, which still removes everything (the
    /// profile, helpers left behind), and on an error keeps the context's
    /// previous version. Relayed clients see their connection close.
    pub async fn save_state(
        &self,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<BrowserState, SaveError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let cookies = self
            .pipe
            .call("Storage.getCookies", json!({}), left())
            .await?;
        let cookies = cookies.get("cookies").cloned().unwrap_or_else(|| json!([]));
        // The reply may be lost as the browser exits: the exit tells.
        match self.pipe.call("Browser.close", json!({}), left()).await {
            Ok(_) | Err(CdpError::Closed) => {}
            Err(e) => return Err(e.into()),
        }
        let status = tokio::time::timeout_at(deadline, self.group.leader_exited())
            .await
            .map_err(|_| SaveError::Timeout(timeout))?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(SaveError::Unclean(describe_exit(status)));
        }
        // Helpers (a storage or network service) may still be writing.
        if !self.group.gone_within(left()).await {
            return Err(SaveError::Timeout(timeout));
        }
        let profile = self.user_data_dir.clone();
        tokio::task::spawn_blocking(move || profile_state::collect(&profile, cookies, max_bytes))
            .await
            .map_err(|e| SaveError::Collect(std::io::Error::other(e)))?
            .map_err(SaveError::Collect)
    }

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
        if let Some(hop) = &self.proxy_hop {
            hop.stop();
        }
        // Reaped by browserd's reaper (they are its children), so a
        // zombie is not gone yet.
        if !kill_mentioning(&self.user_data_dir, helpers, |pid| !process::exists(pid)).await {
            tracing::warn!("browser helpers outlived their kill grace");
        }
        remove_profile(&self.user_data_dir);
    }
}

fn describe_exit(status: i32) -> String {
    // A jailed browser's exit is told by bwrap, which exits 128 + N when
    // the browser was killed by signal N.
    let code = libc::WEXITSTATUS(status);
    if libc::WIFSIGNALED(status) || (libc::WIFEXITED(status) && code > 128) {
        let signal = if libc::WIFSIGNALED(status) {
            libc::WTERMSIG(status)
        } else {
            code - 128
        };
        format!("the browser process was killed by signal {signal}")
    } else {
        format!(
            "the browser process exited with code {}",
            libc::WEXITSTATUS(status)
        )
    }
}

fn remove_profile(profile: &Path) {
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
