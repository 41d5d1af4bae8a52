//! How much later another node's subscriber gets an event than the owning
//! node's.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use browserd::harness::WAIT;
use browserd::harness::cluster::Node;
use browserd::pb;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Cluster, session_of};
use crate::report::{Report, Series};

/// ExtendSession calls timed for the delivery figures, after a few untimed.
const EXTENDS: usize = 200;
const WARM_UP: usize = 5;
/// Node A's session extended through A, again and again, one at a time:
/// from just before each call to the event's arrival on A's subscriber
/// and on B's.
pub(super) async fn event_delivery(trio: &Cluster, report: &mut Report) -> Result<()> {
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
