//! WatchSessions delivery to many subscribers, from a browserd in a child
//! process. The transitions come from launches that fail at once (the
//! "browser" is /usr/bin/false), so the figures are the event path's, not
//! Chromium's start-up CPU.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use browserd::browser::process_table;
use browserd::harness::ChildServer;
use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::report::Series;
use crate::{Bench, child_server};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let report = &mut bench.report;
    report.section("WatchSessions delivery: transition -> receipt (ms, 1 ms resolution)");
    // In a process of its own, as subscribers are: in the bench's process,
    // every launch would fork a copy of the client's 2000 streams' page
    // tables too, and the figures would be the bench's.
    let server = child_server(&bench.work.join("events"), Path::new("/usr/bin/false")).await?;
    for subscribers in [1, 100, 1000] {
        let (delivery, ..) = event_delivery(&server, subscribers, Pace::Delivered).await?;
        report.latency(
            &format!("events_{subscribers}"),
            &format!("{subscribers} subscribers"),
            &delivery,
            None,
        );
    }
    let (delivery, rate, cpu) = event_delivery(&server, 1000, Pace::BackToBack).await?;
    report.latency(
        "events_1000_back_to_back",
        "1000 subscribers, transitions back to back",
        &delivery,
        None,
    );
    report.line(
        "events_1000_fan_out",
        format!(
            "  fan-out capacity: {rate:.0} deliveries/s; browserd CPU per delivery: {:.1} us",
            cpu.as_secs_f64() * 1e6
        ),
        json!({"deliveries_per_s": rate, "server_cpu_us_per_delivery": cpu.as_secs_f64() * 1e6}),
    );
    server.stop().await;
    Ok(())
}

fn cpu_time(server: &ChildServer) -> Result<Duration> {
    process_table::cpu_time(server.pid as i32).context("browserd is gone")
}

/// How the event bench spaces its transitions.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// The next session starts once every subscriber has the last one's
    /// end: each pair of events is delivered on its own, so the figures are
    /// delivery latency, not the queue of an overloaded fan-out.
    Delivered,
    /// As fast as sessions start: the fan-out's capacity, and the latency
    /// of a queue.
    BackToBack,
}

/// Opens `subscribers` live WatchSessions streams, runs sessions through
/// their (failing) lifecycle one after another, and measures each delivery
/// against the event's `occurred_at`. Also returns deliveries per second,
/// from the first create to the last receipt, and browserd's CPU time per
/// delivery over the same span.
async fn event_delivery(
    server: &ChildServer,
    subscribers: usize,
    pace: Pace,
) -> Result<(Series, f64, Duration)> {
    const SESSIONS: usize = 20;
    const EVENTS: usize = SESSIONS * 2;
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(100) {
        channels.push(
            Channel::from_shared(format!("http://{}", server.addr))?
                .connect()
                .await?,
        );
    }
    let mut streams = Vec::new();
    for n in 0..subscribers {
        let stream = SessionServiceClient::new(channels[n % channels.len()].clone())
            .watch_sessions(pb::WatchSessionsRequest::default())
            .await?
            .into_inner();
        streams.push(stream);
    }

    // A permit per subscriber per session end received.
    let ends = Arc::new(tokio::sync::Semaphore::new(0));
    // Every stream is registered before its call returns: start the traffic.
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let ends = ends.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(EVENTS);
                while latencies.len() < EVENTS {
                    let Some(message) = stream.message().await? else {
                        break;
                    };
                    let received = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    let event = message.event.unwrap_or_default();
                    let at = event.occurred_at.unwrap_or_default();
                    let occurred = Duration::new(at.seconds as u64, at.nanos as u32);
                    latencies.push(received.saturating_sub(occurred));
                    if event.to_status == pb::SessionStatus::Failed as i32 {
                        ends.add_permits(1);
                    }
                }
                Ok::<_, tonic::Status>(latencies)
            })
        })
        .collect();
    let begun = Instant::now();
    let cpu_before = cpu_time(server)?;
    for _ in 0..SESSIONS {
        // PENDING, then FAILED (LAUNCH_FAILED): the refusal is expected.
        let refused = server
            .client
            .clone()
            .create_session(pb::CreateSessionRequest::default())
            .await;
        anyhow::ensure!(refused.is_err(), "the failing browser launched");
        if pace == Pace::Delivered {
            ends.acquire_many(subscribers as u32).await?.forget();
        }
    }
    let mut series = Series::default();
    for receiver in receivers {
        series.0.extend(receiver.await??);
    }
    let rate = series.0.len() as f64 / begun.elapsed().as_secs_f64();
    let cpu = cpu_time(server)?.saturating_sub(cpu_before);
    anyhow::ensure!(
        series.0.len() == subscribers * EVENTS,
        "a subscriber missed events"
    );
    let per_delivery = cpu / series.0.len() as u32;
    Ok((series, rate, per_delivery))
}
