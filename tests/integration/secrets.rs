//! Secrets stay secret: no connect token is stored anywhere a reader of
//! the database could find it, and proxy credentials reach the proxy (via
//! the browser's local hop) and nothing else: not the API, events, logs,
//! database or any command line, and not another session's browser.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use browserd::browser::cdp::CdpClient;
use browserd::browser::process_table;
use browserd::harness::ChildServer;
use browserd::pb;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::on_both_backends;
use crate::support::*;

const USER: &str = "alice";
/// Greppable, and nothing browserd would print by chance.
const PASSWORD: &str = "hunter2-Zq7xKv";
/// The title of the page the test proxy serves for http://target.test/.
const TARGET_TITLE: &str = "reached through the proxy";

async fn no_connect_token_is_stored(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let ended = app.create(pb::CreateSessionRequest::default()).await;
    let used = app.create(pb::CreateSessionRequest::default()).await;
    let idle = app.create(pb::CreateSessionRequest::default()).await;
    // The token works, and reads show the same connect_url every time.
    let client = cdp_client(&used.connect_url).await;
    round_trip(&client).await;
    assert_eq!(app.get(&used.id).await.connect_url, used.connect_url);
    let listed = app.list(pb::ListSessionsRequest::default()).await;
    assert!(
        listed.iter().any(|s| s.connect_url == idle.connect_url),
        "ListSessions shows the live session's connect_url"
    );
    app.release(&ended.id).await;

    let contents = app.database_contents().await;
    assert!(contents.len() > 1000, "the database was read");
    for session in [&ended, &used, &idle] {
        let (_, token) = session
            .connect_url
            .split_once("?token=")
            .expect("a connect_url with a token");
        assert!(
            !contents.windows(token.len()).any(|w| w == token.as_bytes()),
            "session {}'s connect token is in the database",
            session.id
        );
    }
    let secret = app.data_dir.path().join("secret");
    let mode = std::fs::metadata(&secret).expect("a secret was made");
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    app.release(&used.id).await;
    app.release(&idle.id).await;
    app.stop().await;
}

/// Tokens stored by an older browserd (its sessions table and the
/// snapshots in its event log) are gone once the migration has run, and
/// those events still replay.
async fn the_migration_removes_stored_tokens(backend: Backend) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data_dir.path()).await;
    let db = sea_orm::Database::connect(&database.url)
        .await
        .expect("connect");
    // The schema as the last browserd that stored connect_url left it.
    <migrations::Migrator as migrations::MigratorTrait>::up(&db, Some(2))
        .await
        .expect("the migrations before the change");
    db.close().await.expect("close");
    let id = uuid::Uuid::new_v4().to_string();
    let token = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let connect_url = format!("ws://127.0.0.1:1/devtools/browser/{id}?token={token}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let expires = now + 300_000;
    database
        .execute(&format!(
            "INSERT INTO sessions (id, status, created_at, started_at, expires_at, timeout_ms, \
             keep_alive, metadata, viewport_width, viewport_height, node_id, connect_url) \
             VALUES ('{id}', 'LIVE', {now}, {now}, {expires}, 300000, false, '{{}}', 1280, 720, \
             'old-node', '{connect_url}')"
        ))
        .await;
    let snapshot = json!({
        "id": id, "status": "LIVE", "end_reason": null, "error": null,
        "created_at": now, "started_at": now, "ended_at": null, "expires_at": expires,
        "timeout_ms": 300000, "inactivity_timeout_ms": null, "keep_alive": false,
        "metadata": "{}", "viewport_width": 1280, "viewport_height": 720,
        "user_agent": null, "proxy_url": null, "idempotency_key": null,
        "connect_url": connect_url, "browser_version": null, "node_id": "old-node",
        "browser_pid": null, "user_data_dir": null,
    });
    database
        .execute(&format!(
            "INSERT INTO session_events (session_id, occurred_at, to_status, snapshot, kind) \
             VALUES ('{id}', {now}, 'LIVE', '{snapshot}', 'STATUS_CHANGED')"
        ))
        .await;
    assert!(
        database
            .raw_contents()
            .await
            .windows(token.len())
            .any(|w| w == token.as_bytes()),
        "the old token was stored"
    );

    // browserd migrates at start.
    let mut app = spawn_app_on(database, data_dir, |_| {}).await;
    let replayed = app.events_of(&id).await;
    assert_eq!(replayed.len(), 1, "the old event still replays");
    let contents = app.database_contents().await;
    assert!(
        !contents.windows(token.len()).any(|w| w == token.as_bytes()),
        "the old token survived the migration"
    );
    app.stop().await;
}

async fn a_short_or_unreadable_secret_refuses_to_start(backend: Backend) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data_dir.path()).await;
    let short = data_dir.path().join("short-secret");
    std::fs::write(&short, b"0123456789").expect("write a short secret");
    for (secret, expected) in [
        (short, "fewer than 32"),
        (data_dir.path().join("."), "cannot read"),
    ] {
        let mut config = browserd::harness::config(data_dir.path(), Some(database.url.clone()));
        config.secret_file = Some(secret.clone());
        let message = start_and_stop(config)
            .await
            .expect_err("the start must be refused")
            .to_string();
        assert!(
            message.contains(expected) && message.contains(&secret.display().to_string()),
            "{message}"
        );
    }
    database.remove().await;
}

async fn authenticated_proxies_work_and_the_password_leaks_nowhere(backend: Backend) {
    let mut proxy = TestProxy::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data.path()).await;
    let mut command = crate::binary::serve_command(data.path());
    command
        .args(["--node-id", "proxy-test", "--warm-pool", "0"])
        .env("BROWSERD_DATABASE_URL", &database.url)
        // Everything browserd and its libraries log, SQL statements too.
        .env("RUST_LOG", "debug");
    let (server, mut logged) = ChildServer::spawn_logged(command).await;
    let mut client = server.client.clone();
    let session = create_on(
        &mut client,
        pb::CreateSessionRequest {
            proxy_url: format!("http://{USER}:{PASSWORD}@{}", proxy.addr),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        session.proxy_url,
        format!("http://{USER}:REDACTED@{}", proxy.addr)
    );

    // Plain HTTP (absolute-form) and a CONNECT tunnel, both authorised.
    let cdp = cdp_client(&session.connect_url).await;
    let page = Page::open(&cdp, None).await;
    loads_through(&page, &mut proxy).await;
    page.navigate("https://target.test/").await;
    // Chromium may open more than one tunnel at once: every one must be
    // authorised, and one carries a TLS ClientHello.
    loop {
        match proxy.next().await {
            Seen::Tunnelled(first) => {
                assert_eq!(first, 0x16, "a TLS ClientHello came through the tunnel");
                break;
            }
            request => assert_eq!(
                request,
                Seen::Request {
                    target: "target.test:443".into(),
                    authorized: true
                }
            ),
        }
    }

    // Not on any command line of the browser's processes.
    let profile = data.path().join("profiles").join(&session.id);
    let processes = process_table::mentioning(&profile);
    assert!(!processes.is_empty(), "the session's browser runs");
    for pid in processes {
        let args = process_table::args(pid);
        let line = String::from_utf8_lossy(&args.join(&b' ')).into_owned();
        assert!(!line.contains(PASSWORD), "process {pid}: {line}");
    }
    // Not in any answer or event.
    let shown = format!(
        "{:?} {:?} {:?}",
        get_on(&mut client, &session.id).await,
        client
            .list_sessions(pb::ListSessionsRequest::default())
            .await
            .expect("ListSessions")
            .into_inner(),
        replay_all(&mut client, database.newest_sequence().await).await,
    );
    assert!(shown.contains("REDACTED"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    // Not in the database.
    let stored = database.raw_contents().await;
    for secret in [PASSWORD.to_owned(), basic_credentials()] {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the database"
        );
    }
    // Not in the log, from start to shutdown.
    server.stop().await;
    let mut log = Vec::new();
    while let Some(line) = logged.recv().await {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains(&session.id), "the log was captured");
    assert!(
        !log.contains(PASSWORD) && !log.contains(&basic_credentials()),
        "{log}"
    );
    database.remove().await;
}

/// With `--egress open` a browser shares the host's network, and its
/// authenticating proxy's credentials are added by an egress proxy on the
/// host's loopback, which any local process can reach: it serves its own
/// browser's connections only. (Walled, each proxy listens in its own
/// browser's namespace, where nothing else can reach it.)
async fn a_proxy_hop_serves_its_own_browser_only(backend: Backend) {
    let mut proxy = TestProxy::start().await;
    let mut app = spawn_app_with(backend, |c| c.egress = browserd::config::Egress::Open).await;
    let owner = app
        .create(pb::CreateSessionRequest {
            proxy_url: format!("http://{USER}:{PASSWORD}@{}", proxy.addr),
            ..Default::default()
        })
        .await;
    let other = app
        .create(pb::CreateSessionRequest {
            proxy_url: format!("http://{}", proxy.addr),
            ..Default::default()
        })
        .await;
    let main = browser_main_pid(&app.profiles_dir(), &owner.id);
    let hop = process_table::args(main)
        .iter()
        .find_map(|arg| {
            let arg = std::str::from_utf8(arg).ok()?;
            arg.strip_prefix("--proxy-server=http://")?
                .parse::<SocketAddr>()
                .ok()
        })
        .expect("the owner's browser is pointed at its hop");
    assert!(hop.ip().is_loopback(), "{hop}");

    // Without credentials the proxy's 407 reaches the client.
    let other_cdp = cdp_client(&other.connect_url).await;
    let page = Page::open(&other_cdp, None).await;
    page.navigate("http://target.test/").await;
    assert_eq!(
        proxy.next().await,
        Seen::Request {
            target: "http://target.test/".into(),
            authorized: false
        }
    );
    assert_eq!(page.response_status().await, 407);

    // The other session's client points a context of its own browser at
    // the owner's hop: the hop closes the connection unanswered, and the
    // proxy never sees the request.
    let context = other_cdp
        .call(
            "Target.createBrowserContext",
            json!({"proxyServer": format!("http://{hop}")}),
            EVENT_WAIT,
        )
        .await
        .expect("a context");
    let context = context["browserContextId"].as_str().expect("a context id");
    let rider = Page::open(&other_cdp, Some(context)).await;
    let failed = rider.navigate("http://target.test/").await;
    assert!(failed.is_some(), "the hop served another browser");
    assert_ne!(rider.title().await, TARGET_TITLE);

    // The owner's own browser is served, through the same hop.
    let owner_cdp = cdp_client(&owner.connect_url).await;
    let page = Page::open(&owner_cdp, None).await;
    // The rider's request never reached the proxy: this is its next.
    loads_through(&page, &mut proxy).await;

    // The hop goes with its browser.
    app.release(&owner.id).await;
    eventually("the hop stops listening", async || {
        std::net::TcpStream::connect(hop).is_err()
    })
    .await;
    app.release(&other.id).await;
    app.stop().await;
}

/// A page of a session, attached in flat mode.
/// `page` loads http://target.test/ and the proxy saw it, authorised.
async fn loads_through(page: &Page<'_>, proxy: &mut TestProxy) {
    assert_eq!(page.navigate("http://target.test/").await, None);
    assert_eq!(page.title().await, TARGET_TITLE);
    assert_eq!(
        proxy.next().await,
        Seen::Request {
            target: "http://target.test/".into(),
            authorized: true
        }
    );
}

struct Page<'a> {
    cdp: &'a CdpClient,
    session: String,
}

impl<'a> Page<'a> {
    async fn open(cdp: &'a CdpClient, context: Option<&str>) -> Self {
        let target = cdp
            .create_target("about:blank", context, EVENT_WAIT)
            .await
            .expect("a page");
        let session = cdp.attach(&target, EVENT_WAIT).await.expect("attached");
        Self { cdp, session }
    }

    /// Navigates; the error Chromium reports, if the navigation failed.
    async fn navigate(&self, url: &str) -> Option<String> {
        let navigated = self
            .cdp
            .call_in(
                &self.session,
                "Page.navigate",
                json!({"url": url}),
                EVENT_WAIT,
            )
            .await
            .expect("Page.navigate answers");
        navigated["errorText"].as_str().map(str::to_owned)
    }

    async fn evaluate(&self, expression: &str) -> Value {
        let evaluated = self
            .cdp
            .call_in(
                &self.session,
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
                EVENT_WAIT,
            )
            .await
            .expect("Runtime.evaluate answers");
        evaluated["result"]["value"].clone()
    }

    /// The title once the document has loaded.
    async fn title(&self) -> String {
        let loaded = "new Promise(done => document.readyState === 'complete' \
             ? done(document.title) \
             : addEventListener('load', () => done(document.title)))";
        self.evaluate(loaded)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The HTTP status of the document's response.
    async fn response_status(&self) -> u64 {
        let status = "new Promise(done => { const read = () => \
             done(performance.getEntriesByType('navigation')[0].responseStatus); \
             document.readyState === 'complete' ? read() : addEventListener('load', read); })";
        self.evaluate(status).await.as_u64().unwrap_or_default()
    }
}

/// Every stored event, replayed through WatchSessions up to `newest`.
async fn replay_all(
    client: &mut browserd::pb::session_service_client::SessionServiceClient<
        tonic::transport::Channel,
    >,
    newest: u64,
) -> Vec<pb::SessionEvent> {
    let mut stream = client
        .watch_sessions(pb::WatchSessionsRequest {
            after_sequence: Some(0),
            ..Default::default()
        })
        .await
        .expect("WatchSessions")
        .into_inner();
    let mut events: Vec<pb::SessionEvent> = Vec::new();
    while events.last().is_none_or(|e| e.sequence < newest) {
        let next = tokio::time::timeout(EVENT_WAIT, stream.message())
            .await
            .expect("an event within the wait bound")
            .expect("the stream")
            .expect("an event");
        events.push(next.event.expect("event in response"));
    }
    events
}

fn basic_credentials() -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
}

/// What the test proxy saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A request (absolute-form URL, or CONNECT's authority), and whether
    /// it carried the right credentials.
    Request { target: String, authorized: bool },
    /// The first byte a CONNECT tunnel carried.
    Tunnelled(u8),
}

/// An HTTP proxy that wants Basic `USER:PASSWORD`. Chromium bypasses
/// proxies for loopback destinations, so pages load `target.test`, a name
/// only this proxy knows: it answers http://target.test/ itself, and
/// accepts CONNECT tunnels, reporting their first byte, then closing them.
struct TestProxy {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl TestProxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind((browserd::harness::PAGE_HOST, 0))
            .await
            .expect("bind the test proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(proxy_one(socket, tx.clone()));
            }
        });
        Self { addr, seen }
    }

    /// The next thing the proxy saw for target.test, favicon requests
    /// aside.
    async fn next(&mut self) -> Seen {
        loop {
            let seen = tokio::time::timeout(EVENT_WAIT, self.seen.recv())
                .await
                .expect("the proxy sees something within the wait bound")
                .expect("the proxy runs");
            if !matches!(&seen, Seen::Request { target, .. } if target.contains("favicon")) {
                return seen;
            }
        }
    }
}

async fn proxy_one(mut socket: tokio::net::TcpStream, seen: mpsc::UnboundedSender<Seen>) {
    let Some(head) = read_head(&mut socket).await else {
        return;
    };
    let mut request_line = head.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    if !target.contains("target.test") {
        // The browser's own background requests (update checks): no
        // part of any test.
        let _ = socket
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let expected = format!("basic {}", basic_credentials());
    let authorized = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("proxy-authorization")
                && value.trim().eq_ignore_ascii_case(&expected)
        })
    });
    let _ = seen.send(Seen::Request {
        target: target.clone(),
        authorized,
    });
    let respond = |status: &str, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let response = if !authorized {
        respond(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Basic realm=\"test\"\r\n",
            "<title>407</title>",
        )
    } else if method == "CONNECT" {
        let _ = socket
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await;
        let mut buf = [0u8; 1];
        if let Ok(n) = socket.read(&mut buf).await
            && n > 0
        {
            let _ = seen.send(Seen::Tunnelled(buf[0]));
        }
        return;
    } else if target == "http://target.test/" {
        respond(
            "200 OK",
            "",
            &format!("<html><head><title>{TARGET_TITLE}</title></head></html>"),
        )
    } else {
        respond("404 Not Found", "", "")
    };
    let _ = socket.write_all(response.as_bytes()).await;
}

on_both_backends!(
    no_connect_token_is_stored,
    the_migration_removes_stored_tokens,
    a_short_or_unreadable_secret_refuses_to_start,
    authenticated_proxies_work_and_the_password_leaks_nowhere,
    a_proxy_hop_serves_its_own_browser_only,
);
