//! WatchSessions: filters, ordering, and resume without gap or duplicate.

use browserd::pb;

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

on_both_backends!(watch_filters_and_orders, resume_has_no_gap_and_no_duplicate);
