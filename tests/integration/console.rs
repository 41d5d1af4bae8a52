//! The web console's HTTP API and the live view, attacked: every route
//! scoped to the caller's key exactly as gRPC is (another project's
//! session is 404, no key is 401 on a keyed server and fine on an open
//! one), bounded bodies; live view links scoped to their session, page and
//! mode (a view-only link forwards no input, a page's link shows no other
//! page), refused once expired, revoked (which also closes a watching
//! viewer) or forged, and dead with their session; viewers recorded as
//! events.

use std::time::Duration;

use browserd::pb;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tonic::Code;

use crate::access::{project_key, spawn_keyed};
use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    console_api_sees_what_the_key_sees,
    console_on_an_open_server_needs_no_key,
    live_view_links_are_scoped_bounded_and_revocable,
    the_links_migration_goes_down_and_up_again,
    a_session_takes_a_bounded_number_of_viewers,
    another_site_cannot_reach_the_console,
);

/// The relay's (and so the console's) `host:port`, from a connect_url.
pub(crate) fn relay_addr(connect_url: &str) -> String {
    let rest = connect_url
        .strip_prefix("ws://")
        .expect("a ws:// connect_url");
    rest.split('/').next().expect("host:port").to_owned()
}

/// One HTTP/1.1 request; the status, head and body of its answer.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the console");
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n");
    if let Some(key) = key {
        head.push_str(&format!("authorization: Bearer {key}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await.expect("send head");
    socket.write_all(body.as_bytes()).await.expect("send body");
    let mut answer = Vec::new();
    tokio::time::timeout(EVENT_WAIT, socket.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, head.to_owned(), body.to_owned())
}

pub async fn api(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, _, body) = request(addr, method, path, key, body.as_deref()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn console_api_sees_what_the_key_sees(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let mut admin = keyed_admin(&app.channel(), &admin_key);
    let (_, key_a) = project_key(&mut admin, "team-a", 0).await;
    let (_, key_b) = project_key(&mut admin, "team-b", 0).await;
    let mut team_a = keyed(&app.channel(), &key_a);
    let session = team_a
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect("CreateSession")
        .into_inner()
        .session
        .expect("session");
    let addr = relay_addr(&session.connect_url);
    let id = session.id.as_str();

    // The page itself is public and locked down; the API is not.
    let (status, head, body) = request(&addr, "GET", "/console", None, None).await;
    assert_eq!(status, 200);
    assert!(body.contains("console.js"), "{body}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: DENY"), "{head}");
    for key in [None, Some("browserd_0000000000000000_forged")] {
        let (status, body) = api(&addr, "GET", "/console/api/sessions", key, None).await;
        assert_eq!(status, 401, "{key:?}: {body}");
    }

    // The key's project sees its session; another project's key sees none
    // of it, and acting on it is the same 404 as an unknown id.
    let (status, body) = api(&addr, "GET", "/console/api/sessions", Some(&key_a), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions"][0]["id"], id);
    assert_eq!(
        body["sessions"][0]["connectUrl"], "",
        "no connect URL in a browser"
    );
    let (_, body) = api(&addr, "GET", "/console/api/sessions", Some(&key_b), None).await;
    assert_eq!(body["sessions"], json!([]));
    let (status, body) = api(
        &addr,
        "GET",
        "/console/api/sessions?status=LIVE",
        Some(&admin_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["sessions"][0]["id"], id,
        "an admin key sees every project"
    );
    for (method, path, body) in [
        ("GET", format!("/console/api/sessions/{id}"), None),
        (
            "POST",
            format!("/console/api/sessions/{id}/release"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/console/api/sessions/{id}/extend"),
            Some(json!({"timeout_seconds": 600})),
        ),
        (
            "POST",
            format!("/console/api/sessions/{id}/live"),
            Some(json!({"control": true})),
        ),
    ] {
        let (status, answer) = api(&addr, method, &path, Some(&key_b), body).await;
        assert_eq!(status, 404, "{path}: {answer}");
    }

    // Bad input is named; bodies are bounded.
    let (status, body) = api(
        &addr,
        "GET",
        "/console/api/sessions/nope",
        Some(&key_a),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("session_id"),
        "{body}"
    );
    let (status, body) = api(
        &addr,
        "GET",
        "/console/api/sessions?status=ALIVE",
        Some(&key_a),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("status"),
        "{body}"
    );
    let path = format!("/console/api/sessions/{id}/extend");
    let (status, body) = api(
        &addr,
        "POST",
        &path,
        Some(&key_a),
        Some(json!({"timeout": 1})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("body"),
        "{body}"
    );
    let huge = json!({"timeout_seconds": 600, "pad": "x".repeat(8 * 1024)});
    let (status, _) = api(&addr, "POST", &path, Some(&key_a), Some(huge)).await;
    assert_eq!(status, 413);
    let (status, _) = api(&addr, "DELETE", &path, Some(&key_a), None).await;
    assert_eq!(status, 405);

    // Extend and release through the console are the engine's, recorded
    // as the key's.
    let (status, body) = api(
        &addr,
        "POST",
        &path,
        Some(&key_a),
        Some(json!({"timeout_seconds": 600})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["timeout"], "600s");
    let release = format!("/console/api/sessions/{id}/release");
    let (status, body) = api(&addr, "POST", &release, Some(&key_a), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["status"], "SESSION_STATUS_RELEASED");
    assert_eq!(body["session"]["endReason"], "END_REASON_REQUESTED");

    // The event stream: replayed from 0, as Server-Sent Events, scoped.
    let (_, _, events, _) = stream_events(
        &addr,
        &format!("/console/api/events?after=0&session={id}"),
        &key_a,
        4,
    )
    .await;
    assert!(events.contains("EVENT_KIND_EXTENDED"), "{events}");
    assert!(
        events.contains("\"toStatus\":\"SESSION_STATUS_RELEASED\""),
        "{events}"
    );
    // Another project's key is not refused: its stream opens, stays open,
    // and carries nothing of the session.
    let (status, head, foreign, open) = stream_events(
        &addr,
        &format!("/console/api/events?after=0&session={id}"),
        &key_b,
        1,
    )
    .await;
    assert_eq!(status, 200, "{head}\n{foreign}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    assert!(open, "the stream ended: {foreign}");
    assert!(!foreign.contains("data: "), "{foreign}");
    assert!(!foreign.contains(id), "{foreign}");
    app.stop().await;
}

/// An event stream's status, head and what arrived of `events` events
/// (or within a second, whichever is first), and whether the stream was
/// still open then.
async fn stream_events(
    addr: &str,
    path: &str,
    key: &str,
    events: usize,
) -> (u16, String, String, bool) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head =
        format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\r\n");
    socket.write_all(head.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let read = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&got).matches("\ndata: ").count() >= events {
                return true;
            }
        }
    })
    .await;
    // Timed out: the window ended with the stream open.
    let open = read.unwrap_or(true);
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned(), open)
}

async fn console_on_an_open_server_needs_no_key(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let addr = relay_addr(&session.connect_url);
    let (status, body) = api(&addr, "GET", "/console/api/whoami", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["actor"], "anonymous");
    let (status, body) = api(&addr, "GET", "/console/api/sessions", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions"][0]["id"], session.id);
    app.release(&session.id).await;
    app.stop().await;
}

/// A viewer's WebSocket for a live view URL (its key is the fragment).
pub async fn open_view(url: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let (base, key) = url.split_once('#').expect("a key in the fragment");
    let host = base
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an http:// live view URL");
    let socket = format!("ws://{host}/console/api/live?key={key}");
    tokio_tungstenite::connect_async(socket)
        .await
        .map(|(socket, _)| socket)
}

/// The next message of `kind` a viewer gets (frames skipped otherwise).
pub async fn next_of(viewer: &mut Socket, kind: &str) -> Value {
    tokio::time::timeout(EVENT_WAIT, async {
        loop {
            match viewer.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON");
                    if message["type"] == kind {
                        return message;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the viewer's socket ended before a {kind}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} in time"))
}

async fn link(
    client: &mut KeyedClient,
    session_id: &str,
    target_id: &str,
    control: bool,
    ttl: Option<Duration>,
) -> Result<pb::CreateLiveViewLinkResponse, tonic::Status> {
    client
        .create_live_view_link(pb::CreateLiveViewLinkRequest {
            session_id: session_id.into(),
            target_id: target_id.into(),
            control,
            ttl: ttl.map(|t| prost_types::Duration {
                seconds: t.as_secs() as i64,
                nanos: t.subsec_nanos() as i32,
            }),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn live_view_links_are_scoped_bounded_and_revocable(backend: Backend) {
    let (app, admin_key) = spawn_keyed(backend).await;
    let mut admin = keyed_admin(&app.channel(), &admin_key);
    let (_, key_a) = project_key(&mut admin, "team-a", 0).await;
    let (_, key_b) = project_key(&mut admin, "team-b", 0).await;
    let mut team_a = keyed(&app.channel(), &key_a);
    let mut team_b = keyed(&app.channel(), &key_b);
    let session = team_a
        .create_session(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await
        .expect("CreateSession")
        .into_inner()
        .session
        .expect("session");
    let id = session.id.clone();
    let cdp = cdp_client(&session.connect_url).await;
    let page_b = cdp
        .create_target("about:blank", None, EVENT_WAIT)
        .await
        .expect("a second page");

    // GetLiveDetails gives each page a link of its own.
    let details = team_a
        .get_live_details(pb::GetLiveDetailsRequest {
            session_id: id.clone(),
        })
        .await
        .expect("GetLiveDetails")
        .into_inner();
    assert_eq!(details.pages.len(), 2);
    assert!(
        details
            .pages
            .iter()
            .all(|p| p.live_view_url.contains("/console/live#"))
    );
    let page_a = details
        .pages
        .iter()
        .find(|p| p.target_id != page_b)
        .expect("the first page")
        .target_id
        .clone();

    // Bad input is named; another project's session is NOT_FOUND.
    let refused = link(&mut team_a, &id, "no/such", true, None)
        .await
        .unwrap_err();
    assert_invalid_argument(&refused, "target_id");
    let refused = link(&mut team_a, &id, "ABC", true, None).await.unwrap_err();
    assert_invalid_argument(&refused, "target_id");
    let refused = link(&mut team_b, &id, "", true, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    // A control link to page A: frames of page A, input forwarded, and no
    // way to page B.
    let control = link(&mut team_a, &id, &page_a, true, None)
        .await
        .expect("link");
    assert!(!control.url.contains(&key_a), "a link carries no API key");
    let mut viewer = open_view(&control.url).await.expect("the link opens");
    let hello = next_of(&mut viewer, "hello").await;
    assert_eq!(hello["control"], true);
    assert_eq!(hello["all_pages"], false);
    // The pages it may show come first, with the one shown.
    let tabs = next_of(&mut viewer, "tabs").await;
    assert_eq!(tabs["tabs"].as_array().map(Vec::len), Some(1), "{tabs}");
    assert_eq!(tabs["shown"], page_a.as_str());
    let frame = next_of(&mut viewer, "frame").await;
    assert_eq!(frame["target"], page_a.as_str());
    assert!(!frame["data"].as_str().unwrap_or_default().is_empty());
    send(&mut viewer, json!({"type": "tab", "target": page_b})).await;
    let refusal = next_of(&mut viewer, "refused").await;
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("does not show"),
        "{refusal}"
    );
    // Typed text reaches the page.
    let page_session = cdp.attach(&page_a, EVENT_WAIT).await.expect("attach");
    cdp.call_in(
        &page_session,
        "Runtime.evaluate",
        json!({"expression": "document.body.contentEditable = 'true'; document.body.focus()"}),
        EVENT_WAIT,
    )
    .await
    .expect("make the page editable");
    send(
        &mut viewer,
        json!({"type": "text", "text": "typed by a viewer"}),
    )
    .await;
    wait_for_text(&cdp, &page_session, "typed by a viewer").await;

    // A view-only link to every page: shows, forwards nothing.
    let view_only = link(&mut team_a, &id, "", false, None).await.expect("link");
    let mut watcher = open_view(&view_only.url).await.expect("the link opens");
    assert_eq!(next_of(&mut watcher, "hello").await["control"], false);
    next_of(&mut watcher, "frame").await;
    // It may switch to page B, whose frames it then gets.
    send(&mut watcher, json!({"type": "tab", "target": page_b})).await;
    let tabs = next_of(&mut watcher, "tabs").await;
    assert_eq!(tabs["shown"], page_b.as_str(), "{tabs}");
    assert_eq!(tabs["tabs"].as_array().map(Vec::len), Some(2), "{tabs}");
    loop {
        if next_of(&mut watcher, "frame").await["target"] == page_b.as_str() {
            break;
        }
    }
    send(
        &mut watcher,
        json!({"type": "text", "text": " and by a watcher"}),
    )
    .await;
    let refusal = next_of(&mut watcher, "refused").await;
    assert!(
        refusal["reason"].as_str().unwrap().contains("view-only"),
        "{refusal}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = body_text(&cdp, &page_session).await;
    assert!(!text.contains("watcher"), "{text}");

    // A forged key and an expired link are refused.
    let forged = format!("{}x", control.url);
    assert_eq!(refused_status(open_view(&forged).await), 404);
    let short = link(&mut team_a, &id, "", true, Some(Duration::from_secs(1)))
        .await
        .expect("link");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(refused_status(open_view(&short.url).await), 410);

    // Revoked: the watching viewer is closed, the link opens nothing, and
    // another project cannot revoke (or learn of) the link.
    let refused = team_b
        .revoke_live_view_link(pb::RevokeLiveViewLinkRequest {
            link_id: view_only.link_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    let refused = team_a
        .revoke_live_view_link(pb::RevokeLiveViewLinkRequest {
            link_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_invalid_argument(&refused, "link_id");
    team_a
        .revoke_live_view_link(pb::RevokeLiveViewLinkRequest {
            link_id: view_only.link_id.clone(),
        })
        .await
        .expect("RevokeLiveViewLink");
    let bye = next_of(&mut watcher, "bye").await;
    assert!(bye["reason"].as_str().unwrap().contains("revoked"), "{bye}");
    assert_eq!(refused_status(open_view(&view_only.url).await), 410);

    // The session ends: its viewer is closed and its links are dead.
    team_a
        .release_session(pb::ReleaseSessionRequest {
            session_id: id.clone(),
        })
        .await
        .expect("ReleaseSession");
    let bye = next_of(&mut viewer, "bye").await;
    assert!(bye["reason"].as_str().unwrap().contains("ended"), "{bye}");
    assert_eq!(refused_status(open_view(&control.url).await), 410);

    // Viewers joined and left, each recorded as its link.
    let mut watch = keyed(&app.channel(), &key_a)
        .watch_sessions(pb::WatchSessionsRequest {
            session_ids: vec![id.clone()],
            after_sequence: Some(0),
            kinds: vec![
                pb::EventKind::ViewerJoined as i32,
                pb::EventKind::ViewerLeft as i32,
            ],
            ..Default::default()
        })
        .await
        .expect("WatchSessions")
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(EVENT_WAIT, watch.next())
            .await
            .expect("viewer events in time")
            .expect("an event")
            .expect("not an error")
            .event
            .expect("event");
        seen.push((event.kind, event.actor));
    }
    let control_actor = format!("viewer/{}", control.link_id);
    let watcher_actor = format!("viewer/{}", view_only.link_id);
    assert!(
        seen.contains(&(pb::EventKind::ViewerJoined as i32, control_actor)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(pb::EventKind::ViewerJoined as i32, watcher_actor.clone())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(pb::EventKind::ViewerLeft as i32, watcher_actor)),
        "{seen:?}"
    );
    app.stop().await;
}

async fn send(viewer: &mut Socket, message: Value) {
    viewer
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send to the viewer socket");
}

async fn body_text(cdp: &browserd::browser::cdp::CdpClient, session: &str) -> String {
    let value = cdp
        .call_in(
            session,
            "Runtime.evaluate",
            json!({"expression": "document.body.innerText", "returnByValue": true}),
            EVENT_WAIT,
        )
        .await
        .expect("read the page");
    value["result"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn wait_for_text(cdp: &browserd::browser::cdp::CdpClient, session: &str, text: &str) {
    eventually(&format!("the page gets {text:?}"), async || {
        let body = body_text(cdp, session).await;
        if body.contains(text) {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await
}

async fn the_links_migration_goes_down_and_up_again(backend: Backend) {
    use migrations::MigratorTrait;
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, dir.path()).await;
    drop(
        browserd::store::Store::connect(&database.url)
            .await
            .expect("migrated"),
    );
    let db = sea_orm::Database::connect(&database.url)
        .await
        .expect("connect");
    let count = "SELECT COUNT(*) FROM live_view_links";
    db.execute_unprepared(count)
        .await
        .expect("the table exists");
    // The links' migration and the egress one after it.
    migrations::Migrator::down(&db, Some(2))
        .await
        .expect("down");
    assert!(
        db.execute_unprepared(count).await.is_err(),
        "the table is gone"
    );
    migrations::Migrator::up(&db, None).await.expect("up again");
    db.execute_unprepared(count)
        .await
        .expect("the table is back");
}

async fn a_session_takes_a_bounded_number_of_viewers(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app
        .create(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await;
    let made = app
        .client
        .create_live_view_link(pb::CreateLiveViewLinkRequest {
            session_id: session.id.clone(),
            ..Default::default()
        })
        .await
        .expect("CreateLiveViewLink")
        .into_inner();
    let mut viewers = Vec::new();
    for _ in 0..browserd::console::MAX_VIEWERS_PER_SESSION {
        let mut viewer = open_view(&made.url).await.expect("a viewer within the cap");
        next_of(&mut viewer, "hello").await;
        viewers.push(viewer);
    }
    assert_eq!(refused_status(open_view(&made.url).await), 429);
    // A viewer leaving makes room.
    drop(viewers.pop());
    eventually("room after a viewer left", async || {
        open_view(&made.url).await.map(drop)
    })
    .await;
    app.release(&session.id).await;
    app.stop().await;
}

/// What a web page of another site can make a visitor's browser send:
/// a request under a rebound name (DNS rebinding: evil.example resolving
/// to 127.0.0.1 is same-origin with the console for the browser), and a
/// cross-site POST or WebSocket. On an open server, nothing else would
/// stop them reading the sessions and opening their live views.
async fn another_site_cannot_reach_the_console(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app
        .create(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await;
    let addr = relay_addr(&session.connect_url);
    let port = addr.rsplit_once(':').expect("a port").1.to_owned();
    let raw = |head: String| {
        let addr = addr.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect to the console");
            socket.write_all(head.as_bytes()).await.expect("send");
            let mut answer = Vec::new();
            tokio::time::timeout(EVENT_WAIT, socket.read_to_end(&mut answer))
                .await
                .expect("an answer in time")
                .expect("read");
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    // The same requests from the console's own page get through.
    let own = raw(format!(
        "GET /console/api/sessions HTTP/1.1\r\nhost: {addr}\r\norigin: http://{addr}\r\n\r\n"
    ))
    .await;
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    assert!(
        own.contains(&session.id),
        "the open server lists the session"
    );
    let localhost = raw(format!(
        "GET /console/api/sessions HTTP/1.1\r\nhost: localhost:{port}\r\n\r\n"
    ))
    .await;
    assert!(localhost.starts_with("HTTP/1.1 200"), "{localhost}");

    let rebound = raw(format!(
        "GET /console/api/sessions HTTP/1.1\r\nhost: evil.example:{port}\r\n\r\n"
    ))
    .await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(!rebound.contains(&session.id));
    let cross_site = raw(format!(
        "POST /console/api/sessions/{}/release HTTP/1.1\r\nhost: {addr}\r\norigin: http://evil.example\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n",
        session.id
    ))
    .await;
    assert!(cross_site.starts_with("HTTP/1.1 403"), "{cross_site}");
    let hijack = raw(format!(
        "GET /console/api/live?key=x HTTP/1.1\r\nhost: {addr}\r\norigin: https://evil.example\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    ))
    .await;
    assert!(hijack.starts_with("HTTP/1.1 403"), "{hijack}");
    // An address the request did not come to names no listener here.
    let elsewhere = raw(format!(
        "GET /console/api/sessions HTTP/1.1\r\nhost: 127.0.0.2:{port}\r\n\r\n"
    ))
    .await;
    assert!(elsewhere.starts_with("HTTP/1.1 403"), "{elsewhere}");
    assert!(!elsewhere.contains(&session.id));
    let nameless = raw("GET /console/api/sessions HTTP/1.1\r\n\r\n".to_owned()).await;
    assert!(nameless.starts_with("HTTP/1.1 403"), "{nameless}");
    assert_eq!(
        status_of(&app.get(&session.id).await),
        pb::SessionStatus::Live,
        "the cross-site release did nothing"
    );
    app.stop().await;
}
