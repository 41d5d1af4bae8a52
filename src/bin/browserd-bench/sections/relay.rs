//! Relay overhead: page-level round trips, direct to a bare Chromium's
//! DevTools port and through the relay, in interleaved blocks.

use std::time::Instant;

use anyhow::Result;
use browserd::browser::cdp::CdpClient;
use serde_json::json;

use crate::bare::Bare;
use crate::report::Series;
use crate::{Bench, CDP_WAIT, cdp, create, release};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let direct_browser = Bare::launch(&bench.chrome, &bench.work.join("direct")).await?;
    let direct = cdp(&direct_browser.ws_url).await?;
    let direct_page = open_page(&direct).await?;
    let session = create(&bench.cold).await?;
    let relayed = cdp(&session.connect_url).await?;
    let relayed_page = open_page(&relayed).await?;
    let (mut direct_rt, mut relay_rt) = (Series::default(), Series::default());
    let evaluate = json!({"expression": "1+1", "returnByValue": true});
    for block in 0..21 {
        for (client, page, series) in [
            (&direct, &direct_page, &mut direct_rt),
            (&relayed, &relayed_page, &mut relay_rt),
        ] {
            for _ in 0..20 {
                let started = Instant::now();
                client
                    .call_in(page, "Runtime.evaluate", evaluate.clone(), CDP_WAIT)
                    .await?;
                if block > 0 {
                    series.0.push(started.elapsed());
                }
            }
        }
    }
    drop((direct, relayed));
    drop(direct_browser);
    release(&bench.cold, &session.id).await?;
    let direct_p50 = direct_rt.p(50.0);
    let report = &mut bench.report;
    report.section("CDP round trip: Runtime.evaluate(\"1+1\") on a page");
    report.latency("rt_direct", "direct to the browser", &direct_rt, None);
    report.latency("rt_relay", "through the relay", &relay_rt, None);
    report.line(
        "relay_overhead_ratio",
        format!("relay / direct p50: {:.2}", relay_rt.p(50.0) / direct_p50),
        json!(relay_rt.p(50.0) / direct_p50),
    );
    Ok(())
}

/// Opens a page and attaches to it (flat mode), for page-level commands.
async fn open_page(client: &CdpClient) -> Result<String> {
    let target = client.create_target("about:blank", None, CDP_WAIT).await?;
    Ok(client.attach(&target, CDP_WAIT).await?)
}
