//! The CDP relay as its clients meet it, every one of them untrusted:
//! oversized frames, stalled handshakes, connection caps, descriptor
//! exhaustion, plain HTTP, discovery, header auth and `Browser.close`.

use std::process::Stdio;
use std::time::Duration;

use browserd::pb;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::on_both_backends;
use crate::support::*;

/// `host:port` of the relay and the path (with query) of a connect_url.
fn split_url(connect_url: &str) -> (String, String) {
    let rest = connect_url
        .strip_prefix("ws://")
        .expect("connect_url is ws://");
    let (addr, path) = rest.split_once('/').expect("a path");
    (addr.to_owned(), format!("/{path}"))
}

/// The connect_url without its token, and the token.
fn without_token(connect_url: &str) -> (String, String) {
    let (base, token) = connect_url.split_once("?token=").expect("a token");
    (base.to_owned(), token.to_owned())
}

/// An HTTP response as the relay sent it.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Reads a whole response: the relay closes every HTTP connection after
/// its answer.
async fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    tokio::time::timeout(EVENT_WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("the relay answers and closes")
        .expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a complete HTTP response, got {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line, got {head:?}"));
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send a request");
    read_response(&mut stream).await
}

/// A WebSocket handshake by hand, so the test can then write raw frames.
async fn raw_upgrade(addr: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(EVENT_WAIT, stream.read(&mut byte))
            .await
            .expect("a handshake answer")
            .expect("read");
        assert_eq!(n, 1, "connection closed during the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

async fn ws_with_bearer(
    url: &str,
    token: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().expect("a ws URL");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header value"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// A client that takes messages as large as browserd's default limit.
async fn connect_big(url: &str) -> Socket {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .expect("connect through the relay")
        .0
}

async fn connect_raw(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect through the relay")
        .0
}

/// `Browser.getVersion` answered on a raw socket.
async fn round_trip(socket: &mut Socket, id: u64) {
    let reply = call(socket, id, json!({"method": "Browser.getVersion"})).await;
    assert!(reply["error"].is_null(), "{reply}");
}

/// The reason of the close frame that ends `socket`.
async fn closed_reason(socket: &mut Socket) -> String {
    close_frame(socket)
        .await
        .map(|f| f.reason.to_string())
        .unwrap_or_default()
}

/// Sends command `id` and returns the whole reply, skipping CDP events.
async fn call(socket: &mut Socket, id: u64, mut command: Value) -> Value {
    command["id"] = json!(id);
    socket
        .send(Message::text(command.to_string()))
        .await
        .expect("send through the relay");
    loop {
        let frame = tokio::time::timeout(EVENT_WAIT, socket.next())
            .await
            .expect("an answer through the relay")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let reply: Value = serde_json::from_str(&text).expect("CDP sends JSON");
            if reply["id"] == id {
                return reply;
            }
        }
    }
}

/// A frame header announcing a 64 GiB binary message, once aborted the
/// whole process (tungstenite reserved it). Now it closes that connection
/// with 1009 and nothing else: another client of the same session and the
/// session itself carry on.
async fn an_oversized_frame_closes_only_that_connection(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let mut bystander = connect_raw(&session.connect_url).await;
    round_trip(&mut bystander, 1).await;

    let (addr, path) = split_url(&session.connect_url);
    let mut attacker = raw_upgrade(&addr, &path).await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(64u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    attacker.write_all(&header).await.expect("send the header");
    let mut close = [0u8; 4];
    tokio::time::timeout(EVENT_WAIT, attacker.read_exact(&mut close))
        .await
        .expect("the relay answers the header")
        .expect("a close frame");
    assert_eq!(close[0], 0x88, "a close frame: {close:?}");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1009);

    round_trip(&mut bystander, 2).await;
    assert_eq!(
        status_of(&app.get(&session.id).await),
        pb::SessionStatus::Live
    );
    app.release(&session.id).await;
    app.stop().await;
}

/// Under a lowered --cdp-max-message-size, a client message over it closes
/// that client with 1009, and so does a browser answer over it; the browser
/// is fine, so the session stays LIVE (keep_alive) and takes new clients.
async fn messages_over_the_limit_close_with_1009_either_way(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.cdp_max_message_size = 64 << 10).await;
    let session = app
        .create(pb::CreateSessionRequest {
            keep_alive: true,
            ..Default::default()
        })
        .await;
    let too_big = format!(
        r#"{{"id":1,"method":"Runtime.evaluate","params":{{"expression":"'{}'"}}}}"#,
        "x".repeat(100 << 10)
    );
    let mut sender = connect_big(&session.connect_url).await;
    sender
        .send(Message::text(too_big))
        .await
        .expect("send the message");
    assert_eq!(close_code(&mut sender).await, Some(1009));

    let mut asker = connect_big(&session.connect_url).await;
    let _ = asker
        .send(Message::text(
            json!({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}})
                .to_string(),
        ))
        .await;
    let target = loop {
        match tokio::time::timeout(EVENT_WAIT, asker.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains(r#""id":1"#) => break text,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no answer: {other:?}"),
        }
    };
    let target: Value = serde_json::from_str(&target).expect("JSON");
    let attached = call(
        &mut asker,
        2,
        json!({"method": "Target.attachToTarget", "params": {"targetId": target["result"]["targetId"], "flatten": true}}),
    )
    .await;
    asker
        .send(Message::text(
            json!({"id": 3, "sessionId": attached["result"]["sessionId"], "method": "Runtime.evaluate",
                   "params": {"expression": "'y'.repeat(100 * 1024)", "returnByValue": true}})
            .to_string(),
        ))
        .await
        .expect("send");
    assert_eq!(close_code(&mut asker).await, Some(1009));

    assert_eq!(
        status_of(&app.get(&session.id).await),
        pb::SessionStatus::Live
    );
    let mut again = connect_raw(&session.connect_url).await;
    round_trip(&mut again, 1).await;
    app.release(&session.id).await;
    app.stop().await;
}

/// The code of the close frame that ends `socket`.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    close_frame(socket).await.map(|f| u16::from(f.code))
}

/// The close frame that ends `socket`, skipping other frames; `None` when
/// the connection ends without one.
async fn close_frame(
    socket: &mut Socket,
) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame> {
    loop {
        match tokio::time::timeout(EVENT_WAIT, socket.next())
            .await
            .expect("the relay closes the connection")
        {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// The limits leave room for what CDP clients do today: a 20 MB evaluate
/// result and a full-page screenshot of a tall page.
async fn large_results_still_fit_the_limits(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let mut socket = connect_big(&session.connect_url).await;
    let target = call(
        &mut socket,
        1,
        json!({"method": "Target.createTarget", "params": {"url": "about:blank"}}),
    )
    .await;
    let attached = call(
        &mut socket,
        2,
        json!({"method": "Target.attachToTarget", "params": {"targetId": target["result"]["targetId"], "flatten": true}}),
    )
    .await;
    let page = attached["result"]["sessionId"].clone();
    let big = call(
        &mut socket,
        3,
        json!({"sessionId": page, "method": "Runtime.evaluate", "params": {
            "expression": "document.body.style.height = '12000px'; 'x'.repeat(20 * 1024 * 1024)",
            "returnByValue": true,
        }}),
    )
    .await;
    assert_eq!(
        big["result"]["result"]["value"].as_str().map(str::len),
        Some(20 << 20)
    );
    let shot = call(
        &mut socket,
        4,
        json!({"sessionId": page, "method": "Page.captureScreenshot", "params": {
            "captureBeyondViewport": true,
            "clip": {"x": 0, "y": 0, "width": 800, "height": 12000, "scale": 1},
        }}),
    )
    .await;
    assert!(
        shot["result"]["data"]
            .as_str()
            .is_some_and(|d| d.len() > 10_000),
        "a full-page screenshot: {:?}",
        shot.get("error")
    );
    app.release(&session.id).await;
    app.stop().await;
}

/// Connections that send half a request head are answered 408 and closed
/// after --cdp-handshake-timeout, instead of holding a descriptor forever.
async fn stalled_handshakes_time_out(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| {
        c.cdp_handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let (addr, _) = split_url(&session.connect_url);
    let mut stalled = Vec::new();
    for i in 0..50 {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        if i % 2 == 0 {
            stream
                .write_all(b"GET /devtools/browser/ HTTP/1.1\r\n")
                .await
                .expect("half a request");
        }
        stalled.push(stream);
    }
    let started = tokio::time::Instant::now();
    for stream in &mut stalled {
        let response = read_response(stream).await;
        assert_eq!(response.status, 408, "{response:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut client = connect_raw(&session.connect_url).await;
    round_trip(&mut client, 1).await;
    app.release(&session.id).await;
    app.stop().await;
}

/// Past --cdp-max-connections-per-session a client gets 429; past
/// --cdp-max-connections, 503. Neither disturbs connected clients, and
/// sessions still start while the relay is full.
async fn connection_caps_answer_with_a_status(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| {
        c.cdp_max_connections = 6;
        c.cdp_max_connections_per_session = 2;
    })
    .await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let mut first = connect_raw(&session.connect_url).await;
    let mut second = connect_raw(&session.connect_url).await;
    let third = tokio_tungstenite::connect_async(&session.connect_url)
        .await
        .map(|(socket, _)| socket);
    assert_eq!(refused_status(third), 429);

    let (addr, _) = split_url(&session.connect_url);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    // The relay counts a connection once it has accepted it: wait until
    // one more is refused.
    let refused = eventually("a connection over the cap is refused", async || {
        let response = http_get(&addr, "/", &[]).await;
        if response.status == 503 {
            Ok(response)
        } else {
            Err(response)
        }
    })
    .await;
    assert!(
        refused.body.contains("--cdp-max-connections"),
        "{refused:?}"
    );
    round_trip(&mut first, 1).await;
    round_trip(&mut second, 1).await;
    let other = app.create(pb::CreateSessionRequest::default()).await;
    assert_eq!(status_of(&other), pb::SessionStatus::Live);

    drop(idle);
    drop(first);
    let (mut again, _) = eventually("a freed slot is reused", async || {
        tokio_tungstenite::connect_async(&session.connect_url).await
    })
    .await;
    round_trip(&mut again, 2).await;
    app.release(&session.id).await;
    app.release(&other.id).await;
    app.stop().await;
}

/// Anything that is not a WebSocket gets a real HTTP response that says
/// what to do, never a dropped connection.
async fn plain_http_gets_an_answer(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let (addr, path) = split_url(&session.connect_url);
    let (base, _) = without_token(&path);

    let on_session = http_get(&addr, &path, &[]).await;
    assert_eq!(on_session.status, 400, "{on_session:?}");
    assert!(on_session.body.contains("WebSocket"), "{on_session:?}");
    let root = http_get(&addr, "/", &[]).await;
    assert_eq!(root.status, 404, "{root:?}");
    assert!(root.body.contains("connect_url"), "{root:?}");
    let no_token = http_get(&addr, &base, &[]).await;
    assert_eq!(no_token.status, 401, "{no_token:?}");
    assert!(
        no_token
            .head
            .to_lowercase()
            .contains("www-authenticate: bearer")
    );
    let wrong = http_get(&addr, &format!("{base}?token=0000"), &[]).await;
    assert_eq!(wrong.status, 404, "{wrong:?}");
    let mut garbage = TcpStream::connect(&addr).await.expect("connect");
    garbage
        .write_all(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(read_response(&mut garbage).await.status, 400);
    app.release(&session.id).await;
    app.stop().await;
}

/// `<connect_url as http://>/json/version` answers for that session only,
/// with the token in the URL or as a Bearer header, and its
/// webSocketDebuggerUrl works.
async fn http_discovery_answers_for_one_session(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let other = app.create(pb::CreateSessionRequest::default()).await;
    let (addr, path) = split_url(&session.connect_url);
    let (base, token) = without_token(&path);

    // As Playwright builds it from the http:// form of connect_url.
    let version = http_get(&addr, &format!("{base}/json/version/?token={token}"), &[]).await;
    assert_eq!(version.status, 200, "{version:?}");
    let body: Value = serde_json::from_str(&version.body).expect("JSON");
    assert_eq!(body["webSocketDebuggerUrl"], session.connect_url.as_str());
    assert!(body["Browser"].as_str().is_some_and(|b| !b.is_empty()));
    let mut socket = connect_raw(body["webSocketDebuggerUrl"].as_str().expect("a URL")).await;
    round_trip(&mut socket, 1).await;

    let bearer = format!("Bearer {token}");
    let by_header = http_get(
        &addr,
        &format!("{base}/json/version"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(by_header.status, 200, "{by_header:?}");
    let body: Value = serde_json::from_str(&by_header.body).expect("JSON");
    let url = body["webSocketDebuggerUrl"].as_str().expect("a URL");
    assert!(
        !url.contains(&token),
        "a header-authenticated answer keeps the token out of URLs"
    );
    let mut socket = ws_with_bearer(url, &token)
        .await
        .expect("connect with the header");
    round_trip(&mut socket, 1).await;

    let list = http_get(&addr, &format!("{base}/json/list?token={token}"), &[]).await;
    assert_eq!(list.status, 200, "{list:?}");
    let pages: Value = serde_json::from_str(&list.body).expect("JSON");
    assert!(pages.as_array().is_some_and(|p| !p.is_empty()), "{pages}");

    // Another session's id with this session's token is nobody's.
    let (other_base, _) = without_token(&split_url(&other.connect_url).1);
    let foreign = http_get(
        &addr,
        &format!("{other_base}/json/version?token={token}"),
        &[],
    )
    .await;
    assert_eq!(foreign.status, 404, "{foreign:?}");
    let no_token = http_get(&addr, &format!("{base}/json/version"), &[]).await;
    assert_eq!(no_token.status, 401, "{no_token:?}");
    app.release(&session.id).await;
    app.release(&other.id).await;
    app.stop().await;
}

/// The token can stay out of the URL: `Authorization: Bearer` opens the
/// same door, and a wrong one opens nothing.
async fn the_token_works_as_a_bearer_header(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let (base, token) = without_token(&session.connect_url);
    let mut socket = ws_with_bearer(&base, &token)
        .await
        .expect("connect with the header");
    round_trip(&mut socket, 1).await;
    assert_eq!(refused_status(ws_with_bearer(&base, "0000").await), 404);
    let bare = tokio_tungstenite::connect_async(&base)
        .await
        .map(|(socket, _)| socket);
    assert_eq!(refused_status(bare), 401);
    app.release(&session.id).await;
    app.stop().await;
}

/// A client's `Browser.close` gets the reply it expects, then the session
/// is RELEASED (CLIENT_CLOSED) — not FAILED as a crash — even with
/// keep_alive, and every other client of it is closed.
async fn browser_close_releases_a_kept_session(backend: Backend) {
    browser_close_releases(backend, true, None).await;
}

/// The same on a flattened browser-level session (what Puppeteer uses):
/// the reply names that session.
async fn browser_close_on_a_cdp_session_releases(backend: Backend) {
    browser_close_releases(backend, false, Some(())).await;
}

async fn browser_close_releases(backend: Backend, keep_alive: bool, flattened: Option<()>) {
    let mut app = spawn_app(backend).await;
    let session = app
        .create(pb::CreateSessionRequest {
            keep_alive,
            ..Default::default()
        })
        .await;
    let mut events = app
        .watch(pb::WatchSessionsRequest {
            session_ids: vec![session.id.clone()],
            ..Default::default()
        })
        .await;
    let mut other = connect_raw(&session.connect_url).await;
    round_trip(&mut other, 1).await;
    let mut closer = connect_raw(&session.connect_url).await;
    let mut close = json!({"method": "Browser.close"});
    let mut cdp_session = Value::Null;
    if flattened.is_some() {
        let attached = call(
            &mut closer,
            1,
            json!({"method": "Target.attachToBrowserTarget"}),
        )
        .await;
        cdp_session = attached["result"]["sessionId"].clone();
        close["sessionId"] = cdp_session.clone();
    }
    let reply = call(&mut closer, 7, close).await;
    let mut expected = json!({"id": 7, "result": {}});
    if flattened.is_some() {
        expected["sessionId"] = cdp_session;
    }
    assert_eq!(reply, expected);
    assert_eq!(closed_reason(&mut closer).await, "the session has ended");
    assert_eq!(closed_reason(&mut other).await, "the session has ended");

    let ended = events.until(&session.id, pb::SessionStatus::Released).await;
    assert_eq!(ended.end_reason, pb::EndReason::ClientClosed as i32);
    let stored = app.get(&session.id).await;
    assert_eq!(status_of(&stored), pb::SessionStatus::Released);
    assert_eq!(reason_of(&stored), pb::EndReason::ClientClosed);
    let terminal = app
        .events_of(&session.id)
        .await
        .into_iter()
        .filter(|e| {
            e.to_status == pb::SessionStatus::Released as i32
                || e.to_status == pb::SessionStatus::Failed as i32
        })
        .count();
    assert_eq!(terminal, 1, "exactly one terminal event");
    let profiles = app.profiles_dir();
    eventually("the browser is gone", async || {
        browser_processes(&profiles).is_empty()
    })
    .await;
    app.stop().await;
}

/// browserd under a lowered RLIMIT_NOFILE, flooded with connections that
/// never finish a request: accept failures back off instead of spinning,
/// the log stays bounded, stalled connections are timed out, and sessions
/// start again once they are. No token reaches the log.
async fn descriptor_exhaustion_backs_off_and_recovers(backend: Backend) {
    const NOFILE: libc::rlim_t = 256;
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data.path()).await;
    let mut command = crate::binary::serve_command(data.path());
    command
        .args(["--node-id", "relay-test", "--warm-pool", "0"])
        .args([
            "--cdp-handshake-timeout",
            "2s",
            "--cdp-max-connections",
            "100000",
        ])
        .env("BROWSERD_DATABASE_URL", &database.url)
        .env("RUST_LOG", "info,browserd=debug,sqlx=warn")
        .stdout(Stdio::null());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (server, mut logged) = browserd::harness::ChildServer::spawn_logged(command).await;
    let cdp = server.cdp_addr.clone();
    // Counted, not kept: an unbounded log must not fill this process too.
    let log = tokio::spawn(async move {
        let (mut accept_warnings, mut kept) = (0usize, Vec::new());
        while let Some(line) = logged.recv().await {
            if line.contains("accept failed") {
                accept_warnings += 1;
            } else if kept.len() < 100_000 {
                kept.push(line);
            }
        }
        (accept_warnings, kept)
    });
    let mut client = server.client.clone();

    // Twice the descriptors browserd has, each sending half a request. A
    // connection the kernel does not take within a few seconds counts as
    // refused.
    let connects = (0..2 * NOFILE).map(|_| async {
        let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&cdp))
            .await
            .ok()?
            .ok()?;
        let _ = stream.write_all(b"GET /devtools/browser/").await;
        Some(stream)
    });
    let mut stalled: Vec<TcpStream> = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        stalled.len() > NOFILE as usize,
        "the flood is larger than the limit"
    );
    // Every one is answered or closed once timed out; none stays open.
    let started = tokio::time::Instant::now();
    for stream in &mut stalled {
        let mut rest = Vec::new();
        tokio::time::timeout(EVENT_WAIT, stream.read_to_end(&mut rest))
            .await
            .expect("a stalled connection is timed out")
            .ok();
    }
    let flood = started.elapsed();
    drop(stalled);

    let session = create_on(&mut client, pb::CreateSessionRequest::default()).await;
    assert_eq!(status_of(&session), pb::SessionStatus::Live);
    let mut socket = connect_raw(&session.connect_url).await;
    round_trip(&mut socket, 1).await;
    let (_, token) = without_token(&session.connect_url);
    drop(socket);
    client
        .release_session(pb::ReleaseSessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("release");

    server.stop().await;
    let (accept_warnings, log) = tokio::time::timeout(EVENT_WAIT, log)
        .await
        .expect("the log ends with browserd")
        .expect("log reader");
    let allowed = 2 + flood.as_secs() as usize / 5;
    assert!(
        accept_warnings >= 1 && accept_warnings <= allowed,
        "{accept_warnings} accept warnings in {flood:?} (at most {allowed})"
    );
    assert!(
        !log.iter().any(|l| l.contains(&token)),
        "a token reached the log"
    );
    database.remove().await;
}

on_both_backends!(
    an_oversized_frame_closes_only_that_connection,
    messages_over_the_limit_close_with_1009_either_way,
    large_results_still_fit_the_limits,
    stalled_handshakes_time_out,
    connection_caps_answer_with_a_status,
    plain_http_gets_an_answer,
    http_discovery_answers_for_one_session,
    the_token_works_as_a_bearer_header,
    browser_close_releases_a_kept_session,
    browser_close_on_a_cdp_session_releases,
    descriptor_exhaustion_backs_off_and_recovers,
);
