//! What a context costs: a session that starts from a saved state of
//! about 5 MB (an IndexedDB value of random bytes, on a local page)
//! against a cold session with none, interleaved, to its first CDP
//! answer; and the save itself (release of a persisting session).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use browserd::pb;
use browserd::pb::context_service_client::ContextServiceClient;
use serde_json::json;

use crate::report::Series;
use crate::{Bench, CDP_WAIT, cdp, release};

/// Random bytes stored in the context, before compression (random bytes
/// do not compress: the saved state is about this size).
const STATE_BYTES: usize = 5 << 20;

pub async fn run(bench: &mut Bench) -> Result<()> {
    let page = serve_blank().await?;
    let server = &bench.cold;
    let context = ContextServiceClient::new(server.channel.clone())
        .create_context(pb::CreateContextRequest {
            name: "bench".into(),
            metadata: Default::default(),
        })
        .await?
        .into_inner()
        .context
        .context("no context in response")?;
    let session_with = |persist| pb::CreateSessionRequest {
        context: Some(pb::SessionContext {
            context_id: context.id.clone(),
            persist,
        }),
        ..Default::default()
    };
    let writer = create_with(server, session_with(true)).await?;
    fill(&writer.connect_url, page).await?;
    let started = Instant::now();
    release(server, &writer.id).await?;
    let save = started.elapsed();
    let saved = ContextServiceClient::new(server.channel.clone())
        .get_context(pb::GetContextRequest {
            context_id: context.id.clone(),
        })
        .await?
        .into_inner()
        .context
        .context("no context in response")?;

    let (mut with_context, mut without) = (Series::default(), Series::default());
    for round in 0..=bench.args.sessions {
        for (request, series) in [
            (session_with(false), &mut with_context),
            (pb::CreateSessionRequest::default(), &mut without),
        ] {
            let started = Instant::now();
            let session = create_with(server, request).await?;
            cdp(&session.connect_url)
                .await?
                .call("Browser.getVersion", json!({}), CDP_WAIT)
                .await?;
            let spent = started.elapsed();
            release(server, &session.id).await?;
            if round > 0 {
                series.0.push(spent);
            }
        }
    }
    let report = &mut bench.report;
    report.section(&format!(
        "contexts (a saved state of {:.1} MiB sealed)",
        saved.size_bytes as f64 / (1 << 20) as f64
    ));
    report.latency(
        "context_none",
        "cold, no context: create -> getVersion",
        &without,
        bench.floor_p50,
    );
    report.latency(
        "context_5mb",
        "cold, with the context: create -> getVersion",
        &with_context,
        bench.floor_p50,
    );
    report.line(
        "context_cost_ratio",
        format!(
            "with / without context p50: {:.2}",
            with_context.p(50.0) / without.p(50.0)
        ),
        json!(with_context.p(50.0) / without.p(50.0)),
    );
    report.line(
        "context_save_ms",
        format!(
            "release of the persisting session (close, collect, seal, store): {:.1} ms",
            ms(save)
        ),
        json!(ms(save)),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn create_with(
    server: &browserd::harness::Server,
    request: pb::CreateSessionRequest,
) -> Result<pb::Session> {
    server
        .client
        .clone()
        .create_session(request)
        .await?
        .into_inner()
        .session
        .context("no session in response")
}

/// Stores [`STATE_BYTES`] of random bytes in IndexedDB on `page`'s origin.
async fn fill(connect_url: &str, page: std::net::SocketAddr) -> Result<()> {
    let client = cdp(connect_url).await?;
    let target = client
        .create_target(&format!("http://{page}/"), None, CDP_WAIT)
        .await?;
    let session = client.attach(&target, CDP_WAIT).await?;
    let script = format!(
        r#"new Promise((resolve, reject) => {{
            const bytes = new Uint8Array({STATE_BYTES});
            for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
            const open = indexedDB.open('bench', 1);
            open.onupgradeneeded = () => open.result.createObjectStore('blobs');
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {{
                const tx = open.result.transaction('blobs', 'readwrite');
                tx.objectStore('blobs').put(bytes, 'state');
                tx.oncomplete = () => resolve('stored');
                tx.onerror = () => reject(tx.error);
            }};
        }})"#
    );
    let stored = client
        .call_in(
            &session,
            "Runtime.evaluate",
            json!({"expression": script, "awaitPromise": true, "returnByValue": true}),
            CDP_WAIT,
        )
        .await?;
    anyhow::ensure!(
        stored["result"]["value"] == "stored",
        "IndexedDB write failed: {stored}"
    );
    Ok(())
}

/// A page on an http origin (IndexedDB needs one), served until the bench
/// exits.
async fn serve_blank() -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = "<html><body>bench</body></html>";
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
