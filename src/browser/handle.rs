//! A running browser: what browserd asks of it (its pages, whether it
//! is still there), and saving a persistent context's state out of it.

use std::path::Path;
use std::time::Duration;

use super::profile_state;
use crate::domain::context::BrowserState;
use crate::domain::egress::{EgressRules, EgressUsage};
use crate::egress::EgressProxy;

use serde_json::json;

use super::pipe::Pipe;
use super::{Browser, CDP_CALL_TIMEOUT, CdpError, EXIT_AFTER_CLOSE};

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

    /// Makes its traffic a session's (`label` names it in logs), judged
    /// with that session's narrowing of the policy.
    pub fn assign_egress(&self, label: String, rules: EgressRules) {
        if let Some(egress) = &self.egress {
            egress.assign(label, rules);
        }
    }

    /// What it sent and received through its egress proxy; `None` for a
    /// browser without one (`--egress open`, no authenticating proxy).
    pub fn egress_usage(&self) -> Option<EgressUsage> {
        self.egress.as_ref().map(EgressProxy::usage)
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
