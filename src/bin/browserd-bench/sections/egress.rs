//! The egress proxy's cost on a page: the same local page loaded in a
//! walled session (through its egress proxy, the default) and in an open
//! one (`--egress open`, direct), in interleaved blocks, each load a new
//! connection (`cache: "no-store"`, and the server closes after each).

use std::time::Instant;

use anyhow::{Context, Result};
use browserd::harness::{PAGE_HOST, Server};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::Series;
use crate::{Bench, CDP_WAIT, cdp, create, release};

/// Loads per block and session.
const LOADS: usize = 20;

pub async fn run(bench: &mut Bench) -> Result<()> {
    let page = serve_page().await?;
    let mut config = bench.config("egress-open");
    config.egress = browserd::config::Egress::Open;
    let open = Server::start(config).await;
    let mut sessions = Vec::new();
    for server in [&bench.cold, &open] {
        let session = create(server).await?;
        let client = cdp(&session.connect_url).await?;
        let target = client.create_target("about:blank", None, CDP_WAIT).await?;
        let attached = client.attach(&target, CDP_WAIT).await?;
        // Same-origin from here on: no CORS or private-network preflight.
        let url = json!({"url": format!("http://{page}/")});
        client
            .call_in(&attached, "Page.navigate", url, CDP_WAIT)
            .await?;
        let ready = json!({"expression": "document.readyState", "returnByValue": true});
        for attempt in 0.. {
            let state = client
                .call_in(&attached, "Runtime.evaluate", ready.clone(), CDP_WAIT)
                .await?;
            if state["result"]["value"] == "complete" {
                break;
            }
            anyhow::ensure!(attempt < 10_000, "the page never loaded");
        }
        sessions.push((server, session, client, attached));
    }
    let load = json!({
        "expression": format!(
            "fetch('http://{page}/?' + Math.random(), {{cache: 'no-store'}}).then(r => r.text()).then(t => t.length)"
        ),
        "awaitPromise": true,
        "returnByValue": true,
    });
    let (mut walled, mut direct) = (Series::default(), Series::default());
    for block in 0..11 {
        for (i, (_, _, client, page_session)) in sessions.iter().enumerate() {
            let series = if i == 0 { &mut walled } else { &mut direct };
            for _ in 0..LOADS {
                let started = Instant::now();
                let loaded = client
                    .call_in(page_session, "Runtime.evaluate", load.clone(), CDP_WAIT)
                    .await?;
                loaded["result"]["value"]
                    .as_u64()
                    .filter(|n| *n > 0)
                    .context("the page did not load")?;
                if block > 0 {
                    series.0.push(started.elapsed());
                }
            }
        }
    }
    for (server, session, client, _) in sessions {
        drop(client);
        release(server, &session.id).await?;
    }
    open.stop().await;
    let report = &mut bench.report;
    report.section("egress: a local page's load, new connection each time");
    report.latency(
        "load_walled",
        "through the egress proxy (walled)",
        &walled,
        None,
    );
    report.latency("load_direct", "direct (--egress open)", &direct, None);
    report.line(
        "egress_load_ratio",
        format!(
            "walled / direct load p50: {:.2}",
            walled.p(50.0) / direct.p(50.0)
        ),
        json!(walled.p(50.0) / direct.p(50.0)),
    );
    Ok(())
}

/// A 16 KB page on the harness's page host, one response per connection.
async fn serve_page() -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind((PAGE_HOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let body = format!("<html><body>{}</body></html>", "x".repeat(16 * 1024));
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}
