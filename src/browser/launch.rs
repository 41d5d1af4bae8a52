//! Starting a browser: finding Chromium, its flags and environment, its
//! jail and CDP pipe, and restoring a context into its profile before it
//! runs.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use super::profile_state;
use crate::domain::context::BrowserState;

use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::egress::{EgressProxy, PeerCheck, Placement, Policy, Upstream};

use super::jail::{Identity, Jail};
use super::netns::{self, NetNs};
use super::pipe::{self, Pipe};
use super::process::{Group, ProcessGroups};
use super::teardown::{remove_profile, temp_dir};
use super::{Browser, CDP_CALL_TIMEOUT, CdpError, EXIT_AFTER_CLOSE, KILL_GRACE, Launcher};
use super::{LaunchOptions, Sockets};

/// Height of Chromium's own UI in each window (tab strip and toolbar), in
/// CSS pixels. Headless Chromium is the whole browser drawn off-screen:
/// `--window-size`, which it applies to every new window (a new page, a new
/// browser context's page), is the outer size, and pages get this much less
/// height. Measured on Chromium 156 (`outerHeight - innerHeight`): the same
/// at every height from 1 to 4320, and nothing in width. The viewport
/// integration test fails if a Chromium changes it.
const WINDOW_FRAME_HEIGHT: u32 = 87;

/// The flags every browser is launched with. Headless, and nothing that
/// phones home: these machines may have no route out, and a session should
/// not pay for background traffic. Whether Chromium's sandbox is on is the
/// jail's call ([`jail::Jail::command`](super::jail::Jail::command)).
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
    #[error("cannot give the browser its network namespace and egress proxy: {0}")]
    Egress(std::io::Error),
    #[error("the browser exited before answering CDP; its last output: {0}")]
    Exited(String),
    #[error("the browser did not become ready within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Cdp(#[from] CdpError),
    #[error("cannot restore the context's state into the profile: {0}")]
    Restore(std::io::Error),
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
        egress: Arc<Policy>,
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
            egress,
        })
    }

    /// What tells this launcher's browsers' connections from others'.
    pub fn sockets(&self) -> Sockets {
        Sockets::new(self.groups.clone())
    }

    /// The browser's network namespace and egress proxy: both unless the
    /// policy is open; open, a proxy only for an upstream that needs
    /// credentials (Chromium ignores them in `--proxy-server`), serving
    /// only the processes of the group `pgid` will name.
    async fn egress(
        &self,
        options: &LaunchOptions,
        pgid: &Arc<AtomicI32>,
    ) -> std::io::Result<(Option<NetNs>, Option<EgressProxy>)> {
        let (netns, placement) = if !self.egress.is_open() {
            let (netns, listener) = NetNs::with_listener().await?;
            (Some(netns), Placement::Walled(listener))
        } else if options
            .proxy
            .as_ref()
            .is_some_and(|p| p.credentials.is_some())
        {
            let pgid = pgid.clone();
            let holds: PeerCheck = Arc::new(move |peer, local| {
                let group = pgid.load(Ordering::Relaxed);
                group != 0
                    && super::process_table::tcp_peer_holder(peer, local, &[group])
                        == super::process_table::Holder::Browser
            });
            (None, Placement::Host { holds })
        } else {
            return Ok((None, None));
        };
        let upstream = options.proxy.as_ref().and_then(Upstream::of);
        let proxy =
            EgressProxy::start(placement, self.egress.clone(), upstream, &self.tracker).await?;
        Ok((netns, Some(proxy)))
    }

    /// Starts a browser with its profile in `user_data_dir` and waits until
    /// it answers CDP. On failure nothing is left: no process, no directory.
    pub async fn launch(
        &self,
        user_data_dir: &Path,
        options: &LaunchOptions,
    ) -> Result<Browser, LaunchError> {
        let pgid = Arc::new(AtomicI32::new(0));
        let (netns, egress) = self
            .egress(options, &pgid)
            .await
            .map_err(LaunchError::Egress)?;
        let spawned = self.spawn(user_data_dir, options, netns.as_ref(), egress.as_ref());
        let (group, stderr, identity, ends) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                remove_profile(user_data_dir);
                return Err(e);
            }
        };
        pgid.store(group.pid as i32, Ordering::Relaxed);
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
                egress,
                _netns: netns,
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
        netns: Option<&NetNs>,
        egress: Option<&EgressProxy>,
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
        let proxy_server = match (egress, &options.proxy) {
            (Some(egress), _) => Some(egress.proxy_server()),
            (None, proxy) => proxy.as_ref().map(|p| p.server.clone()),
        };
        if let Some(server) = proxy_server {
            command.arg(format!("--proxy-server={server}"));
        }
        if netns.is_some() {
            // Loopback too goes to the proxy, which judges it: in the
            // namespace nothing but the proxy listens there anyway.
            command.arg("--proxy-bypass-list=<-loopback>");
        }
        command.arg("about:blank");
        let ends = pipe::Ends::new().map_err(LaunchError::Pipe)?;
        let fds = [
            ends.browser_reads.as_raw_fd(),
            ends.browser_writes.as_raw_fd(),
        ];
        let netns_fd = netns.map(NetNs::raw_fd);
        // SAFETY: setns, fcntl, dup2 and close are async-signal-safe and
        // touch only the child's namespaces and descriptors.
        unsafe {
            command.pre_exec(move || {
                if let Some(fd) = netns_fd {
                    netns::enter(fd)?;
                }
                place_pipe(fds)
            });
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
