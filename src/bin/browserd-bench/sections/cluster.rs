//! Several nodes on one PostgreSQL: real `browserd serve` processes (the
//! binary next to the bench's own) started by the harness the cluster
//! tests use, each cluster on a fresh database of its own. Measured:
//! - how much later another node's subscriber gets an event than the
//!   owning node's (the event-log tail, woken by LISTEN/NOTIFY);
//! - CreateSession through one node, on one node against three with room
//!   for a third each (so that most creates are forwarded), rounds of the
//!   two interleaved;
//! - the time from kill -9 of a node to its sessions' NODE_LOST events on
//!   a survivor's stream.
//!
//! Skipped with `--postgres-url none`: a cluster needs PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use browserd::browser::process_table;
use browserd::harness::WAIT;
use browserd::harness::cluster::{Node, NodeOptions};
use browserd::harness::postgres::{TestDatabase, admin_url};
use browserd::pb;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use crate::Bench;
use crate::report::{Report, Series};

/// ExtendSession calls timed for the delivery figures, after a few untimed.
const EXTENDS: usize = 200;
const WARM_UP: usize = 5;
/// Sessions created per round, how many at once, and rounds per cluster.
const CREATES: usize = 12;
const AT_ONCE: usize = 4;
const ROUNDS: usize = 3;
/// Sessions per node in the three-node cluster: the entry node fills
/// with its first `PER_NODE`, and the rest are forwarded.
const PER_NODE: usize = 4;
/// kill -9 repetitions, and the sessions the killed node holds each time.
const LOSSES: usize = 5;
const LOST_SESSIONS: usize = 2;

pub async fn run(bench: &mut Bench) -> Result<()> {
    let admin = match bench.args.postgres_url.as_deref() {
        Some("none") => {
            bench.report.section("cluster");
            bench.report.line(
                "cluster_skipped",
                "skipped: no PostgreSQL (--postgres-url none)".into(),
                json!(true),
            );
            return Ok(());
        }
        Some(url) => url.to_owned(),
        None => admin_url().await,
    };
    let browserd = std::env::current_exe()?.with_file_name("browserd");
    ensure!(
        browserd.is_file(),
        "no {}: build it with the bench (cargo build --release --features test-support --bin browserd --bin browserd-bench)",
        browserd.display()
    );
    let options = |max_sessions| NodeOptions {
        max_sessions,
        chrome_path: Some(bench.chrome.clone()),
        ..NodeOptions::default()
    };
    let work = bench.work.join("cluster");
    let mut trio =
        Cluster::start(&browserd, &work.join("three"), &admin, 3, options(PER_NODE)).await;
    let solo = Cluster::start(&browserd, &work.join("one"), &admin, 1, options(CREATES)).await;
    let outcome = measure(&mut trio, &solo, &mut bench.report).await;
    // Every node and database goes, whatever happened.
    let stopped = [solo.stop().await, trio.stop().await];
    outcome?;
    stopped.into_iter().collect()
}

async fn measure(trio: &mut Cluster, solo: &Cluster, report: &mut Report) -> Result<()> {
    event_delivery(trio, report).await?;
    creates(trio, solo, report).await?;
    node_loss(trio, report).await
}

/// Node A's session extended through A, again and again, one at a time:
/// from just before each call to the event's arrival on A's subscriber
/// and on B's.
async fn event_delivery(trio: &Cluster, report: &mut Report) -> Result<()> {
    let mut a = trio.nodes[0].client();
    let session = session_of(
        a.create_session(pb::CreateSessionRequest::default())
            .await?,
    )?;
    ensure!(
        session.node_id == trio.nodes[0].id,
        "the first session landed on {}",
        session.node_id
    );
    let mut on_a = Arrivals::watch(&trio.nodes[0], &session.id).await?;
    let mut on_b = Arrivals::watch(&trio.nodes[1], &session.id).await?;
    let (mut here, mut there) = (Series::default(), Series::default());
    for n in 0..WARM_UP + EXTENDS {
        let started = Instant::now();
        a.extend_session(pb::ExtendSessionRequest {
            session_id: session.id.clone(),
            timeout: Some(prost_types::Duration {
                seconds: 600 + n as i64,
                nanos: 0,
            }),
        })
        .await?;
        let (sequence_a, at_a) = on_a.next_extended().await?;
        let (sequence_b, at_b) = on_b.next_extended().await?;
        ensure!(
            sequence_a == sequence_b,
            "A and B delivered different events: {sequence_a} and {sequence_b}"
        );
        if n >= WARM_UP {
            here.0.push(at_a - started);
            there.0.push(at_b - started);
        }
    }
    a.release_session(pb::ReleaseSessionRequest {
        session_id: session.id,
    })
    .await?;
    report.section("cluster, 3 node processes: ExtendSession through A -> the event on A and on B");
    report.latency(
        "cluster_event_owner",
        "subscriber on A (the owning node)",
        &here,
        None,
    );
    report.latency(
        "cluster_event_other",
        "subscriber on B (via the log tail)",
        &there,
        None,
    );
    let (p50, p99) = (there.p(50.0) / here.p(50.0), there.p(99.0) / here.p(99.0));
    report.line(
        "cluster_event_ratio",
        format!("B / A: p50 {p50:.2}, p99 {p99:.2}"),
        json!({"p50": p50, "p99": p99}),
    );
    Ok(())
}

/// One node's WatchSessions stream of one session, each event stamped on
/// arrival by a task of its own.
struct Arrivals {
    events: mpsc::UnboundedReceiver<(pb::SessionEvent, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl Arrivals {
    async fn watch(node: &Node, session_id: &str) -> Result<Self> {
        // Registered before the call returns: no event after it is missed.
        let mut stream = node
            .client()
            .watch_sessions(pb::WatchSessionsRequest {
                session_ids: vec![session_id.to_owned()],
                ..Default::default()
            })
            .await?
            .into_inner();
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                let at = Instant::now();
                let event = message.event.unwrap_or_default();
                if sender.send((event, at)).is_err() {
                    return;
                }
            }
        });
        Ok(Self { events, task })
    }

    /// The next EXTENDED event's sequence and arrival.
    async fn next_extended(&mut self) -> Result<(u64, Instant)> {
        loop {
            let (event, at) = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .context("no event within the harness's wait")?
                .context("the watch stream ended")?;
            if event.kind == pb::EventKind::Extended as i32 {
                return Ok((event.sequence, at));
            }
        }
    }
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one round of creates through a node gave.
#[derive(Default)]
struct Creates {
    /// Each create's latency, and whether another node got the session.
    created: Vec<(Duration, bool)>,
    busy: Duration,
}

impl Creates {
    fn series(&self, which: impl Fn(bool) -> bool) -> Series {
        Series(
            self.created
                .iter()
                .filter(|(_, forwarded)| which(*forwarded))
                .map(|(latency, _)| *latency)
                .collect(),
        )
    }

    fn forwarded(&self) -> usize {
        self.created.iter().filter(|(_, f)| *f).count()
    }

    fn rate(&self) -> f64 {
        self.created.len() as f64 / self.busy.as_secs_f64()
    }
}

/// Rounds of `CREATES` sessions, `AT_ONCE` at a time, through node A of
/// one cluster and of the other, alternately and in alternating order.
async fn creates(trio: &Cluster, solo: &Cluster, report: &mut Report) -> Result<()> {
    let (mut one, mut three) = (Creates::default(), Creates::default());
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 {
            [(solo, &mut one), (trio, &mut three)]
        } else {
            [(trio, &mut three), (solo, &mut one)]
        };
        for (cluster, into) in order {
            create_round(cluster, into).await?;
        }
    }
    report.section(&format!(
        "cluster: CreateSession through node A, {CREATES} sessions {AT_ONCE} at a time, {ROUNDS} rounds"
    ));
    report.latency(
        "cluster_create_1",
        "1 node (room for all)",
        &one.series(|_| true),
        None,
    );
    report.latency(
        "cluster_create_3",
        &format!("3 nodes ({PER_NODE} each), all"),
        &three.series(|_| true),
        None,
    );
    report.latency(
        "cluster_create_3_here",
        "3 nodes: placed on A",
        &three.series(|forwarded| !forwarded),
        None,
    );
    report.latency(
        "cluster_create_3_forwarded",
        "3 nodes: forwarded to B or C",
        &three.series(|forwarded| forwarded),
        None,
    );
    let (rate_1, rate_3) = (one.rate(), three.rate());
    let p99_ratio = three.series(|_| true).p(99.0) / one.series(|_| true).p(99.0);
    report.line(
        "cluster_create_rate",
        format!(
            "sessions/s: 1 node {rate_1:.1}, 3 nodes {rate_3:.1} ({:.2}x); create p99 3/1 nodes {p99_ratio:.2}; forwarded {}/{} (1 node: {})",
            rate_3 / rate_1,
            three.forwarded(),
            three.created.len(),
            one.forwarded(),
        ),
        json!({
            "sessions_per_s_1_node": rate_1,
            "sessions_per_s_3_nodes": rate_3,
            "p99_3_over_1": p99_ratio,
            "forwarded_3_nodes": three.forwarded(),
            "forwarded_1_node": one.forwarded(),
            "sessions": three.created.len(),
        }),
    );
    Ok(())
}

/// `CREATES` sessions through the cluster's first node, then released
/// through it too; returns once their browsers are gone, so that the next
/// round's launches do not share the cores with these teardowns.
async fn create_round(cluster: &Cluster, into: &mut Creates) -> Result<()> {
    let entry = &cluster.nodes[0];
    let begun = Instant::now();
    let created: Vec<Result<(Duration, pb::Session)>> = futures_util::stream::iter(0..CREATES)
        .map(|_| {
            let mut client = entry.client();
            async move {
                let started = Instant::now();
                let session = session_of(
                    client
                        .create_session(pb::CreateSessionRequest::default())
                        .await?,
                )?;
                Ok((started.elapsed(), session))
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    into.busy += begun.elapsed();
    let mut ids = Vec::new();
    for outcome in created {
        let (latency, session) = outcome?;
        into.created.push((latency, session.node_id != entry.id));
        ids.push(session.id);
    }
    let released = entry
        .client()
        .release_all_sessions(pb::ReleaseAllSessionsRequest::default())
        .await?
        .into_inner()
        .released_ids;
    ensure!(
        released.len() == ids.len(),
        "released {} of {} sessions",
        released.len(),
        ids.len()
    );
    let deadline = Instant::now() + WAIT;
    while cluster
        .nodes
        .iter()
        .any(|node| !process_table::browser_mains(&node.profiles()).is_empty())
    {
        ensure!(Instant::now() < deadline, "released browsers still run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// kill -9 of node C while it holds `LOST_SESSIONS` sessions, until node
/// A's subscriber has every one of them FAILED (NODE_LOST); C is started
/// again on its data dir between repetitions.
async fn node_loss(trio: &mut Cluster, report: &mut Report) -> Result<()> {
    let (mut first, mut all) = (Series::default(), Series::default());
    for _ in 0..LOSSES {
        let mut c = trio.nodes[2].client();
        let mut ids = Vec::new();
        for _ in 0..LOST_SESSIONS {
            let session = session_of(
                c.create_session(pb::CreateSessionRequest::default())
                    .await?,
            )?;
            ensure!(
                session.node_id == trio.nodes[2].id,
                "a session for node C landed on {}",
                session.node_id
            );
            ids.push(session.id);
        }
        let mut on_a = trio.nodes[0]
            .client()
            .watch_sessions(pb::WatchSessionsRequest {
                session_ids: ids.clone(),
                statuses: vec![pb::SessionStatus::Failed as i32],
                ..Default::default()
            })
            .await?
            .into_inner();
        let killed = Instant::now();
        trio.nodes[2].server.signal(libc::SIGKILL);
        for n in 0..ids.len() {
            let event = tokio::time::timeout(WAIT, on_a.message())
                .await
                .context("no NODE_LOST within the harness's wait")??
                .and_then(|message| message.event)
                .context("the watch stream ended")?;
            ensure!(
                event.end_reason == pb::EndReason::NodeLost as i32,
                "session {} ended {:?}",
                event.session_id,
                event.end_reason
            );
            if n == 0 {
                first.0.push(killed.elapsed());
            }
        }
        all.0.push(killed.elapsed());
        trio.nodes[2].server.exit_status().await;
        trio.restart(2).await;
    }
    let lease = trio.options.lease;
    let bound = lease + lease / 4;
    report.section(&format!(
        "cluster: kill -9 of a node with {LOST_SESSIONS} sessions -> NODE_LOST on a survivor's stream (--lease {})",
        humantime::format_duration(lease)
    ));
    report.latency(
        "cluster_node_lost_first",
        "first session's event",
        &first,
        None,
    );
    report.latency("cluster_node_lost_all", "both sessions' events", &all, None);
    let max = all.p(100.0);
    report.line(
        "cluster_node_lost_bound",
        format!(
            "both, p50 {:.0} / max {max:.0} ms; bound lease + lease/4 = {} ms + the survivor's reads ({} repetitions)",
            all.p(50.0),
            bound.as_millis(),
            all.0.len()
        ),
        json!({
            "p50_ms": all.p(50.0),
            "max_ms": max,
            "samples_ms": all.0.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
            "lease_ms": lease.as_millis(),
            "bound_before_reads_ms": bound.as_millis(),
        }),
    );
    Ok(())
}

fn session_of(response: tonic::Response<pb::CreateSessionResponse>) -> Result<pb::Session> {
    response
        .into_inner()
        .session
        .context("no session in response")
}

/// Nodes `node-a`, `node-b`, … as processes on a fresh database, with one
/// secret file.
struct Cluster {
    browserd: PathBuf,
    dir: PathBuf,
    database: TestDatabase,
    options: NodeOptions,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start(
        browserd: &Path,
        dir: &Path,
        admin: &str,
        size: usize,
        options: NodeOptions,
    ) -> Self {
        let mut cluster = Self {
            browserd: browserd.to_owned(),
            dir: dir.to_owned(),
            database: TestDatabase::fresh_postgres(admin).await,
            options,
            nodes: Vec::new(),
        };
        for i in 0..size {
            let node = cluster.node(i).await;
            cluster.nodes.push(node);
        }
        cluster
    }

    async fn node(&self, i: usize) -> Node {
        let id = format!("node-{}", (b'a' + i as u8) as char);
        Node::start(
            &self.browserd,
            &self.dir.join(&id),
            &id,
            &self.database.url,
            &self.dir.join("secret"),
            &self.options,
        )
        .await
    }

    /// Node `i` started again on its data dir (its process has exited).
    async fn restart(&mut self, i: usize) {
        self.nodes[i] = self.node(i).await;
    }

    /// SIGTERM to every node, then the database dropped.
    async fn stop(self) -> Result<()> {
        let mut failed = Vec::new();
        for mut node in self.nodes {
            node.server.signal(libc::SIGTERM);
            let status = node.server.exit_status().await;
            if !status.success() {
                failed.push(format!("{} exited with {status}", node.id));
            }
        }
        self.database.remove().await;
        ensure!(failed.is_empty(), "{}", failed.join("; "));
        Ok(())
    }
}
