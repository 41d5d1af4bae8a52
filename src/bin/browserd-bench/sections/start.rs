//! Floor (unjailed, jailed, and walled: jailed in a network namespace
//! behind its egress proxy) and cold session start, interleaved; one
//! unmeasured round warms caches.

use std::time::Instant;

use anyhow::Result;
use browserd::browser::LaunchOptions;
use serde_json::json;

use crate::bare::Bare;
use crate::report::Series;
use crate::{Bench, CDP_WAIT, cdp, release, session_to_first_answer};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let [
        mut floor,
        mut unjailed,
        mut jailed,
        mut walled,
        mut cold_live,
        mut cold_cdp,
    ] = std::array::from_fn(|_| Series::default());
    for round in 0..=bench.args.sessions {
        let started = Instant::now();
        let browser =
            Bare::launch(&bench.chrome, &bench.work.join(format!("floor-{round}"))).await?;
        cdp(&browser.ws_url)
            .await?
            .call("Browser.getVersion", json!({}), CDP_WAIT)
            .await?;
        let mut spent = vec![started.elapsed()];
        drop(browser);
        for (launcher, name) in [
            (&bench.launcher, "unjailed"),
            (&bench.jailed, "jailed"),
            (&bench.walled, "walled"),
        ] {
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
            unjailed.0.push(spent[1]);
            jailed.0.push(spent[2]);
            walled.0.push(spent[3]);
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
        "floor: spawn bare Chromium -> getVersion",
        &floor,
        floor_p50,
    );
    report.latency(
        "launch_unjailed",
        "launch, --isolation none -> getVersion",
        &unjailed,
        floor_p50,
    );
    report.latency(
        "launch_jailed",
        "launch, jailed -> getVersion",
        &jailed,
        floor_p50,
    );
    report.latency(
        "launch_walled",
        "launch, jailed in its network namespace behind its egress proxy -> getVersion",
        &walled,
        floor_p50,
    );
    report.line(
        "wall_cost_ratio",
        format!(
            "walled / jailed launch p50: {:.2}",
            walled.p(50.0) / jailed.p(50.0)
        ),
        json!(walled.p(50.0) / jailed.p(50.0)),
    );
    report.line(
        "jail_cost_ratio",
        format!(
            "jailed / unjailed launch p50: {:.2}",
            jailed.p(50.0) / unjailed.p(50.0)
        ),
        json!(jailed.p(50.0) / unjailed.p(50.0)),
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
