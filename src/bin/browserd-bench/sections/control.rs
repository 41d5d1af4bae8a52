//! Control-plane throughput: GetSession and ListSessions at several
//! concurrencies, on SQLite and on PostgreSQL, by calls without a key (a
//! server with `--auth none`: no check at all) and with a project key
//! (checked against the database on every call), one after the other.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use browserd::harness::Server;
use browserd::harness::postgres::{TestDatabase, admin_url};
use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::report::{Report, Series};
use crate::{Bench, Section, create, release};

pub async fn run(bench: &mut Bench) -> Result<()> {
    bench.report.section("control plane (requests/s, p99 ms)");
    if !bench.wants(Section::Crash) {
        // The sessions read are otherwise the crash section's.
        let session = create(&bench.cold).await?;
        release(&bench.cold, &session.id).await?;
    }
    measure(&bench.cold, "sqlite", &mut bench.report).await?;
    let admin = match bench.args.postgres_url.as_deref() {
        Some("none") => return Ok(()),
        Some(url) => url.to_owned(),
        None => admin_url().await,
    };
    let database = TestDatabase::fresh_postgres(&admin).await;
    let mut pg_config = bench.config("pg");
    pg_config.database_url = Some(database.url.clone());
    let pg = Server::start(pg_config).await;
    for _ in 0..3 {
        let session = create(&pg).await?;
        release(&pg, &session.id).await?;
    }
    measure(&pg, "postgres", &mut bench.report).await?;
    pg.stop().await;
    database.remove().await;
    Ok(())
}

async fn measure(server: &Server, backend: &str, report: &mut Report) -> Result<()> {
    let listed = server
        .client
        .clone()
        .list_sessions(pb::ListSessionsRequest::default())
        .await?
        .into_inner()
        .sessions;
    let id = listed.first().context("no session to read")?.id.clone();
    // A few connections, as a service with several client instances has.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{}", server.addr))?
                .connect()
                .await?,
        );
    }
    // A project key of the sessions' project, written straight to the
    // database; the server (`--auth none`) checks a key whenever one is
    // sent.
    let store = browserd::store::Store::connect(&server.database_url).await?;
    let (_, key) = browserd::access::create_key(&store, "default", false, "bench".into())
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the bench's key: {e}"))?;
    drop(store);
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {key}").parse()?;
    for rpc in ["GetSession", "ListSessions"] {
        for concurrency in [1usize, 16, 64] {
            for keyed in [false, true] {
                let deadline = Instant::now() + Duration::from_millis(1500);
                let workers: Vec<_> = (0..concurrency)
                    .map(|n| {
                        let bearer = bearer.clone();
                        let mut client = SessionServiceClient::with_interceptor(
                            channels[n % channels.len()].clone(),
                            move |mut request: tonic::Request<()>| {
                                if keyed {
                                    request
                                        .metadata_mut()
                                        .insert("authorization", bearer.clone());
                                }
                                Ok(request)
                            },
                        );
                        let id = id.clone();
                        tokio::spawn(async move {
                            let mut samples = Vec::new();
                            while Instant::now() < deadline {
                                let started = Instant::now();
                                let outcome = if rpc == "GetSession" {
                                    client
                                        .get_session(pb::GetSessionRequest {
                                            session_id: id.clone(),
                                        })
                                        .await
                                        .map(drop)
                                } else {
                                    client
                                        .list_sessions(pb::ListSessionsRequest {
                                            page_size: 20,
                                            ..Default::default()
                                        })
                                        .await
                                        .map(drop)
                                };
                                outcome?;
                                samples.push(started.elapsed());
                            }
                            Ok::<_, tonic::Status>(samples)
                        })
                    })
                    .collect();
                let begun = Instant::now();
                let mut series = Series::default();
                for worker in workers {
                    series.0.extend(worker.await??);
                }
                let rate = series.0.len() as f64 / begun.elapsed().as_secs_f64();
                let auth = if keyed { "key" } else { "open" };
                report.line(
                &format!("{backend}_{rpc}_c{concurrency}_{auth}"),
                format!(
                    "{backend:<8} {rpc:<12} {auth:<4} concurrency {concurrency:>2}: {rate:>8.0} req/s, p50 {:.2}, p99 {:.2}",
                    series.p(50.0),
                    series.p(99.0)
                ),
                json!({"requests_per_s": rate, "p50_ms": series.p(50.0), "p99_ms": series.p(99.0)}),
            );
            }
        }
    }
    Ok(())
}
