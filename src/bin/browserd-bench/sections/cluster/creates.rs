//! CreateSession through one node, on one node against three, most of
//! them forwarded.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use browserd::browser::process_table;
use browserd::harness::WAIT;
use browserd::pb;
use futures_util::StreamExt;
use serde_json::json;

use super::{AT_ONCE, CREATES, Cluster, PER_NODE, ROUNDS, session_of};
use crate::report::{Report, Series};

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
pub(super) async fn creates(trio: &Cluster, solo: &Cluster, report: &mut Report) -> Result<()> {
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
