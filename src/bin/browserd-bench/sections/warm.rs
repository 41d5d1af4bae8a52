//! The warm pool: sequential creates, each on a full, idle pool; then
//! bursts of 8 at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use browserd::harness::Server;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::report::Series;
use crate::{Bench, release, session_to_first_answer};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let mut warm_config = bench.config("warm");
    warm_config.warm_pool = 8;
    let warm = Arc::new(Server::start(warm_config).await);
    let (mut warm_live, mut warm_series) = (Series::default(), Series::default());
    for _ in 0..bench.args.sessions {
        warm.pool_health(ServingStatus::Serving).await;
        // Steady state: a new Chromium keeps a core busy for about a
        // second after it answers CDP; pooled browsers are idle by the
        // time a request comes, except right after a refill (the burst).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (live, answered, id) = session_to_first_answer(&warm).await?;
        release(&warm, &id).await?;
        warm_live.0.push(live);
        warm_series.0.push(answered);
    }
    let (mut burst_live, mut burst) = (Series::default(), Series::default());
    for _ in 0..3 {
        warm.pool_health(ServingStatus::Serving).await;
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
            release(&warm, &id).await?;
        }
    }
    let floor = bench.floor_p50;
    let report = &mut bench.report;
    report.latency(
        "warm_live",
        "warm (idle pool): CreateSession -> LIVE",
        &warm_live,
        floor,
    );
    report.latency(
        "warm",
        "warm (idle pool): create -> getVersion",
        &warm_series,
        floor,
    );
    report.latency(
        "warm_burst8_live",
        "warm (idle pool), 8 at once: -> LIVE",
        &burst_live,
        floor,
    );
    report.latency(
        "warm_burst8",
        "warm (idle pool), 8 at once: -> getVersion",
        &burst,
        floor,
    );
    Arc::into_inner(warm)
        .context("warm server still shared")?
        .stop()
        .await;
    Ok(())
}
