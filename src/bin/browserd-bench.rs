//! browserd-bench: measures, in one run on this machine, what a session
//! costs compared with the physical floor (Chromium itself).
//!
//!   cargo run --release --bin browserd-bench -- --sessions 20 --out bench.json
//!
//! - floor: spawn Chromium directly with browserd's flags until it answers
//!   `Browser.getVersion` (what a user pays with no service at all);
//! - cold: `CreateSession` until the session is LIVE, and until
//!   `Browser.getVersion` is answered through the relay at `connect_url`;
//! - crash: `kill -9` of a session's browser until a WatchSessions
//!   subscriber receives its FAILED event.
//!
//! A real browserd runs in-process on ephemeral ports with SQLite in a
//! temporary directory. Samples are taken one at a time, alternating floor
//! and cold, so machine noise hits both alike.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Parser)]
#[command(about = "Measure browserd session latency against the Chromium floor")]
struct Args {
    /// Samples per measurement.
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench.json")]
    out: std::path::PathBuf,
    /// Browsers to kill for the crash-detection measurement.
    #[arg(long, default_value_t = 10)]
    crashes: usize,
    /// Chrome or Chromium binary (default: as `browserd serve` finds it).
    #[arg(long)]
    chrome_path: Option<std::path::PathBuf>,
}

/// Latency samples of one measurement.
struct Series {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            samples: Vec::new(),
        }
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let chrome = browserd::browser::find_chrome(args.chrome_path.as_deref())
        .context("no Chrome or Chromium found: install one or pass --chrome-path")?;
    let work =
        std::env::temp_dir().join(format!("browserd-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work)?;

    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let cdp = TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let config = browserd::config::Config {
        listen: addr,
        cdp_listen: cdp.local_addr()?,
        cdp_public_url: None,
        data_dir: work.join("server"),
        database_url: None,
        chrome_path: Some(chrome.clone()),
        max_sessions: 4,
        default_timeout: Duration::from_secs(300),
        max_timeout: Duration::from_secs(3600),
        launch_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(300),
        warm_pool: 0,
        node_id: Some("bench".into()),
    };
    let stop = CancellationToken::new();
    let server = tokio::spawn(browserd::run(
        config,
        grpc,
        cdp,
        stop.clone().cancelled_owned(),
    ));
    let mut client = SessionServiceClient::connect(format!("http://{addr}")).await?;

    let tracker = TaskTracker::new();
    let reaper_stop = CancellationToken::new();
    let launcher = browserd::browser::Launcher::start(
        chrome,
        Duration::from_secs(30),
        &tracker,
        reaper_stop.clone(),
    )?;
    let options = browserd::browser::LaunchOptions {
        viewport: browserd::sessions::model::Viewport::DEFAULT,
        user_agent: None,
        proxy_url: None,
    };

    let mut floor = Series::new("floor: spawn -> Browser.getVersion");
    let mut cold_live = Series::new("cold: CreateSession -> LIVE");
    let mut cold_cdp = Series::new("cold: CreateSession -> getVersion via relay");
    // One unmeasured round of each warms page caches and the database.
    for round in 0..=args.sessions {
        let dir = work.join(format!("floor-{round}"));
        let started = Instant::now();
        let browser = launcher.launch(&dir, &options).await?;
        let spent = started.elapsed();
        browser.destroy().await;

        let started = Instant::now();
        let session = client
            .create_session(pb::CreateSessionRequest::default())
            .await?
            .into_inner()
            .session
            .context("no session in response")?;
        let live = started.elapsed();
        browser_version(&session.connect_url).await?;
        let answered = started.elapsed();
        client
            .release_session(pb::ReleaseSessionRequest {
                session_id: session.id,
            })
            .await?;
        if round > 0 {
            floor.samples.push(spent);
            cold_live.samples.push(live);
            cold_cdp.samples.push(answered);
        }
    }

    let mut crash = Series::new("crash: kill -9 browser -> FAILED event");
    let profiles = work.join("server").join("profiles");
    for _ in 0..args.crashes {
        let session = client
            .create_session(pb::CreateSessionRequest::default())
            .await?
            .into_inner()
            .session
            .context("no session in response")?;
        let mut events = client
            .watch_sessions(pb::WatchSessionsRequest {
                session_ids: vec![session.id.clone()],
                statuses: vec![pb::SessionStatus::Failed as i32],
                ..Default::default()
            })
            .await?
            .into_inner();
        let pid = browser_pid(&profiles.join(&session.id))
            .context("the session's browser is not in the process table")?;
        let killed = Instant::now();
        // SAFETY: killing the browser this bench's server launched.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        events
            .message()
            .await?
            .context("stream ended before FAILED")?;
        crash.samples.push(killed.elapsed());
    }

    stop.cancel();
    server.await??;
    reaper_stop.cancel();
    tracker.close();
    tracker.wait().await;

    let floor_p50 = floor.percentile(50.0);
    println!(
        "{:<46} {:>9} {:>9} {:>9} {:>12}",
        "measurement (ms)", "p50", "p95", "p99", "p50/floor"
    );
    let mut json = serde_json::Map::new();
    for (series, against_floor) in [
        (&floor, true),
        (&cold_live, true),
        (&cold_cdp, true),
        (&crash, false),
    ] {
        let (p50, p95, p99) = (
            series.percentile(50.0),
            series.percentile(95.0),
            series.percentile(99.0),
        );
        let ratio = if against_floor {
            format!("{:.2}", p50 / floor_p50)
        } else {
            "-".to_owned()
        };
        println!(
            "{:<46} {:>9.1} {:>9.1} {:>9.1} {:>12}",
            series.name, p50, p95, p99, ratio
        );
        json.insert(
            series.name.to_owned(),
            serde_json::json!({
                "samples": series.samples.len(),
                "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
                "p50_over_floor": against_floor.then(|| p50 / floor_p50),
            }),
        );
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    std::fs::remove_dir_all(&work)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

/// The browser process (not a helper) using `profile`.
fn browser_pid(profile: &std::path::Path) -> Option<i32> {
    let flag = format!("--user-data-dir={}", profile.display());
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&flag.as_bytes()) && !args.iter().any(|a| a.starts_with(b"--type="))
        })
}

/// Connects to `connect_url` and waits for `Browser.getVersion`'s answer.
async fn browser_version(connect_url: &str) -> Result<()> {
    let (mut socket, _) = tokio_tungstenite::connect_async(connect_url).await?;
    socket
        .send(Message::text(r#"{"id":1,"method":"Browser.getVersion"}"#))
        .await?;
    while let Some(frame) = socket.next().await {
        if let Message::Text(text) = frame?
            && text.contains(r#""id":1"#)
        {
            return Ok(());
        }
    }
    anyhow::bail!("the relay closed before Browser.getVersion was answered")
}
