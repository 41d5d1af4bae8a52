//! Several nodes on one PostgreSQL: real `browserd serve` processes (the
//! binary next to the bench's own) started by the harness the cluster
//! tests use, each cluster on a fresh database of its own. Measured:
//! - how much later another node's subscriber gets an event than the
//!   owning node's (the event-log tail, woken by LISTEN/NOTIFY;
//!   [`delivery`]);
//! - CreateSession through one node, on one node against three with room
//!   for a third each (so that most creates are forwarded), rounds of the
//!   two interleaved ([`creates`]);
//! - the time from kill -9 of a node to its sessions' NODE_LOST events on
//!   a survivor's stream ([`node_loss`]).
//!
//! This file starts the clusters and runs the three in turn.
//!
//! Skipped with `--postgres-url none`: a cluster needs PostgreSQL.

mod creates;
mod delivery;
mod node_loss;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use browserd::harness::cluster::{Node, NodeOptions};
use browserd::harness::postgres::{TestDatabase, admin_url};
use browserd::pb;
use serde_json::json;

use crate::Bench;
use crate::report::Report;
use creates::creates;
use delivery::event_delivery;
use node_loss::node_loss;

/// Sessions created per round, how many at once, and rounds per cluster.
const CREATES: usize = 12;
const AT_ONCE: usize = 4;
const ROUNDS: usize = 3;
/// Sessions per node in the three-node cluster: the entry node fills
/// with its first `PER_NODE`, and the rest are forwarded.
const PER_NODE: usize = 4;

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
