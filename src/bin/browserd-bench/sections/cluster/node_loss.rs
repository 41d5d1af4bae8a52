//! The time from kill -9 of a node to its sessions' NODE_LOST events on a
//! survivor's stream.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use browserd::harness::WAIT;
use browserd::pb;
use serde_json::json;

use super::{Cluster, session_of};
use crate::report::{Report, Series};

/// kill -9 repetitions, and the sessions the killed node holds each time.
const LOSSES: usize = 5;
const LOST_SESSIONS: usize = 2;

/// kill -9 of node C while it holds `LOST_SESSIONS` sessions, until node
/// A's subscriber has every one of them FAILED (NODE_LOST); C is started
/// again on its data dir between repetitions.
pub(super) async fn node_loss(trio: &mut Cluster, report: &mut Report) -> Result<()> {
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
