//! Memory of a browserd in its own process: idle, with 100 subscribers,
//! and the PSS of one session's browser tree.

use std::time::Duration;

use anyhow::{Context, Result};
use browserd::browser::process_table;
use browserd::pb;
use serde_json::json;

use crate::{Bench, child_server};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let data_dir = bench.work.join("memory");
    let server = child_server(&data_dir, &bench.chrome).await?;
    let (pid, mut client) = (server.pid as i32, server.client.clone());
    // Settle: let start-up allocations be returned before reading idle RSS.
    client
        .list_sessions(pb::ListSessionsRequest::default())
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = || process_table::memory_kib(pid, "status", "VmRSS").context("no VmRSS");
    let idle = rss()?;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(
            client
                .watch_sessions(pb::WatchSessionsRequest::default())
                .await?
                .into_inner(),
        );
    }
    let with_subscribers = rss()?;
    drop(streams);
    let session = client
        .create_session(pb::CreateSessionRequest::default())
        .await?
        .into_inner()
        .session
        .context("no session")?;
    let profile = data_dir.join("profiles").join(&session.id);
    let browser_pss: u64 = process_table::mentioning(&profile)
        .into_iter()
        .filter_map(|pid| process_table::memory_kib(pid, "smaps_rollup", "Pss"))
        .sum();
    client
        .release_session(pb::ReleaseSessionRequest {
            session_id: session.id,
        })
        .await?;
    server.stop().await;
    let report = &mut bench.report;
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
