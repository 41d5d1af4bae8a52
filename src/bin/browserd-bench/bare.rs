//! The floor: Chromium as a user would run it without browserd, with a
//! DevTools port and none of browserd's isolation, so that the session
//! figures show what browserd adds, its jail and relay included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// The flags that make Chromium start here (see docs/performance.md), and a port.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// A bare Chromium; killed and its profile removed on drop.
pub struct Bare {
    child: Child,
    profile: std::path::PathBuf,
    /// Its browser-level DevTools WebSocket.
    pub ws_url: String,
}

impl Bare {
    /// Spawns Chromium with its profile in `profile` and returns once it
    /// has printed its DevTools URL.
    pub async fn launch(chrome: &Path, profile: &Path) -> Result<Self> {
        let mut child = Command::new(chrome)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start Chromium")?;
        let stderr = child.stderr.take().context("stderr was piped")?;
        let ws_url = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stderr).lines();
            let url = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.strip_prefix("DevTools listening on ")
                    .map(|url| url.trim().to_owned())
            });
            // Drained to the end, so Chromium never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            url
        })
        .await?;
        let Some(ws_url) = ws_url else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Chromium exited before printing its DevTools URL");
        };
        Ok(Self {
            child,
            profile: profile.to_owned(),
            ws_url,
        })
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
