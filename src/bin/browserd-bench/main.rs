//! browserd-bench: what a session costs on this machine, against the
//! physical floor (Chromium itself), measured in one run.
//!
//!   cargo run --release --features test-support --bin browserd-bench -- --out bench.json
//!
//! Real browserd servers run on ephemeral ports through browserd's own
//! harness (the one the tests use): in this process on SQLite in a
//! temporary directory and on a fresh PostgreSQL database, and in a child
//! process for the figures that must be browserd's alone (events, memory);
//! the cluster section runs `browserd serve` processes, the binary next to
//! this one, on PostgreSQL.
//! Samples of compared series are interleaved, so machine noise hits both.
//!
//! One file per section, in the order a full run measures them.

mod bare;
mod report;
mod sections;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use browserd::browser::cdp::CdpClient;
use browserd::harness::{ChildServer, Server};
use browserd::pb;
use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use report::Report;

#[derive(Debug, Parser)]
#[command(about = "Measure browserd against the Chromium floor, in one run")]
struct Args {
    /// Samples of each session-latency series.
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Browsers to kill for the crash-detection series.
    #[arg(long, default_value_t = 10)]
    crashes: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// Chrome or Chromium binary (default: as `browserd serve` finds it).
    #[arg(long)]
    chrome_path: Option<PathBuf>,
    /// PostgreSQL server for the control-plane and cluster figures; fresh
    /// databases are created and dropped. Default: the tests' server (TEST_DATABASE_URL,
    /// else 127.0.0.1:5432, else a throwaway cluster). `none` skips them.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Run only these sections (repeatable); default: all of them.
    #[arg(long, value_enum)]
    only: Vec<Section>,
    /// Internal: serve browserd on ephemeral ports with this data dir (the
    /// events and memory measurements' child process).
    #[arg(long, hide = true)]
    serve_child: Option<PathBuf>,
}

/// The bench's sections, in the order a full run measures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// Floor and cold session start.
    Start,
    /// Warm pool, sequential and in bursts.
    Warm,
    /// CDP round trips, direct and through the relay.
    Relay,
    /// kill -9 of a browser -> FAILED event.
    Crash,
    /// GetSession and ListSessions throughput.
    Control,
    /// A session from a saved context of about 5 MB, and the save.
    Contexts,
    /// WatchSessions delivery to many subscribers.
    Events,
    /// Live view: screencast frames/s and CPU per viewed page.
    Console,
    /// browserd's own memory.
    Memory,
    /// Three `browserd serve` processes on one PostgreSQL: cross-node event
    /// delivery, creates on one node against three, node-loss detection.
    Cluster,
    /// Page loads through the egress proxy and direct.
    Egress,
}

/// What every section works with.
struct Bench {
    args: Args,
    chrome: PathBuf,
    /// Scratch space, removed at the end.
    work: PathBuf,
    report: Report,
    /// A server with no warm pool, on SQLite.
    cold: Server,
    /// Launches browsers as browserd does, unjailed and with no session.
    launcher: browserd::browser::Launcher,
    /// The same in browserd's jail, to price the jail.
    jailed: browserd::browser::Launcher,
    /// Jailed, and in a network namespace behind its egress proxy, to
    /// price the wall.
    walled: browserd::browser::Launcher,
    /// The floor's p50, once the start section has measured it.
    floor_p50: Option<f64>,
}

impl Bench {
    fn wants(&self, section: Section) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&section)
    }

    /// A server configuration on SQLite under the scratch dir.
    fn config(&self, name: &str) -> browserd::config::Config {
        config(&self.work.join(name), &self.chrome)
    }
}

fn config(data_dir: &Path, chrome: &Path) -> browserd::config::Config {
    let mut config = browserd::harness::config(data_dir, None);
    config.chrome_path = Some(chrome.to_owned());
    config.max_sessions = 12;
    config.node_id = Some("bench".into());
    // Calls without a key stay the baseline the control-plane section
    // compares keyed calls with, after it has made a key.
    config.auth = browserd::config::Auth::None;
    config
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let chrome = browserd::browser::find_chrome(args.chrome_path.as_deref())
        .context("no Chrome or Chromium found: install one or pass --chrome-path")?;
    if let Some(data_dir) = &args.serve_child {
        return serve_child(data_dir, &chrome).await;
    }
    let work =
        std::env::temp_dir().join(format!("browserd-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work)?;
    let started = Instant::now();
    let max_message_size = config(&work, &chrome).cdp_max_message_size;
    let tracker = TaskTracker::new();
    let reaper_stop = CancellationToken::new();
    let open = || std::sync::Arc::new(browserd::egress::Policy::new(true, vec![], vec![]));
    let launcher = browserd::browser::Launcher::start(
        chrome.clone(),
        browserd::browser::jail::Jail::none(),
        Duration::from_secs(30),
        max_message_size,
        open(),
        &tracker,
        reaper_stop.clone(),
    )?;
    let jailed = browserd::browser::Launcher::start(
        chrome.clone(),
        browserd::browser::jail::Jail::build(None)?,
        Duration::from_secs(30),
        max_message_size,
        open(),
        &tracker,
        reaper_stop.clone(),
    )?;
    let walled = browserd::browser::Launcher::start(
        chrome.clone(),
        browserd::browser::jail::Jail::build(None)?,
        Duration::from_secs(30),
        max_message_size,
        browserd::harness::egress_policy(),
        &tracker,
        reaper_stop.clone(),
    )?;
    let cold = Server::start(config(&work.join("cold"), &chrome)).await;
    let mut bench = Bench {
        args,
        chrome,
        work,
        report: Report::default(),
        cold,
        launcher,
        jailed,
        walled,
        floor_p50: None,
    };
    let outcome = sections::run_all(&mut bench).await;
    let Bench {
        args,
        work,
        mut report,
        cold,
        ..
    } = bench;
    cold.stop().await;
    reaper_stop.cancel();
    tracker.close();
    tracker.wait().await;
    std::fs::remove_dir_all(&work)?;
    outcome?;
    report.print();
    report.json.insert(
        "bench_seconds".into(),
        json!(started.elapsed().as_secs_f64()),
    );
    std::fs::write(&args.out, serde_json::to_string_pretty(&report.json)?)?;
    println!(
        "\nfinished in {:.0} s; results written to {}",
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// `--serve-child`: browserd on ephemeral ports, logging its bound address
/// on stderr as `browserd serve` does, until SIGTERM.
async fn serve_child(data_dir: &Path, chrome: &Path) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("warn,browserd=info")
        .with_writer(std::io::stderr)
        // The parent reads the listening line's fields.
        .with_ansi(false)
        .init();
    let config = config(data_dir, chrome);
    let grpc = tokio::net::TcpListener::bind(config.listen).await?;
    let cdp = tokio::net::TcpListener::bind(config.cdp_listen).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    browserd::run(config, grpc, cdp, async move {
        terminate.recv().await;
    })
    .await?;
    Ok(())
}

/// This bench in a child process serving browserd (`--serve-child`).
async fn child_server(data_dir: &Path, chrome: &Path) -> Result<ChildServer> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .arg("--serve-child")
        .arg(data_dir)
        .arg("--chrome-path")
        .arg(chrome);
    Ok(ChildServer::spawn(command).await)
}

/// CreateSession on `server`.
async fn create(server: &Server) -> Result<pb::Session> {
    server
        .client
        .clone()
        .create_session(pb::CreateSessionRequest::default())
        .await?
        .into_inner()
        .session
        .context("no session in response")
}

async fn release(server: &Server, id: &str) -> Result<()> {
    server
        .client
        .clone()
        .release_session(pb::ReleaseSessionRequest {
            session_id: id.to_owned(),
        })
        .await?;
    Ok(())
}

/// How long any one CDP command may take.
const CDP_WAIT: Duration = Duration::from_secs(30);

async fn cdp(url: &str) -> Result<CdpClient> {
    Ok(CdpClient::connect(url, &TaskTracker::new()).await?)
}

/// Create -> connect to connect_url -> Browser.getVersion answered: the
/// times to LIVE and to the answer, and the session's id.
async fn session_to_first_answer(server: &Server) -> Result<(Duration, Duration, String)> {
    let started = Instant::now();
    let session = create(server).await?;
    let live = started.elapsed();
    let client = cdp(&session.connect_url).await?;
    client
        .call("Browser.getVersion", json!({}), CDP_WAIT)
        .await?;
    Ok((live, started.elapsed(), session.id))
}
