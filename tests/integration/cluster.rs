//! Several nodes, one service: three real browserd processes on one
//! PostgreSQL database, each with its own browsers. What one node is asked
//! about another's session, where new sessions go, one event order for
//! every subscriber, and what happens when a node dies, stalls, or drains.
//! PostgreSQL only: SQLite is one node by design.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use browserd::harness::cluster::{Node, NodeOptions};
use browserd::pb;
use browserd::pb::admin_service_client::AdminServiceClient;
use browserd::pb::session_service_client::SessionServiceClient;
use tonic::transport::Channel;

use crate::support::*;

const LEASE: Duration = Duration::from_secs(2);

struct Cluster {
    database: TestDatabase,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Nodes `node-a`, `node-b`, … one per entry of `options`.
    async fn start(options: &[NodeOptions]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::new(Backend::Postgres, dir.path()).await;
        let mut cluster = Self {
            database,
            dir,
            nodes: Vec::new(),
        };
        for (i, options) in options.iter().enumerate() {
            let node = cluster.node_process(i, options).await;
            cluster.nodes.push(node);
        }
        cluster
    }

    async fn node_process(&self, i: usize, options: &NodeOptions) -> Node {
        let id = format!("node-{}", (b'a' + i as u8) as char);
        Node::start(
            Path::new(env!("CARGO_BIN_EXE_browserd")),
            &self.dir.path().join(&id),
            &id,
            &self.database.url,
            // The first node makes it; every node signs and checks
            // connect tokens with it.
            &self.dir.path().join("secret"),
            options,
        )
        .await
    }

    /// Node `i`'s process stopped, then started again on its data dir.
    async fn restart(&mut self, i: usize, options: &NodeOptions) {
        let node = self.node_process(i, options).await;
        self.nodes[i] = node;
    }

    fn client(&self, i: usize) -> SessionServiceClient<Channel> {
        self.nodes[i].client()
    }

    async fn channel(&self, i: usize) -> Channel {
        Channel::from_shared(format!("http://{}", self.nodes[i].server.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to a node")
    }

    async fn admin(&self, i: usize) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel(i).await)
    }

    async fn nodes(&self, i: usize) -> Vec<pb::Node> {
        self.admin(i)
            .await
            .list_nodes(pb::ListNodesRequest {})
            .await
            .expect("ListNodes")
            .into_inner()
            .nodes
    }

    /// Waits until node `i`'s ListNodes shows what `done` wants.
    async fn nodes_until(&self, i: usize, what: &str, done: impl Fn(&[pb::Node]) -> bool) {
        eventually(what, async || {
            let nodes = self.nodes(i).await;
            if done(&nodes) { Ok(()) } else { Err(nodes) }
        })
        .await
    }

    async fn stop(self) {
        for node in self.nodes {
            node.server.stop().await;
        }
        self.database.remove().await;
    }
}

fn three() -> Vec<NodeOptions> {
    vec![NodeOptions::default(); 3]
}

fn from_start() -> pb::WatchSessionsRequest {
    pb::WatchSessionsRequest {
        after_sequence: Some(0),
        ..Default::default()
    }
}

fn release(id: &str) -> pb::ReleaseSessionRequest {
    pb::ReleaseSessionRequest {
        session_id: id.into(),
    }
}

fn extend(id: &str, seconds: i64) -> pb::ExtendSessionRequest {
    pb::ExtendSessionRequest {
        session_id: id.into(),
        timeout: seconds_of(seconds),
    }
}

fn seconds_of(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// Every event `events` delivers until one of `session_id` reaches
/// `status`, that one included.
async fn events_until(
    events: &mut EventStream,
    session_id: &str,
    status: pb::SessionStatus,
) -> Vec<pb::SessionEvent> {
    let mut seen = Vec::new();
    loop {
        let event = events.next().await;
        let done = event.session_id == session_id && event.to_status == status as i32;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// A session made and released on node `i`, whose RELEASED event the
/// caller then waits for on its streams: every event committed before it
/// has been delivered by then (sequence order), so "nothing more came"
/// can be checked without waiting for nothing.
async fn sentinel(cluster: &Cluster, i: usize) -> String {
    let mut client = cluster.client(i);
    let session = create_on(&mut client, pb::CreateSessionRequest::default()).await;
    client
        .release_session(release(&session.id))
        .await
        .expect("release the sentinel");
    session.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_answers_for_a_session_on_another() {
    let cluster = Cluster::start(&three()).await;
    let (mut a, mut b, mut c) = (cluster.client(0), cluster.client(1), cluster.client(2));
    let mut on_c = watch_on(&mut c, from_start()).await;

    let session = create_on(&mut a, pb::CreateSessionRequest::default()).await;
    assert_eq!(session.node_id, "node-a");

    // Read on B: from the database, with a connect_url that names A's
    // relay and is good there.
    let seen = get_on(&mut b, &session.id).await;
    assert_eq!(seen.node_id, "node-a");
    let relay_a = &cluster.nodes[0].server.cdp_addr;
    assert!(
        seen.connect_url.contains(relay_a.as_str()),
        "{} names node A's relay {relay_a}",
        seen.connect_url
    );
    let cdp = cdp_client(&seen.connect_url).await;
    round_trip(&cdp).await;

    // Live details through B come from A's browser.
    let details = b
        .get_live_details(pb::GetLiveDetailsRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("GetLiveDetails through another node")
        .into_inner();
    assert!(!details.pages.is_empty(), "A's browser has a page");
    assert!(details.connect_url.contains(relay_a.as_str()));

    // Extend through C moves A's deadline.
    let extended = c
        .extend_session(extend(&session.id, 1200))
        .await
        .expect("ExtendSession through another node")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(extended.timeout.map(|t| t.seconds), Some(1200));

    // A client that sends the forwarding marker itself only stops the
    // forwarding: B answers for itself, and A's session runs on.
    let mut forged = tonic::Request::new(release(&session.id));
    forged.metadata_mut().insert(
        browserd::cluster::FORWARDED_HEADER,
        "node-a".parse().expect("ASCII"),
    );
    let refused = refusal(b.release_session(forged).await);
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(
        status_of(&get_on(&mut a, &session.id).await),
        pb::SessionStatus::Live
    );

    // Release through B ends A's browser.
    let released = b
        .release_session(release(&session.id))
        .await
        .expect("ReleaseSession through another node")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(status_of(&released), pb::SessionStatus::Released);
    assert_eq!(reason_of(&released), pb::EndReason::Requested);
    let profiles_a = cluster.nodes[0].profiles();
    eventually("A's browser ends", async || {
        browser_processes(&profiles_a).is_empty()
    })
    .await;

    // C's subscriber saw A's session from creation to release.
    let seen_on_c = events_until(&mut on_c, &session.id, pb::SessionStatus::Released).await;
    let kinds: Vec<(i32, i32)> = seen_on_c
        .iter()
        .filter(|e| e.session_id == session.id)
        .map(|e| (e.kind, e.to_status))
        .collect();
    let changed = pb::EventKind::StatusChanged as i32;
    assert_eq!(
        kinds,
        vec![
            (changed, pb::SessionStatus::Pending as i32),
            (changed, pb::SessionStatus::Live as i32),
            (
                pb::EventKind::Extended as i32,
                pb::SessionStatus::Live as i32
            ),
            (changed, pb::SessionStatus::Released as i32),
        ]
    );

    // Release-all through C releases the sessions of every node.
    let mut ids = BTreeSet::new();
    for (i, client) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        let session = create_on(client, pb::CreateSessionRequest::default()).await;
        assert_eq!(session.node_id, cluster.nodes[i].id);
        ids.insert(session.id);
    }
    let released: BTreeSet<String> = c
        .release_all_sessions(pb::ReleaseAllSessionsRequest::default())
        .await
        .expect("ReleaseAllSessions")
        .into_inner()
        .released_ids
        .into_iter()
        .collect();
    assert_eq!(released, ids);
    for id in &ids {
        let ended = get_on(&mut a, id).await;
        assert_eq!(reason_of(&ended), pb::EndReason::ReleaseAll);
    }

    // Keys hold across nodes: the owner checks the caller's own key. The
    // first key ends the open mode, on every node.
    let key_of = |project: &str, admin: bool| pb::CreateApiKeyRequest {
        project: project.into(),
        admin,
        description: String::new(),
    };
    let alpha_admin = cluster
        .admin(0)
        .await
        .create_api_key(key_of("default", true))
        .await
        .expect("CreateApiKey")
        .into_inner()
        .key;
    let mut admin = keyed_admin(&cluster.channel(2).await, &alpha_admin);
    admin
        .create_project(pb::CreateProjectRequest {
            name: "beta".into(),
            max_sessions: 0,
        })
        .await
        .expect("CreateProject");
    let beta = admin
        .create_api_key(key_of("beta", false))
        .await
        .expect("CreateApiKey")
        .into_inner()
        .key;
    let channel_a = cluster.channel(0).await;
    let session = keyed(&channel_a, &alpha_admin)
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect("create with a key")
        .into_inner()
        .session
        .expect("session");
    let channel_b = cluster.channel(1).await;
    let foreign = keyed(&channel_b, &beta)
        .release_session(release(&session.id))
        .await;
    assert_eq!(refusal(foreign).code(), tonic::Code::NotFound);
    let unkeyed = b.release_session(release(&session.id)).await;
    assert_eq!(refusal(unkeyed).code(), tonic::Code::Unauthenticated);
    let mut owner_on_b = keyed(&channel_b, &alpha_admin);
    let released = owner_on_b
        .release_session(release(&session.id))
        .await
        .expect("the owner's key, through another node")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(status_of(&released), pb::SessionStatus::Released);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_places_sessions_on_nodes_with_room() {
    let one_each = NodeOptions {
        max_sessions: 1,
        ..NodeOptions::default()
    };
    let cluster = Cluster::start(&vec![one_each; 3]).await;
    let mut a = cluster.client(0);
    let mut placed = BTreeSet::new();
    let mut ids = Vec::new();
    // Kept alive: the CDP clients below come and go.
    let kept = || pb::CreateSessionRequest {
        keep_alive: true,
        ..Default::default()
    };
    for _ in 0..3 {
        let session = create_on(&mut a, kept()).await;
        assert_eq!(status_of(&session), pb::SessionStatus::Live);
        // Its connect_url names the relay of the node it landed on.
        let owner = cluster
            .nodes
            .iter()
            .find(|n| n.id == session.node_id)
            .expect("a node of the cluster");
        assert!(session.connect_url.contains(&owner.server.cdp_addr));
        round_trip(&cdp_client(&session.connect_url).await).await;
        placed.insert(session.node_id.clone());
        ids.push(session.id);
    }
    assert_eq!(placed.len(), 3, "one session on each node: {placed:?}");

    let full = a.create_session(kept()).await;
    let status = refusal(full);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("every node"), "{status:?}");

    // A slot freed anywhere is used.
    let on_b = get_on(&mut a, &ids[1]).await;
    a.release_session(release(&on_b.id))
        .await
        .expect("release through another node");
    let next = create_on(&mut a, kept()).await;
    assert_eq!(next.node_id, on_b.node_id);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_on_every_node_sees_one_order() {
    let cluster = Cluster::start(&three()).await;
    let mut watchers = Vec::new();
    for i in 0..3 {
        watchers.push(watch_on(&mut cluster.client(i), from_start()).await);
    }
    let mut sessions = Vec::new();
    for i in 0..3 {
        sessions.push(create_on(&mut cluster.client(i), pb::CreateSessionRequest::default()).await);
    }
    // Every node extends every session, all at once: transitions
    // committed concurrently on three nodes, on sessions of all three.
    const ROUNDS: i64 = 30;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let mut client = cluster.client(i);
        let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                for id in &ids {
                    client
                        .extend_session(extend(id, 600 + round))
                        .await
                        .expect("ExtendSession");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("extend task");
    }
    cluster
        .client(1)
        .release_all_sessions(pb::ReleaseAllSessionsRequest::default())
        .await
        .expect("ReleaseAllSessions");
    let total = 3 * 2 + 3 * 3 * ROUNDS as usize + 3;

    let mut seen = Vec::new();
    for watcher in &mut watchers {
        let mut events = Vec::new();
        while events.len() < total {
            events.push(watcher.next().await);
        }
        seen.push(events);
    }
    let reference: Vec<(u64, String, i32)> = seen[0]
        .iter()
        .map(|e| (e.sequence, e.session_id.clone(), e.kind))
        .collect();
    let sequences: Vec<u64> = reference.iter().map(|e| e.0).collect();
    assert_eq!(
        sequences,
        (1..=total as u64).collect::<Vec<_>>(),
        "one strictly increasing sequence, no gap"
    );
    for other in &seen[1..] {
        let theirs: Vec<(u64, String, i32)> = other
            .iter()
            .map(|e| (e.sequence, e.session_id.clone(), e.kind))
            .collect();
        assert_eq!(
            theirs, reference,
            "every node's subscriber, the same events"
        );
    }

    // Resume across nodes: a third of the way on C, then from its last
    // event on A, with no gap and no duplicate at either seam.
    let third = total as u64 / 3;
    let mut resumed = Vec::new();
    let mut on_c = watch_on(
        &mut cluster.client(2),
        pb::WatchSessionsRequest {
            after_sequence: Some(third),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..third {
        resumed.push(on_c.next().await);
    }
    drop(on_c);
    let last = resumed.last().expect("events").sequence;
    let mut on_a = watch_on(
        &mut cluster.client(0),
        pb::WatchSessionsRequest {
            after_sequence: Some(last),
            ..Default::default()
        },
    )
    .await;
    while resumed.len() < total - third as usize {
        resumed.push(on_a.next().await);
    }
    let resumed: Vec<(u64, String, i32)> = resumed
        .iter()
        .map(|e| (e.sequence, e.session_id.clone(), e.kind))
        .collect();
    assert_eq!(resumed, reference[third as usize..]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_sessions_end_node_lost_exactly_once() {
    let mut cluster = Cluster::start(&three()).await;
    let mut c = cluster.client(2);
    let mut lost = BTreeSet::new();
    for _ in 0..2 {
        lost.insert(
            create_on(&mut c, pb::CreateSessionRequest::default())
                .await
                .id,
        );
    }
    let mut on_a = watch_on(&mut cluster.client(0), pb::WatchSessionsRequest::default()).await;
    let mut on_b = watch_on(&mut cluster.client(1), pb::WatchSessionsRequest::default()).await;

    let killed = Instant::now();
    cluster.nodes[2].server.signal(libc::SIGKILL);
    cluster.nodes[2].server.exit_status().await;
    let mut ended = BTreeSet::new();
    while ended.len() < lost.len() {
        let event = on_a.next().await;
        assert!(lost.contains(&event.session_id), "only C's sessions end");
        assert_eq!(event.end_reason, pb::EndReason::NodeLost as i32);
        let session = event.session.expect("snapshot");
        assert!(session.error.contains("node-c"), "{}", session.error);
        assert!(ended.insert(event.session_id), "one end per session");
    }
    let detected = killed.elapsed();
    // The documented bound: the lease, a quarter of it until a survivor's
    // next heartbeat, and the survivor's reads and writes.
    let bound = LEASE + LEASE / 4 + Duration::from_secs(5);
    assert!(
        detected < bound,
        "NODE_LOST after {detected:?}, bound {bound:?}"
    );

    // Two survivors raced; each session still ended once: in B's live
    // stream, in A's (which had them already), and in the stored log.
    let marker = sentinel(&cluster, 1).await;
    let more_on_a = events_until(&mut on_a, &marker, pb::SessionStatus::Released).await;
    assert!(more_on_a.iter().all(|e| !lost.contains(&e.session_id)));
    let on_b_events = events_until(&mut on_b, &marker, pb::SessionStatus::Released).await;
    let mut replay = watch_on(&mut cluster.client(0), from_start()).await;
    let stored = events_until(&mut replay, &marker, pb::SessionStatus::Released).await;
    for events in [&on_b_events, &stored] {
        for id in &lost {
            let failed = events
                .iter()
                .filter(|e| &e.session_id == id && e.to_status == pb::SessionStatus::Failed as i32)
                .count();
            assert_eq!(failed, 1, "session {id} ends once");
        }
    }
    let profiles_c = cluster.nodes[2].profiles();
    eventually("C's browsers die with it", async || {
        browser_processes(&profiles_c).is_empty()
    })
    .await;
    let nodes = cluster.nodes(0).await;
    let c_row = nodes
        .iter()
        .find(|n| n.id == "node-c")
        .expect("node-c listed");
    assert!(c_row.lost, "{c_row:?}");

    // C starts again: a new incarnation, its sessions still ended once.
    cluster.restart(2, &NodeOptions::default()).await;
    let nodes = cluster.nodes(2).await;
    let c_again = nodes
        .iter()
        .find(|n| n.id == "node-c")
        .expect("node-c listed");
    assert!(!c_again.lost && c_again.epoch > c_row.epoch, "{c_again:?}");
    for id in &lost {
        let session = get_on(&mut cluster.client(2), id).await;
        assert_eq!(reason_of(&session), pb::EndReason::NodeLost);
    }
    let marker = sentinel(&cluster, 2).await;
    let events = events_until(&mut on_a, &marker, pb::SessionStatus::Released).await;
    assert!(
        events.iter().all(|e| !lost.contains(&e.session_id)),
        "the restart ended nothing again"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_a_stall_is_fenced_and_kills_its_browsers() {
    let cluster = Cluster::start(&three()).await;
    let session = create_on(&mut cluster.client(2), pb::CreateSessionRequest::default()).await;
    let profiles_c = cluster.nodes[2].profiles();
    assert!(!browser_processes(&profiles_c).is_empty());
    let epoch_before = cluster
        .nodes(0)
        .await
        .into_iter()
        .find(|n| n.id == "node-c")
        .expect("node-c")
        .epoch;
    let mut on_a = watch_on(&mut cluster.client(0), pb::WatchSessionsRequest::default()).await;

    // A stall longer than the lease (a VM paused, a GC pause, a partition).
    cluster.nodes[2].server.signal(libc::SIGSTOP);
    let ended = on_a.until(&session.id, pb::SessionStatus::Failed).await;
    assert_eq!(ended.end_reason, pb::EndReason::NodeLost as i32);
    assert!(
        !browser_processes(&profiles_c).is_empty(),
        "the stalled node's browser still runs"
    );

    cluster.nodes[2].server.signal(libc::SIGCONT);
    eventually("the fenced node kills its browser", async || {
        browser_processes(&profiles_c).is_empty()
    })
    .await;
    // It rejoined as a new incarnation, and takes sessions again.
    cluster
        .nodes_until(0, "node-c rejoins", |nodes| {
            nodes
                .iter()
                .any(|n| n.id == "node-c" && !n.lost && n.epoch > epoch_before + 1)
        })
        .await;
    let fresh = create_on(&mut cluster.client(2), pb::CreateSessionRequest::default()).await;
    assert_eq!(fresh.node_id, "node-c");
    assert_eq!(status_of(&fresh), pb::SessionStatus::Live);

    // The old session was neither revived nor ended a second time.
    let marker = sentinel(&cluster, 0).await;
    let events = events_until(&mut on_a, &marker, pb::SessionStatus::Released).await;
    assert!(
        events.iter().all(|e| e.session_id != session.id),
        "no event for the fenced session after its end: {events:?}"
    );
    let stored = get_on(&mut cluster.client(2), &session.id).await;
    assert_eq!(reason_of(&stored), pb::EndReason::NodeLost);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_takes_no_session_and_lets_its_own_finish() {
    let draining = NodeOptions {
        drain_timeout: Duration::from_secs(60),
        ..NodeOptions::default()
    };
    let mut cluster =
        Cluster::start(&[draining, NodeOptions::default(), NodeOptions::default()]).await;
    let mut a = cluster.client(0);
    let session = create_on(&mut a, pb::CreateSessionRequest::default()).await;
    assert_eq!(session.node_id, "node-a");

    cluster.nodes[0].server.signal(libc::SIGTERM);
    cluster
        .nodes_until(1, "node-a drains", |nodes| {
            nodes.iter().any(|n| n.id == "node-a" && n.draining)
        })
        .await;
    // Still serving, but placing elsewhere.
    let elsewhere = create_on(&mut a, pb::CreateSessionRequest::default()).await;
    assert_ne!(elsewhere.node_id, "node-a");
    let still = get_on(&mut a, &session.id).await;
    assert_eq!(status_of(&still), pb::SessionStatus::Live);

    // Its last session ends on its own terms, then it exits.
    let released = cluster
        .client(1)
        .release_session(release(&session.id))
        .await
        .expect("release the draining node's session")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(reason_of(&released), pb::EndReason::Requested);
    let exited = cluster.nodes[0].server.exit_status().await;
    assert!(exited.success(), "{exited:?}");
    cluster
        .nodes_until(1, "node-a left the cluster", |nodes| {
            nodes.iter().all(|n| n.id != "node-a")
        })
        .await;

    // An admin drains node B: new sessions go to C.
    let mut admin = cluster.admin(1).await;
    admin
        .drain_node(pb::DrainNodeRequest {
            node_id: "node-b".into(),
            draining: true,
        })
        .await
        .expect("DrainNode");
    let placed = create_on(&mut cluster.client(1), pb::CreateSessionRequest::default()).await;
    assert_eq!(placed.node_id, "node-c");
    let unknown = admin
        .drain_node(pb::DrainNodeRequest {
            node_id: "node-z".into(),
            draining: true,
        })
        .await;
    assert_eq!(refusal(unknown).code(), tonic::Code::NotFound);
    admin
        .drain_node(pb::DrainNodeRequest {
            node_id: "node-b".into(),
            draining: false,
        })
        .await
        .expect("DrainNode off");
    let placed = create_on(&mut cluster.client(1), pb::CreateSessionRequest::default()).await;
    assert_eq!(placed.node_id, "node-b");

    // Node A's process has exited: start it again so that stop() finds
    // every node running.
    cluster.restart(0, &NodeOptions::default()).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_browser_on_another_node_is_used_first() {
    let warm = NodeOptions {
        warm_pool: 1,
        ..NodeOptions::default()
    };
    let cluster = Cluster::start(&[NodeOptions::default(), warm]).await;
    cluster
        .nodes_until(0, "node-b's warm browser is known", |nodes| {
            nodes
                .iter()
                .any(|n| n.id == "node-b" && n.warm_browsers == 1)
        })
        .await;
    let mut a = cluster.client(0);
    let session = create_on(&mut a, pb::CreateSessionRequest::default()).await;
    assert_eq!(session.node_id, "node-b", "placed where a browser was warm");
    // A session that cannot use a warm browser stays where it was asked.
    let custom = create_on(
        &mut a,
        pb::CreateSessionRequest {
            user_agent: "custom".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(custom.node_id, "node-a");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_s_console_acts_on_sessions_of_every_node() {
    use crate::console::{api, next_of, open_view};
    let cluster = Cluster::start(&[NodeOptions::default(), NodeOptions::default()]).await;
    let kept = pb::CreateSessionRequest {
        keep_alive: true,
        ..Default::default()
    };
    let session = create_on(&mut cluster.client(0), kept).await;
    assert_eq!(session.node_id, "node-a");
    let (relay_a, console_b) = (
        &cluster.nodes[0].server.cdp_addr,
        &cluster.nodes[1].server.cdp_addr,
    );
    let path = format!("/console/api/sessions/{}", session.id);

    // B's console shows A's session with its pages (read on A).
    let (status, shown) = api(console_b, "GET", &path, None, None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["session"]["nodeId"], "node-a");
    assert!(
        !shown["pages"].as_array().expect("pages").is_empty(),
        "{shown}"
    );

    // A link made on B opens on A's relay, where the browser is.
    let (status, made) = api(
        console_b,
        "POST",
        &format!("{path}/live"),
        None,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let url = made["url"].as_str().expect("url");
    assert!(url.contains(relay_a.as_str()), "{url} names A's relay");
    let mut viewer = open_view(url).await.expect("open the live view on A");
    next_of(&mut viewer, "frame").await;
    drop(viewer);

    // Extend and release through B's console act on A.
    let (status, extended) = api(
        console_b,
        "POST",
        &format!("{path}/extend"),
        None,
        Some(serde_json::json!({"timeout_seconds": 1800})),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    assert_eq!(extended["session"]["timeout"], "1800s");
    let (status, released) = api(console_b, "POST", &format!("{path}/release"), None, None).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["session"]["status"], "SESSION_STATUS_RELEASED");
    let profiles_a = cluster.nodes[0].profiles();
    eventually("A's browser ends", async || {
        browser_processes(&profiles_a).is_empty()
    })
    .await;
    cluster.stop().await;
}
