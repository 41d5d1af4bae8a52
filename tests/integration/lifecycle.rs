//! The rest of the lifecycle, observed from outside: inactivity,
//! disconnect and keep-alive, browser crashes, and racing enders.

use std::time::Duration;

use browserd::pb;
use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

async fn inactivity_releases_an_idle_session(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let session = app
        .create(pb::CreateSessionRequest {
            timeout: seconds(120),
            inactivity_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            ..Default::default()
        })
        .await;
    let client = cdp_client(&session.connect_url).await;
    // Client traffic keeps it alive past several inactivity periods...
    let mut ticks = tokio::time::interval(Duration::from_millis(300));
    for _ in 0..15 {
        ticks.tick().await;
        round_trip(&client).await;
    }
    assert_eq!(
        status_of(&app.get(&session.id).await),
        pb::SessionStatus::Live
    );
    // ...while browser-originated events do not: subscribe to target
    // events, then go quiet with the connection open.
    client
        .call(
            "Target.setDiscoverTargets",
            json!({"discover": true}),
            EVENT_WAIT,
        )
        .await
        .expect("Target.setDiscoverTargets");
    let ended = events.until(&session.id, pb::SessionStatus::Released).await;
    assert_eq!(ended.end_reason, pb::EndReason::Inactivity as i32);
    assert_eq!(closed_reason(&client).await, "the session has ended");
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    app.stop().await;
}

async fn last_client_leaving_releases_without_keep_alive(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let first = cdp_client(&session.connect_url).await;
    let second = cdp_client(&session.connect_url).await;
    round_trip(&first).await;
    round_trip(&second).await;
    first.close().await;
    // One client left: the session lives on for the other.
    round_trip(&second).await;
    assert_eq!(
        status_of(&app.get(&session.id).await),
        pb::SessionStatus::Live
    );
    second.close().await;
    let ended = events.until(&session.id, pb::SessionStatus::Released).await;
    assert_eq!(ended.end_reason, pb::EndReason::Disconnected as i32);
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    app.stop().await;
}

async fn keep_alive_survives_disconnects_and_takes_reconnects(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let kept = app
        .create(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await;
    let control = app.create(pb::CreateSessionRequest::default()).await;
    let kept_client = cdp_client(&kept.connect_url).await;
    let control_client = cdp_client(&control.connect_url).await;
    round_trip(&kept_client).await;
    round_trip(&control_client).await;
    kept_client.close().await;
    control_client.close().await;
    // The control session, without keep_alive, ends on the same kind of
    // disconnect: once its event is in, the kept session has had the same
    // chance to (wrongly) end.
    let ended = events.until(&control.id, pb::SessionStatus::Released).await;
    assert_eq!(ended.end_reason, pb::EndReason::Disconnected as i32);
    assert_eq!(status_of(&app.get(&kept.id).await), pb::SessionStatus::Live);
    let again = cdp_client(&kept.connect_url).await;
    round_trip(&again).await;
    let also = cdp_client(&kept.connect_url).await;
    round_trip(&also).await;
    app.release(&kept.id).await;
    assert_eq!(closed_reason(&again).await, "the session has ended");
    assert_eq!(closed_reason(&also).await, "the session has ended");
    app.stop().await;
}

async fn a_crashed_browser_fails_its_session(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let client = cdp_client(&session.connect_url).await;
    round_trip(&client).await;
    let pid = browser_main_pid(&app.profiles_dir(), &session.id);
    // SAFETY: killing the browser this test's server launched.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let failed = events.until(&session.id, pb::SessionStatus::Failed).await;
    assert_eq!(failed.end_reason, pb::EndReason::BrowserCrashed as i32);
    let snapshot = failed.session.expect("snapshot");
    assert!(snapshot.error.contains("signal 9"), "{:?}", snapshot.error);
    let reason = closed_reason(&client).await;
    assert!(
        ["the browser closed the connection", "the session has ended"].contains(&reason.as_str()),
        "clients are disconnected: {reason:?}"
    );
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    assert_eq!(entries(&app.profiles_dir()), Vec::<String>::new());
    app.stop().await;
}

/// Release, ReleaseAll, the hard timeout and a browser crash, all aimed at
/// the same moment, over and over: each session ends exactly once.
async fn racing_enders_end_a_session_exactly_once(backend: Backend) {
    const ROUNDS: usize = 12;
    let mut app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for _ in 0..ROUNDS {
        let session = app.create(pb::CreateSessionRequest::default()).await;
        let pid = browser_main_pid(&app.profiles_dir(), &session.id);
        // Aim the hard timeout 500 ms ahead (however long the launch took),
        // then fire every other ender at that same moment.
        let created = session.created_at.expect("created_at");
        let created =
            std::time::UNIX_EPOCH + Duration::new(created.seconds as u64, created.nanos as u32);
        let lifetime = created.elapsed().unwrap_or_default() + Duration::from_millis(500);
        app.client
            .extend_session(pb::ExtendSessionRequest {
                session_id: session.id.clone(),
                timeout: Some(prost_types::Duration {
                    seconds: lifetime.as_secs() as i64,
                    nanos: lifetime.subsec_nanos() as i32,
                }),
            })
            .await
            .expect("extend");
        let wait = (created + lifetime)
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        let (mut c1, mut c2) = (app.client.clone(), app.client.clone());
        let id = session.id.clone();
        let (released, released_all, ()) = tokio::join!(
            c1.release_session(pb::ReleaseSessionRequest {
                session_id: id.clone()
            }),
            c2.release_all_sessions(pb::ReleaseAllSessionsRequest::default()),
            async {
                // SAFETY: killing the browser this test's server launched.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            },
        );
        let released = released
            .expect("release")
            .into_inner()
            .session
            .expect("session");
        released_all.expect("release all");
        assert!(
            matches!(
                status_of(&released),
                pb::SessionStatus::Released | pb::SessionStatus::Failed
            ),
            "{released:?}"
        );
        ids.push(session.id);
    }
    let events = app.all_events().await;
    for id in &ids {
        let terminal: Vec<_> = events
            .iter()
            .filter(|e| &e.session_id == id)
            .filter(|e| {
                e.to_status == pb::SessionStatus::Released as i32
                    || e.to_status == pb::SessionStatus::Failed as i32
            })
            .collect();
        assert_eq!(
            terminal.len(),
            1,
            "exactly one terminal event for {id}: {terminal:?}"
        );
        let stored = app.get(id).await;
        assert_eq!(stored.status, terminal[0].to_status);
        assert_eq!(stored.end_reason, terminal[0].end_reason);
    }
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    app.stop().await;
}

async fn a_session_nobody_connects_to_is_released(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.connect_timeout = Duration::from_secs(1)).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let unclaimed = app.create(pb::CreateSessionRequest::default()).await;
    let claimed = app.create(pb::CreateSessionRequest::default()).await;
    let client = cdp_client(&claimed.connect_url).await;
    round_trip(&client).await;
    let ended = events
        .until(&unclaimed.id, pb::SessionStatus::Released)
        .await;
    assert_eq!(ended.end_reason, pb::EndReason::Inactivity as i32);
    let started = ended
        .session
        .and_then(|s| s.started_at)
        .expect("started_at");
    let ended_at = ended.occurred_at.expect("occurred_at");
    assert!(
        ended_at.seconds * 1000 + i64::from(ended_at.nanos) / 1_000_000
            >= started.seconds * 1000 + i64::from(started.nanos) / 1_000_000 + 1000,
        "released no earlier than the connect timeout"
    );
    // The connected session is not subject to it.
    round_trip(&client).await;
    assert_eq!(
        status_of(&app.get(&claimed.id).await),
        pb::SessionStatus::Live
    );
    app.stop().await;
}

on_both_backends!(
    a_session_nobody_connects_to_is_released,
    inactivity_releases_an_idle_session,
    last_client_leaving_releases_without_keep_alive,
    keep_alive_survives_disconnects_and_takes_reconnects,
    a_crashed_browser_fails_its_session,
    racing_enders_end_a_session_exactly_once,
);
