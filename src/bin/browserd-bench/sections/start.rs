//! Floor (unjailed and jailed) and cold session start, interleaved; one
//! unmeasured round warms caches.

use std::time::Instant;

use anyhow::Result;
use browserd::browser::LaunchOptions;

use crate::report::Series;
use crate::{Bench, release, session_to_first_answer};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let (mut floor, mut jailed, mut cold_live, mut cold_cdp) = (
        Series::default(),
        Series::default(),
        Series::default(),
        Series::default(),
    );
    for round in 0..=bench.args.sessions {
        let mut spent = Vec::new();
        for (launcher, name) in [(&bench.launcher, "floor"), (&bench.jailed, "jailed")] {
            let started = Instant::now();
            let browser = launcher
                .launch(
                    &bench.work.join(format!("{name}-{round}")),
                    &LaunchOptions::default(),
                )
                .await?;
            spent.push(started.elapsed());
            browser.destroy().await;
        }
        let (live, answered, id) = session_to_first_answer(&bench.cold).await?;
        release(&bench.cold, &id).await?;
        if round > 0 {
            floor.0.push(spent[0]);
            jailed.0.push(spent[1]);
            cold_live.0.push(live);
            cold_cdp.0.push(answered);
        }
    }
    let floor_p50 = Some(floor.p(50.0));
    bench.floor_p50 = floor_p50;
    let report = &mut bench.report;
    report.section("session start (create -> first CDP answer)");
    report.latency(
        "floor",
        "floor: spawn Chromium -> getVersion",
        &floor,
        floor_p50,
    );
    report.latency(
        "floor_jailed",
        "floor, jailed: spawn Chromium -> getVersion",
        &jailed,
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
    Ok(())
}
