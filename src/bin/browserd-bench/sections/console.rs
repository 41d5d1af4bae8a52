//! The live view's cost: a page that repaints every frame (a CSS
//! animation, the worst case) watched through live view links, with no
//! viewer, one, and three on the same page (one shared screencast), and a
//! still page (captured once a second). Frames per second each viewer
//! receives, and the CPU of the session's browser (every process of its
//! group) and of browserd (a child process of its own) per second.
//!
//! The relay's row needs no second run: a CDP connection goes through the
//! same code whether or not anyone watches (the console costs the relay
//! one comparison of the request path per connection, and nothing per
//! message); a screencast runs on a CDP session of its own, on the same
//! browser pipe, only while a viewer watches.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use browserd::browser::process_table;
use browserd::pb;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::{Bench, CDP_WAIT, cdp, child_server};

/// How long each case is measured.
const SPAN: Duration = Duration::from_secs(5);

/// Repaints every frame.
const ANIMATED: &str = "data:text/html,<style>@keyframes s{from{transform:rotate(0)}to{transform:rotate(360deg)}}div{width:300px;height:300px;margin:100px;background:linear-gradient(red,blue);animation:s 2s linear infinite}</style><div></div>";
const STILL: &str = "data:text/html,<h1>still</h1>";

pub async fn run(bench: &mut Bench) -> Result<()> {
    let data_dir = bench.work.join("console");
    let server = child_server(&data_dir, &bench.chrome).await?;
    let session = server
        .client
        .clone()
        .create_session(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .session
        .context("no session")?;
    let client = cdp(&session.connect_url).await?;
    let targets = client
        .call("Target.getTargets", json!({}), CDP_WAIT)
        .await?;
    let page = targets["targetInfos"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["type"] == "page"))
        .and_then(|t| t["targetId"].as_str())
        .context("no page")?
        .to_owned();
    let attached = client.attach(&page, CDP_WAIT).await?;
    let profile = data_dir.join("profiles").join(&session.id);
    let browser = *process_table::browser_mains(&profile)
        .iter()
        .next()
        .context("no browser process")?;

    let report = &mut bench.report;
    report.section("Live view: one animated page (1280x720, JPEG q60), per second over 5 s");
    let mut rows = Vec::new();
    for (label, url, viewers) in [
        ("no viewer", ANIMATED, 0),
        ("1 viewer", ANIMATED, 1),
        ("3 viewers, one screencast", ANIMATED, 3),
        ("still page, 1 viewer", STILL, 1),
    ] {
        client
            .call_in(&attached, "Page.navigate", json!({"url": url}), CDP_WAIT)
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (fps, browser_cpu, browserd_cpu) =
            measure(&server, &session.id, viewers, browser).await?;
        rows.push((label, fps, browser_cpu, browserd_cpu));
    }
    let (_, _, idle_browser, idle_browserd) = rows[0];
    for (label, fps, browser_cpu, browserd_cpu) in &rows {
        report.line(
            &format!("console_{}", label.replace([' ', ','], "_")),
            format!(
                "  {label:<28} {fps:>5.1} frames/s per viewer; CPU: browser {:>5.1}% ({:+.1}), browserd {:>4.1}% ({:+.1})",
                browser_cpu * 100.0,
                (browser_cpu - idle_browser) * 100.0,
                browserd_cpu * 100.0,
                (browserd_cpu - idle_browserd) * 100.0,
            ),
            json!({
                "frames_per_s": fps,
                "browser_cpu_percent": browser_cpu * 100.0,
                "browserd_cpu_percent": browserd_cpu * 100.0,
            }),
        );
    }
    drop(client);
    server.stop().await;
    Ok(())
}

/// Opens `viewers` live view sockets on the session's first page and
/// counts their frames for [`SPAN`]; returns frames/s per viewer and the
/// CPU share (1.0 = one core) of the browser's processes and browserd's.
async fn measure(
    server: &browserd::harness::ChildServer,
    session_id: &str,
    viewers: usize,
    browser: i32,
) -> Result<(f64, f64, f64)> {
    let mut sockets = Vec::new();
    for _ in 0..viewers {
        let link = server
            .client
            .clone()
            .create_live_view_link(pb::CreateLiveViewLinkRequest {
                session_id: session_id.to_owned(),
                target_id: String::new(),
                control: false,
                ttl: None,
            })
            .await?
            .into_inner();
        let key = link.url.split_once('#').context("a key")?.1;
        let url = format!("ws://{}/console/api/live?key={key}", server.cdp_addr);
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        sockets.push(socket);
    }
    // Let the screencast start before measuring.
    let warm_up = Instant::now() + Duration::from_secs(1);
    for socket in &mut sockets {
        while let Ok(Some(_)) = tokio::time::timeout_at(warm_up.into(), socket.next()).await {}
    }
    let cpu = || -> Result<(Duration, Duration)> {
        let browser_cpu = tree(browser)
            .into_iter()
            .filter_map(process_table::cpu_time)
            .sum();
        let browserd_cpu =
            process_table::cpu_time(server.pid as i32).context("browserd is gone")?;
        Ok((browser_cpu, browserd_cpu))
    };
    let (browser_before, browserd_before) = cpu()?;
    let started = Instant::now();
    let deadline = started + SPAN;
    let counts = futures_util::future::join_all(sockets.iter_mut().map(|socket| async move {
        let mut frames = 0u32;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline.into(), socket.next()).await
        {
            if let Message::Text(text) = message
                && text[text.len().saturating_sub(160)..].contains("\"type\":\"frame\"")
            {
                frames += 1;
            }
        }
        frames
    }))
    .await;
    if viewers == 0 {
        tokio::time::sleep_until(deadline.into()).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (browser_after, browserd_after) = cpu()?;
    let fps = if viewers == 0 {
        0.0
    } else {
        counts.iter().sum::<u32>() as f64 / viewers as f64 / elapsed
    };
    Ok((
        fps,
        (browser_after - browser_before).as_secs_f64() / elapsed,
        (browserd_after - browserd_before).as_secs_f64() / elapsed,
    ))
}

/// `root` and every process descended from it (the browser's helpers:
/// zygotes, renderers, the GPU and network services).
fn tree(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = process_table::pids()
        .into_iter()
        .filter_map(|pid| Some((pid, process_table::stat(pid)?.ppid)))
        .collect();
    let mut found = vec![root];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        at += 1;
    }
    found
}
