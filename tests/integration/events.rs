//! WatchSessions: filters, ordering, and resume without gap or duplicate.

use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;

use crate::on_both_backends;
use crate::support::*;

fn labelled(team: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        metadata: [("team".to_owned(), team.to_owned())].into(),
        ..Default::default()
    }
}

async fn watch_filters_and_orders(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut everything = app.watch(pb::WatchSessionsRequest::default()).await;
    let mut released_only = app
        .watch(pb::WatchSessionsRequest {
            statuses: vec![pb::SessionStatus::Released as i32],
            ..Default::default()
        })
        .await;
    let mut team_w = app
        .watch(pb::WatchSessionsRequest {
            metadata: [("team".to_owned(), "w".to_owned())].into(),
            ..Default::default()
        })
        .await;
    let a = app.create(labelled("w")).await;
    let b = app.create(labelled("v")).await;
    app.release(&a.id).await;
    app.release(&b.id).await;

    let all: Vec<_> = futures_collect(&mut everything, 6).await;
    assert!(
        all.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "strictly increasing: {:?}",
        all.iter().map(|e| e.sequence).collect::<Vec<_>>()
    );
    let released = futures_collect(&mut released_only, 2).await;
    assert!(
        released
            .iter()
            .all(|e| e.to_status == pb::SessionStatus::Released as i32)
    );
    assert_eq!(
        released
            .iter()
            .map(|e| e.session_id.clone())
            .collect::<Vec<_>>(),
        vec![a.id.clone(), b.id.clone()]
    );
    let of_w = futures_collect(&mut team_w, 3).await;
    assert!(of_w.iter().all(|e| e.session_id == a.id), "{of_w:?}");

    // session_ids applies to replay as well.
    let mut only_b = app
        .watch(pb::WatchSessionsRequest {
            session_ids: vec![b.id.clone()],
            after_sequence: Some(0),
            ..Default::default()
        })
        .await;
    let replayed = futures_collect(&mut only_b, 3).await;
    assert!(replayed.iter().all(|e| e.session_id == b.id));
    assert_eq!(
        replayed.iter().map(|e| e.to_status).collect::<Vec<_>>(),
        [
            pb::SessionStatus::Pending,
            pb::SessionStatus::Live,
            pb::SessionStatus::Released
        ]
        .map(|s| s as i32)
    );
    app.stop().await;
}

async fn futures_collect(stream: &mut EventStream, n: usize) -> Vec<pb::SessionEvent> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(stream.next().await);
    }
    events
}

async fn resume_has_no_gap_and_no_duplicate(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let a = app.create(pb::CreateSessionRequest::default()).await;
    app.release(&a.id).await;
    let mut first = app
        .watch(pb::WatchSessionsRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await;
    let seen = futures_collect(&mut first, 2).await;
    let resume_from = seen[1].sequence;
    drop(first);

    // Transitions while the subscriber is away, and one racing its resume.
    let b = app.create(pb::CreateSessionRequest::default()).await;
    let mut client = app.client.clone();
    let racing =
        tokio::spawn(
            async move { create_on(&mut client, pb::CreateSessionRequest::default()).await },
        );
    let mut resumed = app
        .watch(pb::WatchSessionsRequest {
            after_sequence: Some(resume_from),
            ..Default::default()
        })
        .await;
    let c = racing.await.expect("racing create");
    app.release(&b.id).await;
    app.release(&c.id).await;

    // a: 3 events, b: 3, c: 3; the subscriber had seen 2.
    let rest = futures_collect(&mut resumed, 7).await;
    let got: Vec<u64> = seen.iter().chain(&rest).map(|e| e.sequence).collect();
    let log: Vec<u64> = app.all_events().await.iter().map(|e| e.sequence).collect();
    assert_eq!(
        got, log,
        "resume delivered the log exactly: no gap, no duplicate"
    );
    app.stop().await;
}

/// Sessions whose "browser" is /usr/bin/false: each launch fails at once,
/// so every create is two events (PENDING, FAILED) and no Chromium.
const FAILING_CREATES: usize = 320;
const CREATORS: usize = 8;
const WATCH_BUFFER: usize = 64;

async fn a_slow_subscriber_is_aborted_and_resumes_without_gap(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| {
        c.chrome_path = Some("/usr/bin/false".into());
        c.watch_buffer = WATCH_BUFFER;
    })
    .await;
    // A client that reads nothing until the burst is over, with HTTP/2
    // windows so small that browserd cannot park the backlog in the
    // client's buffers: it must fall behind and be cut off, while a
    // subscriber that keeps up is not disturbed.
    let narrow = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .expect("endpoint")
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .expect("connect");
    let mut slow = SessionServiceClient::new(narrow)
        .watch_sessions(pb::WatchSessionsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let mut fast = app.watch(pb::WatchSessionsRequest::default()).await;
    let total = (FAILING_CREATES * 2) as u64;
    let keeping_up = tokio::spawn(async move {
        let mut last = 0;
        while last < total {
            let event = fast.next().await;
            assert_eq!(
                event.sequence,
                last + 1,
                "the fast subscriber misses nothing"
            );
            last = event.sequence;
        }
    });
    let creators: Vec<_> = (0..CREATORS)
        .map(|_| {
            let mut client = app.client.clone();
            tokio::spawn(async move {
                for _ in 0..FAILING_CREATES / CREATORS {
                    let failed = client
                        .create_session(pb::CreateSessionRequest::default())
                        .await
                        .expect_err("the launch fails");
                    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
                }
            })
        })
        .collect();
    for creator in creators {
        creator.await.expect("creator");
    }
    keeping_up.await.expect("fast subscriber");

    let mut received = Vec::new();
    let aborted = loop {
        let item = tokio::time::timeout(EVENT_WAIT, slow.message())
            .await
            .expect("the slow stream moves");
        match item {
            Ok(Some(response)) => received.push(response.event.expect("event").sequence),
            Ok(None) => panic!("the slow stream ended without ABORTED"),
            Err(status) => break status,
        }
    };
    assert_eq!(aborted.code(), tonic::Code::Aborted, "{aborted:?}");
    // The resume point comes as a google.rpc.ErrorInfo a program reads,
    // not as text to parse out of the message.
    let details = tonic_types::StatusExt::get_error_details(&aborted);
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("ABORTED without ErrorInfo: {aborted:?}"));
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("SUBSCRIBER_LAGGED", "browserd.dev")
    );
    let resume_from: u64 = info
        .metadata
        .get("resume_after_sequence")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the ErrorInfo names the resume point: {info:?}"));
    assert_eq!(Some(&resume_from), received.last(), "{aborted:?}");
    assert!(resume_from < total, "cut off, not drained: {resume_from}");

    let mut resumed = app
        .watch(pb::WatchSessionsRequest {
            after_sequence: Some(resume_from),
            ..Default::default()
        })
        .await;
    while received.last() != Some(&total) {
        received.push(resumed.next().await.sequence);
    }
    assert_eq!(
        received,
        (1..=total).collect::<Vec<_>>(),
        "delivered, cut off, resumed: every event exactly once"
    );
    app.stop().await;
}

on_both_backends!(
    watch_filters_and_orders,
    resume_has_no_gap_and_no_duplicate,
    a_slow_subscriber_is_aborted_and_resumes_without_gap
);
