//! browserd-bench: what a session costs on this machine, against the
//! physical floor (Chromium itself), measured in one run.
//!
//!   cargo run --release --bin browserd-bench -- --out bench.json
//!
//! Real browserd servers run in-process on ephemeral ports (SQLite in a
//! temporary directory, and PostgreSQL from --postgres-url); the memory
//! figures come from a server in a child process, so they are its own.
//! Samples of compared series are interleaved, so machine noise hits both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

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
    /// PostgreSQL server for the control-plane figures; a fresh database is
    /// created and dropped. `none` skips them.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Run only these sections (repeatable); default: all of them.
    #[arg(long, value_enum)]
    only: Vec<Section>,
    /// Internal: serve browserd on ephemeral ports with this data dir (the
    /// memory measurement's child process).
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
    /// WatchSessions delivery to many subscribers.
    Events,
    /// browserd's own memory.
    Memory,
}

impl Args {
    fn wants(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

/// Latency samples of one measurement.
#[derive(Default)]
struct Series(Vec<Duration>);

impl Series {
    /// Nearest-rank percentile, in milliseconds.
    fn p(&self, percentile: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = ((percentile / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted
            .get(rank.min(sorted.len()).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }

    fn json(&self) -> Value {
        json!({"samples": self.0.len(), "p50_ms": self.p(50.0), "p95_ms": self.p(95.0), "p99_ms": self.p(99.0)})
    }
}

/// Rows of the printed table, and the same in JSON.
#[derive(Default)]
struct Report {
    rows: Vec<String>,
    json: BTreeMap<String, Value>,
}

impl Report {
    fn section(&mut self, title: &str) {
        self.rows.push(format!("\n{title}"));
    }

    fn latency(&mut self, key: &str, label: &str, series: &Series, floor: Option<f64>) {
        let ratio = floor.map_or("-".to_owned(), |f| format!("{:.2}", series.p(50.0) / f));
        self.rows.push(format!(
            "  {label:<44} {:>8.1} {:>8.1} {:>8.1} {ratio:>9}",
            series.p(50.0),
            series.p(95.0),
            series.p(99.0)
        ));
        let mut value = series.json();
        value["p50_over_floor"] = json!(floor.map(|f| series.p(50.0) / f));
        self.json.insert(key.to_owned(), value);
    }

    fn line(&mut self, key: &str, text: String, value: Value) {
        self.rows.push(format!("  {text}"));
        self.json.insert(key.to_owned(), value);
    }
}

struct Server {
    client: SessionServiceClient<Channel>,
    channel: Channel,
    addr: std::net::SocketAddr,
    profiles: PathBuf,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), browserd::StartError>>,
}

fn config(data_dir: &Path, chrome: &Path) -> browserd::config::Config {
    browserd::config::Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        cdp_listen: "127.0.0.1:0".parse().expect("literal address"),
        cdp_public_url: None,
        data_dir: data_dir.to_owned(),
        database_url: None,
        chrome_path: Some(chrome.to_owned()),
        max_sessions: 12,
        default_timeout: Duration::from_secs(300),
        max_timeout: Duration::from_secs(3600),
        launch_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(300),
        warm_pool: 0,
        watch_buffer: 4096,
        node_id: Some("bench".into()),
        cdp_max_message_size: 256 << 20,
        cdp_handshake_timeout: Duration::from_secs(10),
        cdp_max_connections: 512,
        cdp_max_connections_per_session: 32,
    }
}

async fn start(config: browserd::config::Config) -> Result<Server> {
    let grpc = TcpListener::bind(config.listen).await?;
    let cdp = TcpListener::bind(config.cdp_listen).await?;
    let addr = grpc.local_addr()?;
    let profiles = std::path::absolute(&config.data_dir)?.join("profiles");
    let stop = CancellationToken::new();
    let task = tokio::spawn(browserd::run(
        config,
        grpc,
        cdp,
        stop.clone().cancelled_owned(),
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(Server {
        client: SessionServiceClient::new(channel.clone()),
        channel,
        addr,
        profiles,
        stop,
        task,
    })
}

impl Server {
    async fn create(&self, request: pb::CreateSessionRequest) -> Result<pb::Session> {
        self.client
            .clone()
            .create_session(request)
            .await?
            .into_inner()
            .session
            .context("no session in response")
    }

    async fn release(&self, id: &str) -> Result<()> {
        self.client
            .clone()
            .release_session(pb::ReleaseSessionRequest {
                session_id: id.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Waits until the warm pool is full.
    async fn pool_full(&self) -> Result<()> {
        let mut statuses = HealthClient::new(self.channel.clone())
            .watch(HealthCheckRequest {
                service: browserd::WARM_POOL_HEALTH.into(),
            })
            .await?
            .into_inner();
        while let Some(status) = statuses.message().await? {
            if status.status == ServingStatus::Serving as i32 {
                return Ok(());
            }
        }
        bail!("health stream ended")
    }

    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

/// A raw CDP connection: one command at a time, events skipped.
struct Cdp {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Result<Self> {
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { socket, next_id: 0 })
    }

    async fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Result<Value> {
        self.next_id += 1;
        let mut frame = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            frame["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(frame.to_string())).await?;
        while let Some(message) = self.socket.next().await {
            if let Message::Text(text) = message? {
                let reply: Value = serde_json::from_str(&text)?;
                if reply["id"] == self.next_id {
                    return Ok(reply["result"].clone());
                }
            }
        }
        bail!("CDP connection closed during {method}")
    }

    /// Opens a page and attaches to it (flat mode), for page-level commands.
    async fn attach_page(&mut self) -> Result<String> {
        let target = self
            .call("Target.createTarget", json!({"url": "about:blank"}), None)
            .await?;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                None,
            )
            .await?;
        attached["sessionId"]
            .as_str()
            .map(str::to_owned)
            .context("no CDP session id")
    }
}

/// Create -> connect to connect_url -> Browser.getVersion answered.
async fn session_to_first_answer(server: &Server) -> Result<(Duration, Duration, String)> {
    let started = Instant::now();
    let session = server.create(pb::CreateSessionRequest::default()).await?;
    let live = started.elapsed();
    let mut cdp = Cdp::connect(&session.connect_url).await?;
    cdp.call("Browser.getVersion", json!({}), None).await?;
    Ok((live, started.elapsed(), session.id))
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
    let mut report = Report::default();
    let started = Instant::now();
    let outcome = run(&args, &chrome, &work, &mut report).await;
    std::fs::remove_dir_all(&work)?;
    outcome?;
    println!(
        "{:<46} {:>8} {:>8} {:>8} {:>9}",
        "(ms unless stated)", "p50", "p95", "p99", "p50/floor"
    );
    for row in &report.rows {
        println!("{row}");
    }
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

async fn run(args: &Args, chrome: &Path, work: &Path, report: &mut Report) -> Result<()> {
    let cold = start(config(&work.join("cold"), chrome)).await?;
    let tracker = TaskTracker::new();
    let reaper_stop = CancellationToken::new();
    let launcher = browserd::browser::Launcher::start(
        chrome.to_owned(),
        Duration::from_secs(30),
        &tracker,
        reaper_stop.clone(),
    )?;
    let defaults = browserd::browser::LaunchOptions {
        viewport: browserd::sessions::model::Viewport::DEFAULT,
        user_agent: None,
        proxy_url: None,
    };

    // Floor and cold, interleaved; one unmeasured round warms caches.
    let mut floor_p50 = None;
    if args.wants(Section::Start) {
        let (mut floor, mut cold_live, mut cold_cdp) =
            (Series::default(), Series::default(), Series::default());
        for round in 0..=args.sessions {
            let started = Instant::now();
            let browser = launcher
                .launch(&work.join(format!("floor-{round}")), &defaults)
                .await?;
            let spent = started.elapsed();
            browser.destroy().await;
            let (live, answered, id) = session_to_first_answer(&cold).await?;
            cold.release(&id).await?;
            if round > 0 {
                floor.0.push(spent);
                cold_live.0.push(live);
                cold_cdp.0.push(answered);
            }
        }
        floor_p50 = Some(floor.p(50.0));
        report.section("session start (create -> first CDP answer)");
        report.latency(
            "floor",
            "floor: spawn Chromium -> getVersion",
            &floor,
            floor_p50,
        );
        report.latency(
            "cold_live",
            "cold: CreateSession -> LIVE",
            &cold_live,
            floor_p50,
        );
        report.latency(
            "cold",
            "cold: create -> getVersion via relay",
            &cold_cdp,
            floor_p50,
        );
    }

    // Warm: sequential, each on a full pool; then bursts of 8 at once.
    if args.wants(Section::Warm) {
        let mut warm_config = config(&work.join("warm"), chrome);
        warm_config.warm_pool = 8;
        let warm = Arc::new(start(warm_config).await?);
        let (mut warm_live, mut warm_series) = (Series::default(), Series::default());
        for _ in 0..args.sessions {
            warm.pool_full().await?;
            // Steady state: a new Chromium keeps a core busy for about a
            // second after it answers CDP; pooled browsers are idle by the
            // time a request comes, except right after a refill (the burst).
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (live, answered, id) = session_to_first_answer(&warm).await?;
            warm.release(&id).await?;
            warm_live.0.push(live);
            warm_series.0.push(answered);
        }
        let (mut burst_live, mut burst) = (Series::default(), Series::default());
        for _ in 0..3 {
            warm.pool_full().await?;
            // Eight new browsers' start-up work, on two cores.
            tokio::time::sleep(Duration::from_secs(6)).await;
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let warm = warm.clone();
                    tokio::spawn(async move { session_to_first_answer(&warm).await })
                })
                .collect();
            // Released once all eight have answered: a teardown is work the
            // burst's stragglers would be measured against.
            let mut ids = Vec::new();
            for task in tasks {
                let (live, answered, id) = task.await??;
                burst_live.0.push(live);
                burst.0.push(answered);
                ids.push(id);
            }
            for id in ids {
                warm.release(&id).await?;
            }
        }
        report.latency(
            "warm_live",
            "warm (idle pool): CreateSession -> LIVE",
            &warm_live,
            floor_p50,
        );
        report.latency(
            "warm",
            "warm (idle pool): create -> getVersion",
            &warm_series,
            floor_p50,
        );
        report.latency(
            "warm_burst8_live",
            "warm (idle pool), 8 at once: -> LIVE",
            &burst_live,
            floor_p50,
        );
        report.latency(
            "warm_burst8",
            "warm (idle pool), 8 at once: -> getVersion",
            &burst,
            floor_p50,
        );
        Arc::into_inner(warm)
            .context("warm server still shared")?
            .stop()
            .await?;
    }

    // Relay overhead: page-level round trips, direct vs through the relay.
    if args.wants(Section::Relay) {
        let direct_browser = launcher.launch(&work.join("direct"), &defaults).await?;
        let mut direct = Cdp::connect(direct_browser.ws_url()).await?;
        let direct_page = direct.attach_page().await?;
        let session = cold.create(pb::CreateSessionRequest::default()).await?;
        let mut relayed = Cdp::connect(&session.connect_url).await?;
        let relayed_page = relayed.attach_page().await?;
        let (mut direct_rt, mut relay_rt) = (Series::default(), Series::default());
        let evaluate = json!({"expression": "1+1", "returnByValue": true});
        for block in 0..21 {
            for (cdp, page, series) in [
                (&mut direct, &direct_page, &mut direct_rt),
                (&mut relayed, &relayed_page, &mut relay_rt),
            ] {
                for _ in 0..20 {
                    let started = Instant::now();
                    cdp.call("Runtime.evaluate", evaluate.clone(), Some(page))
                        .await?;
                    if block > 0 {
                        series.0.push(started.elapsed());
                    }
                }
            }
        }
        drop((direct, relayed));
        direct_browser.destroy().await;
        cold.release(&session.id).await?;
        let direct_p50 = direct_rt.p(50.0);
        report.section("CDP round trip: Runtime.evaluate(\"1+1\") on a page");
        report.latency("rt_direct", "direct to the browser", &direct_rt, None);
        report.latency("rt_relay", "through the relay", &relay_rt, None);
        report.line(
            "relay_overhead_ratio",
            format!("relay / direct p50: {:.2}", relay_rt.p(50.0) / direct_p50),
            json!(relay_rt.p(50.0) / direct_p50),
        );
    }

    // Crash detection: kill -9 of a session's browser -> FAILED event.
    if args.wants(Section::Crash) {
        let mut crash = Series::default();
        for _ in 0..args.crashes {
            let session = cold.create(pb::CreateSessionRequest::default()).await?;
            let mut events = cold
                .client
                .clone()
                .watch_sessions(pb::WatchSessionsRequest {
                    session_ids: vec![session.id.clone()],
                    statuses: vec![pb::SessionStatus::Failed as i32],
                    ..Default::default()
                })
                .await?
                .into_inner();
            let pid = browser_pid(&cold.profiles.join(&session.id))
                .context("the session's browser is not in the process table")?;
            let killed = Instant::now();
            // SAFETY: killing the browser this bench's server launched.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            events
                .message()
                .await?
                .context("stream ended before FAILED")?;
            crash.0.push(killed.elapsed());
        }
        report.section("lifecycle");
        report.latency("crash", "kill -9 browser -> FAILED event", &crash, None);
    }

    // Control plane, SQLite and PostgreSQL.
    if args.wants(Section::Control) {
        report.section("control plane (requests/s, p99 ms)");
        if !args.wants(Section::Crash) {
            // The sessions read are otherwise the crash section's.
            let session = cold.create(pb::CreateSessionRequest::default()).await?;
            cold.release(&session.id).await?;
        }
        control_plane(&cold, "sqlite", report).await?;
        if args.postgres_url != "none" {
            let (url, drop_db) = fresh_postgres(&args.postgres_url).await?;
            let mut pg_config = config(&work.join("pg"), chrome);
            pg_config.database_url = Some(url);
            let pg = start(pg_config).await?;
            for _ in 0..3 {
                let session = pg.create(pb::CreateSessionRequest::default()).await?;
                pg.release(&session.id).await?;
            }
            control_plane(&pg, "postgres", report).await?;
            pg.stop().await?;
            drop_db.await?;
        }
    }

    // Event delivery to many subscribers. The transitions come from
    // launches that fail at once (the "browser" is /usr/bin/false), so the
    // figures are the event path's, not Chromium's start-up CPU.
    if args.wants(Section::Events) {
        report.section("WatchSessions delivery: transition -> receipt (ms, 1 ms resolution)");
        // In a process of its own, as subscribers are: in the bench's
        // process, every launch would fork a copy of the client's 2000
        // streams' page tables too, and the figures would be the bench's.
        let events_server =
            ChildServer::spawn(&work.join("events"), Path::new("/usr/bin/false")).await?;
        for subscribers in [1, 100, 1000] {
            let (delivery, ..) =
                event_delivery(&events_server, subscribers, Pace::Delivered).await?;
            report.latency(
                &format!("events_{subscribers}"),
                &format!("{subscribers} subscribers"),
                &delivery,
                None,
            );
        }
        let (delivery, rate, cpu) = event_delivery(&events_server, 1000, Pace::BackToBack).await?;
        report.latency(
            "events_1000_back_to_back",
            "1000 subscribers, transitions back to back",
            &delivery,
            None,
        );
        report.line(
            "events_1000_fan_out",
            format!(
                "  fan-out capacity: {rate:.0} deliveries/s; browserd CPU per delivery: {:.1} us",
                cpu.as_secs_f64() * 1e6
            ),
            json!({"deliveries_per_s": rate, "server_cpu_us_per_delivery": cpu.as_secs_f64() * 1e6}),
        );
        events_server.stop().await?;
    }
    cold.stop().await?;
    reaper_stop.cancel();
    tracker.close();
    tracker.wait().await;

    if args.wants(Section::Memory) {
        memory(chrome, work, report).await?;
    }
    Ok(())
}

async fn control_plane(server: &Server, backend: &str, report: &mut Report) -> Result<()> {
    let listed = server
        .client
        .clone()
        .list_sessions(pb::ListSessionsRequest::default())
        .await?
        .into_inner()
        .sessions;
    let id = listed.first().context("no session to read")?.id.clone();
    // A few connections, as a service with several client instances has.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{}", server.addr))?
                .connect()
                .await?,
        );
    }
    for rpc in ["GetSession", "ListSessions"] {
        for concurrency in [1usize, 16, 64] {
            let deadline = Instant::now() + Duration::from_millis(1500);
            let workers: Vec<_> = (0..concurrency)
                .map(|n| {
                    let mut client =
                        SessionServiceClient::new(channels[n % channels.len()].clone());
                    let id = id.clone();
                    tokio::spawn(async move {
                        let mut samples = Vec::new();
                        while Instant::now() < deadline {
                            let started = Instant::now();
                            let outcome = if rpc == "GetSession" {
                                client
                                    .get_session(pb::GetSessionRequest {
                                        session_id: id.clone(),
                                    })
                                    .await
                                    .map(drop)
                            } else {
                                client
                                    .list_sessions(pb::ListSessionsRequest {
                                        page_size: 20,
                                        ..Default::default()
                                    })
                                    .await
                                    .map(drop)
                            };
                            outcome?;
                            samples.push(started.elapsed());
                        }
                        Ok::<_, tonic::Status>(samples)
                    })
                })
                .collect();
            let begun = Instant::now();
            let mut series = Series::default();
            for worker in workers {
                series.0.extend(worker.await??);
            }
            let rate = series.0.len() as f64 / begun.elapsed().as_secs_f64();
            report.line(
                &format!("{backend}_{rpc}_c{concurrency}"),
                format!(
                    "{backend:<8} {rpc:<12} concurrency {concurrency:>2}: {rate:>8.0} req/s, p50 {:.2}, p99 {:.2}",
                    series.p(50.0),
                    series.p(99.0)
                ),
                json!({"requests_per_s": rate, "p50_ms": series.p(50.0), "p99_ms": series.p(99.0)}),
            );
        }
    }
    Ok(())
}

/// How the event bench spaces its transitions.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// The next session starts once every subscriber has the last one's
    /// end: each pair of events is delivered on its own, so the figures are
    /// delivery latency, not the queue of an overloaded fan-out.
    Delivered,
    /// As fast as sessions start: the fan-out's capacity, and the latency
    /// of a queue.
    BackToBack,
}

/// Opens `subscribers` live WatchSessions streams, runs sessions through
/// their (failing) lifecycle one after another, and measures each delivery
/// against the event's `occurred_at`. Also returns deliveries per second,
/// from the first create to the last receipt, and browserd's CPU time per
/// delivery over the same span.
async fn event_delivery(
    server: &ChildServer,
    subscribers: usize,
    pace: Pace,
) -> Result<(Series, f64, Duration)> {
    const SESSIONS: usize = 20;
    const EVENTS: usize = SESSIONS * 2;
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(100) {
        channels.push(
            Channel::from_shared(format!("http://{}", server.addr))?
                .connect()
                .await?,
        );
    }
    let mut streams = Vec::new();
    for n in 0..subscribers {
        let stream = SessionServiceClient::new(channels[n % channels.len()].clone())
            .watch_sessions(pb::WatchSessionsRequest::default())
            .await?
            .into_inner();
        streams.push(stream);
    }

    // A permit per subscriber per session end received.
    let ends = Arc::new(tokio::sync::Semaphore::new(0));
    // Every stream is registered before its call returns: start the traffic.
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let ends = ends.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(EVENTS);
                while latencies.len() < EVENTS {
                    let Some(message) = stream.message().await? else {
                        break;
                    };
                    let received = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    let event = message.event.unwrap_or_default();
                    let at = event.occurred_at.unwrap_or_default();
                    let occurred = Duration::new(at.seconds as u64, at.nanos as u32);
                    latencies.push(received.saturating_sub(occurred));
                    if event.to_status == pb::SessionStatus::Failed as i32 {
                        ends.add_permits(1);
                    }
                }
                Ok::<_, tonic::Status>(latencies)
            })
        })
        .collect();
    let begun = Instant::now();
    let cpu_before = cpu_time(server.pid)?;
    for _ in 0..SESSIONS {
        // PENDING, then FAILED (LAUNCH_FAILED): the refusal is expected.
        let refused = server
            .client
            .clone()
            .create_session(pb::CreateSessionRequest::default())
            .await;
        anyhow::ensure!(refused.is_err(), "the failing browser launched");
        if pace == Pace::Delivered {
            ends.acquire_many(subscribers as u32).await?.forget();
        }
    }
    let mut series = Series::default();
    for receiver in receivers {
        series.0.extend(receiver.await??);
    }
    let rate = series.0.len() as f64 / begun.elapsed().as_secs_f64();
    let cpu = cpu_time(server.pid)?.saturating_sub(cpu_before);
    anyhow::ensure!(
        series.0.len() == subscribers * EVENTS,
        "a subscriber missed events"
    );
    let per_delivery = cpu / series.0.len() as u32;
    Ok((series, rate, per_delivery))
}

/// Memory of a browserd in its own process: idle, with 100 subscribers,
/// and the PSS of one session's browser tree.
async fn memory(chrome: &Path, work: &Path, report: &mut Report) -> Result<()> {
    let data_dir = work.join("memory");
    let server = ChildServer::spawn(&data_dir, chrome).await?;
    let (pid, mut client) = (server.pid, server.client.clone());
    // Settle: let start-up allocations be returned before reading idle RSS.
    client
        .list_sessions(pb::ListSessionsRequest::default())
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid)?;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(
            client
                .watch_sessions(pb::WatchSessionsRequest::default())
                .await?
                .into_inner(),
        );
    }
    let with_subscribers = rss_kib(pid)?;
    drop(streams);
    let session = client
        .create_session(pb::CreateSessionRequest::default())
        .await?
        .into_inner()
        .session
        .context("no session")?;
    let browser_pss = pss_kib(&data_dir.join("profiles").join(&session.id))?;
    client
        .release_session(pb::ReleaseSessionRequest {
            session_id: session.id,
        })
        .await?;
    server.stop().await?;
    report.section("memory");
    let mib = |kib: u64| kib as f64 / 1024.0;
    report.line(
        "rss_idle_mib",
        format!("browserd RSS idle: {:.1} MiB", mib(idle)),
        json!(mib(idle)),
    );
    report.line(
        "rss_100_subscribers_mib",
        format!(
            "browserd RSS with 100 WatchSessions subscribers: {:.1} MiB",
            mib(with_subscribers)
        ),
        json!(mib(with_subscribers)),
    );
    report.line(
        "browser_pss_mib",
        format!(
            "one session's browser tree, PSS: {:.1} MiB",
            mib(browser_pss)
        ),
        json!(mib(browser_pss)),
    );
    Ok(())
}

/// A browserd in a process of its own (`--serve-child`).
struct ChildServer {
    child: tokio::process::Child,
    pid: u32,
    addr: String,
    client: SessionServiceClient<Channel>,
}

impl ChildServer {
    async fn spawn(data_dir: &Path, chrome: &Path) -> Result<Self> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--serve-child")
            .arg(data_dir)
            .arg("--chrome-path")
            .arg(chrome)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("child pid")?;
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
            child.stdout.take().context("child stdout")?,
        ));
        let addr = lines.next_line().await?.context("child did not start")?;
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        Ok(Self {
            child,
            pid,
            addr,
            client: SessionServiceClient::new(channel),
        })
    }

    async fn stop(mut self) -> Result<()> {
        // SAFETY: signalling the child this bench spawned.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let status = self.child.wait().await?;
        anyhow::ensure!(status.success(), "browserd exited with {status}");
        Ok(())
    }
}

/// `--serve-child`: browserd on ephemeral ports, printing its gRPC address
/// on stdout, until SIGTERM.
async fn serve_child(data_dir: &Path, chrome: &Path) -> Result<()> {
    let config = config(data_dir, chrome);
    let grpc = TcpListener::bind(config.listen).await?;
    let cdp = TcpListener::bind(config.cdp_listen).await?;
    println!("{}", grpc.local_addr()?);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    browserd::run(config, grpc, cdp, async move {
        terminate.recv().await;
    })
    .await?;
    Ok(())
}

/// User plus system CPU time of process `pid`, all threads.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name, which may hold spaces;
    // utime and stime are the 14th and 15th fields of the whole line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// Proportional set size of every process whose command line names `dir`.
fn pss_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for pid in browserd::browser::processes_mentioning(dir) {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        total += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// A new database on the PostgreSQL server, and a future that drops it.
async fn fresh_postgres(
    admin: &str,
) -> Result<(String, impl std::future::Future<Output = Result<()>>)> {
    use sea_orm::ConnectionTrait;
    let name = format!("browserd_bench_{}", uuid::Uuid::new_v4().simple());
    let conn = sea_orm::Database::connect(admin).await?;
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let base = admin
        .rsplit_once('/')
        .context("no database in --postgres-url")?
        .0;
    let url = format!("{base}/{name}");
    Ok((url, async move {
        conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        Ok(())
    }))
}

/// The browser process (not a helper) using `profile`.
fn browser_pid(profile: &Path) -> Option<i32> {
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
