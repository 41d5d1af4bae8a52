//! The engine under faults and over time: an ExtendSession racing the
//! timeout, bounded history, and a database that goes away while sessions
//! are live.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use browserd::harness::postgres::Cluster;
use browserd::pb;
use tonic::Code;

use crate::on_both_backends;
use crate::support::*;

fn time(ts: &Option<prost_types::Timestamp>) -> SystemTime {
    let ts = ts.as_ref().expect("timestamp set");
    UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32)
}

fn duration(d: Duration) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

/// Aims the timeout at a moment just ahead, then extends it at that very
/// moment, over and over. An extension that returns OK must win: the
/// session then never ends with TIMEOUT.
async fn an_extension_that_succeeds_is_never_followed_by_a_timeout(backend: Backend) {
    const ROUNDS: usize = 12;
    let mut app = spawn_app_with(backend, |c| c.warm_pool = 2).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let (mut won, mut lost) = (0, 0);
    for round in 0..ROUNDS {
        let session = app.create(pb::CreateSessionRequest::default()).await;
        let created = time(&session.created_at);
        // The deadline 300 ms ahead; the extension fired up to 4 ms either
        // side of it, where the timeout's decision and its lock meet.
        let lifetime = created.elapsed().unwrap_or_default() + Duration::from_millis(300);
        app.client
            .extend_session(pb::ExtendSessionRequest {
                session_id: session.id.clone(),
                timeout: duration(lifetime),
            })
            .await
            .expect("aim the deadline");
        let aim = created + lifetime - Duration::from_millis(4)
            + Duration::from_micros(700 * round as u64);
        tokio::time::sleep(aim.duration_since(SystemTime::now()).unwrap_or_default()).await;
        let extended = app
            .client
            .extend_session(pb::ExtendSessionRequest {
                session_id: session.id.clone(),
                timeout: seconds(600),
            })
            .await;
        match extended {
            Ok(response) => {
                won += 1;
                let extended = response.into_inner().session.expect("session");
                assert_eq!(status_of(&extended), pb::SessionStatus::Live);
                let event = loop {
                    let event = events.until(&session.id, pb::SessionStatus::Live).await;
                    let timeout = event.session.as_ref().and_then(|s| s.timeout);
                    if event.kind == pb::EventKind::Extended as i32 && timeout == seconds(600) {
                        break event;
                    }
                };
                assert_eq!(event.kind, pb::EventKind::Extended as i32, "{event:?}");
                assert_eq!(event.from_status, pb::SessionStatus::Live as i32);
                assert_eq!(
                    event.session.expect("snapshot").expires_at,
                    extended.expires_at,
                    "the event carries the new expires_at"
                );
                let released = app.release(&session.id).await;
                assert_eq!(
                    reason_of(&released),
                    pb::EndReason::Requested,
                    "round {round}: ExtendSession returned OK, then the old deadline ended the session"
                );
            }
            Err(refused) => {
                lost += 1;
                assert!(
                    matches!(
                        refused.code(),
                        Code::FailedPrecondition | Code::InvalidArgument
                    ),
                    "{refused:?}"
                );
                let ended = events.until(&session.id, pb::SessionStatus::Released).await;
                assert_eq!(ended.end_reason, pb::EndReason::Timeout as i32);
            }
        }
    }
    println!("extensions that won: {won}, came too late: {lost}");
    app.stop().await;
}

/// With a short retention, ended sessions and their events go: their ids
/// are NOT_FOUND, their idempotency keys are free again, and resuming from
/// before the oldest event left is OUT_OF_RANGE naming it.
async fn retention_prunes_ended_sessions_and_old_events(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.retention = Duration::from_secs(1)).await;
    let keyed = pb::CreateSessionRequest {
        idempotency_key: "nightly-run".into(),
        ..Default::default()
    };
    let first = app.create(keyed.clone()).await;
    let live = app.create(pb::CreateSessionRequest::default()).await;
    app.release(&first.id).await;
    let mut client = app.client.clone();
    let id = first.id.clone();
    // Polled: pruning is a background task with nothing to subscribe to.
    eventually("the released session is pruned", async || {
        let got = client
            .get_session(pb::GetSessionRequest {
                session_id: id.clone(),
            })
            .await;
        got.is_err_and(|status| status.code() == Code::NotFound)
    })
    .await;
    let again = app.create(keyed).await;
    assert_ne!(again.id, first.id, "the key went with its pruned session");
    assert_eq!(
        status_of(&app.get(&live.id).await),
        pb::SessionStatus::Live,
        "a live session is never pruned"
    );
    let refused = app
        .client
        .watch_sessions(pb::WatchSessionsRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .expect_err("resuming from before the log");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    let details = tonic_types::StatusExt::get_error_details(&refused);
    let info = details.error_info().expect("ErrorInfo");
    let oldest: u64 = info.metadata["oldest_sequence"]
        .parse()
        .expect("a sequence");
    assert!(oldest > 1, "events were pruned: {info:?}");
    let newest = app.newest_sequence().await;
    assert!(oldest <= newest, "the newest event is kept");
    // Pruning goes on meanwhile, but never past the newest event: a resume
    // from just before it still replays.
    let replayed = app
        .watch(pb::WatchSessionsRequest {
            after_sequence: Some(newest - 1),
            ..Default::default()
        })
        .await
        .next()
        .await;
    assert_eq!(replayed.sequence, newest);
    app.stop().await;
}

on_both_backends!(
    an_extension_that_succeeds_is_never_followed_by_a_timeout,
    retention_prunes_ended_sessions_and_old_events,
);

/// PostgreSQL goes away while sessions are live, and comes back. Meanwhile
/// RPCs that need it fail fast with UNAVAILABLE, live sessions keep
/// working through the relay, and a release, a crash and a timeout happen;
/// once it is back they are stored in order, once each, with their
/// original times, and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_loses_nothing() {
    let cluster_dir = tempfile::tempdir().expect("cluster dir");
    let cluster = Cluster::create(cluster_dir.path());
    cluster.start();
    let _stopped = StopOnDrop(&cluster);
    let database = TestDatabase::fresh_postgres(&cluster.url).await;
    let mut app = spawn_app_on(database, tempfile::tempdir().expect("data dir"), |_| {}).await;
    let profiles = app.profiles_dir();
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let released = app.create(pb::CreateSessionRequest::default()).await;
    let crashed = app.create(pb::CreateSessionRequest::default()).await;
    let timed_out = app.create(pb::CreateSessionRequest::default()).await;
    let kept = app
        .create(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await;
    let client = cdp_client(&kept.connect_url).await;
    round_trip(&client).await;
    // The timeout falls due a few seconds into the outage.
    let lifetime =
        time(&timed_out.created_at).elapsed().unwrap_or_default() + Duration::from_secs(4);
    app.client
        .extend_session(pb::ExtendSessionRequest {
            session_id: timed_out.id.clone(),
            timeout: duration(lifetime),
        })
        .await
        .expect("extend");

    cluster.stop();
    let down = SystemTime::now();
    let (code, message) = code_and_message(
        app.client
            .get_session(pb::GetSessionRequest {
                session_id: kept.id.clone(),
            })
            .await,
    );
    assert_eq!(code, Code::Unavailable, "{message}");
    let (code, message) = code_and_message(
        app.client
            .release_session(pb::ReleaseSessionRequest {
                session_id: released.id.clone(),
            })
            .await,
    );
    assert_eq!(code, Code::Unavailable, "{message}");
    assert!(message.contains("ended"), "{message}");
    let pid = browser_main_pid(&profiles, &crashed.id);
    // SAFETY: killing a browser this test's server launched.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for ended in [&released, &crashed, &timed_out] {
        let profile = profiles.join(&ended.id);
        // The profile goes last, a moment before the end is recorded: its
        // time is then surely inside the outage.
        eventually("the session's browser is gone", async || {
            browser_processes(&profile).is_empty() && !profile.exists()
        })
        .await;
    }
    let (code, _) = code_and_message(
        app.client
            .create_session(pb::CreateSessionRequest::default())
            .await,
    );
    assert_eq!(code, Code::Unavailable);
    round_trip(&client).await;
    let second = cdp_client(&kept.connect_url).await;
    round_trip(&second).await;
    cluster.start();
    let up = SystemTime::now();

    let mut ends = Vec::new();
    while ends.len() < 3 {
        let event = events.next().await;
        if event.session_id != kept.id
            && [pb::SessionStatus::Released, pb::SessionStatus::Failed]
                .map(|s| s as i32)
                .contains(&event.to_status)
        {
            ends.push(event);
        }
    }
    let reasons: Vec<(String, i32)> = ends
        .iter()
        .map(|e| (e.session_id.clone(), e.end_reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (released.id.clone(), pb::EndReason::Requested as i32),
            (crashed.id.clone(), pb::EndReason::BrowserCrashed as i32),
            (timed_out.id.clone(), pb::EndReason::Timeout as i32),
        ],
        "stored in the order they happened"
    );
    for end in &ends {
        let at = time(&end.occurred_at);
        assert!(
            down - Duration::from_millis(1) <= at && at <= up,
            "{end:?} keeps the time it happened, during the outage"
        );
    }
    assert_eq!(
        status_of(&app.get(&released.id).await),
        pb::SessionStatus::Released
    );
    assert_eq!(status_of(&app.get(&kept.id).await), pb::SessionStatus::Live);
    round_trip(&client).await;
    for id in [&released.id, &crashed.id, &timed_out.id] {
        let terminal = app
            .events_of(id)
            .await
            .into_iter()
            .filter(|e| e.to_status != pb::SessionStatus::Live as i32)
            .filter(|e| e.to_status != pb::SessionStatus::Pending as i32)
            .count();
        assert_eq!(terminal, 1, "exactly one end for {id}");
    }
    app.release(&kept.id).await;
    app.stop().await;
}

struct StopOnDrop<'a>(&'a Cluster);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop_if_running();
    }
}
