//! Shared helpers: a real browserd on ephemeral ports, against real
//! Chromium and a fresh database of the chosen backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use futures_util::SinkExt;
use sea_orm::{ConnectionTrait, Database};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Generous bound on waiting for an event that must come; a test that hits
/// it has failed, it never passes by waiting.
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` of the calling module once per
/// backend, as `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

pub struct TestApp {
    /// The gRPC address.
    pub addr: SocketAddr,
    pub client: SessionServiceClient<Channel>,
    pub channel: Channel,
    pub data_dir: tempfile::TempDir,
    database: TestDatabase,
    shutdown: CancellationToken,
    server: Option<JoinHandle<Result<(), browserd::StartError>>>,
}

/// The database a test runs on, and how to get rid of it.
pub struct TestDatabase {
    pub url: String,
    /// PostgreSQL only: (admin URL, database name) to drop at the end.
    drop: Option<(String, String)>,
}

impl TestDatabase {
    /// SQLite in `data_dir`, or a new database on the PostgreSQL server.
    pub async fn new(backend: Backend, data_dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("browserd.db").display()
                ),
                drop: None,
            },
            Backend::Postgres => fresh_postgres_database().await,
        }
    }

    pub async fn remove(mut self) {
        if let Some((admin, name)) = self.drop.take() {
            let conn = Database::connect(&admin).await.expect("admin connection");
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop test database");
        }
    }

    pub async fn execute(&self, sql: &str) {
        let conn = Database::connect(&self.url)
            .await
            .expect("test db connection");
        conn.execute_unprepared(sql).await.expect("test sql");
        conn.close().await.expect("close test db connection");
    }
}

pub fn config(data_dir: &Path, database_url: String) -> browserd::config::Config {
    browserd::config::Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        cdp_listen: "127.0.0.1:0".parse().expect("literal address"),
        cdp_public_url: None,
        data_dir: data_dir.to_owned(),
        database_url: Some(database_url),
        chrome_path: None,
        max_sessions: 8,
        default_timeout: Duration::from_secs(300),
        max_timeout: Duration::from_secs(3600),
        launch_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(300),
        warm_pool: 0,
        watch_buffer: 4096,
        node_id: Some("test-node".into()),
        cdp_max_message_size: 256 << 20,
        cdp_handshake_timeout: Duration::from_secs(10),
        cdp_max_connections: 512,
        cdp_max_connections_per_session: 32,
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(
    backend: Backend,
    tune: impl FnOnce(&mut browserd::config::Config),
) -> TestApp {
    // The server's log, captured per test and printed when it fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,browserd=debug,sqlx=warn,sea_orm=warn".into()),
        )
        .with_test_writer()
        .with_ansi(false)
        .try_init();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data_dir.path()).await;
    let mut config = config(data_dir.path(), database.url.clone());
    tune(&mut config);
    start(config, data_dir, database).await
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new, empty database on the test server, so runs never see each
/// other's rows. A missing server fails the test: it is never skipped.
async fn fresh_postgres_database() -> TestDatabase {
    let admin = postgres_admin_url();
    let name = format!("browserd_test_{}", uuid::Uuid::new_v4().simple());
    let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at TEST_DATABASE_URL={admin} is required for the postgres tests: {e}")
    });
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    conn.close().await.expect("close admin connection");
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .expect("TEST_DATABASE_URL has a database path");
    TestDatabase {
        url: format!("{base}/{name}"),
        drop: Some((admin, name)),
    }
}

async fn start(
    config: browserd::config::Config,
    data_dir: tempfile::TempDir,
    database: TestDatabase,
) -> TestApp {
    let grpc = TcpListener::bind(config.listen).await.expect("bind grpc");
    let cdp = TcpListener::bind(config.cdp_listen)
        .await
        .expect("bind cdp");
    let grpc_addr = grpc.local_addr().expect("grpc addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(browserd::run(
        config,
        grpc,
        cdp,
        shutdown.clone().cancelled_owned(),
    ));
    // The listener is bound before `run` starts, so connecting cannot race it.
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to browserd");
    TestApp {
        addr: grpc_addr,
        client: SessionServiceClient::new(channel.clone()),
        channel,
        data_dir,
        database,
        shutdown,
        server: Some(server),
    }
}

impl TestApp {
    pub fn profiles_dir(&self) -> PathBuf {
        self.data_dir.path().join("profiles")
    }

    pub async fn create(&mut self, request: pb::CreateSessionRequest) -> pb::Session {
        create_on(&mut self.client, request).await
    }

    pub async fn get(&mut self, id: &str) -> pb::Session {
        get_on(&mut self.client, id).await
    }

    pub async fn list(&mut self, request: pb::ListSessionsRequest) -> Vec<pb::Session> {
        self.client
            .list_sessions(request)
            .await
            .expect("ListSessions")
            .into_inner()
            .sessions
    }

    pub async fn release(&mut self, id: &str) -> pb::Session {
        self.client
            .release_session(pb::ReleaseSessionRequest {
                session_id: id.into(),
            })
            .await
            .expect("ReleaseSession")
            .into_inner()
            .session
            .expect("session in response")
    }

    pub async fn watch(&mut self, request: pb::WatchSessionsRequest) -> EventStream {
        let stream = self
            .client
            .watch_sessions(request)
            .await
            .expect("WatchSessions")
            .into_inner();
        EventStream { stream }
    }

    /// Every stored event so far, replayed through WatchSessions. The
    /// database only tells where the log ends, so the replay can stop there.
    pub async fn all_events(&mut self) -> Vec<pb::SessionEvent> {
        let newest = self.newest_sequence().await;
        let mut events = Vec::new();
        if newest == 0 {
            return events;
        }
        let mut stream = self
            .watch(pb::WatchSessionsRequest {
                after_sequence: Some(0),
                ..Default::default()
            })
            .await;
        while events
            .last()
            .is_none_or(|e: &pb::SessionEvent| e.sequence < newest)
        {
            events.push(stream.next().await);
        }
        events
    }

    /// Events of one session, in order.
    pub async fn events_of(&mut self, session_id: &str) -> Vec<pb::SessionEvent> {
        let mut events = self.all_events().await;
        events.retain(|e| e.session_id == session_id);
        events
    }

    pub async fn newest_sequence(&self) -> u64 {
        let conn = Database::connect(&self.database.url)
            .await
            .expect("test db connection");
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                "SELECT COALESCE(MAX(sequence), 0) AS newest FROM session_events",
            ))
            .await
            .expect("query newest sequence")
            .expect("one row");
        let newest: i64 = row.try_get("", "newest").expect("newest column");
        conn.close().await.expect("close test db connection");
        newest as u64
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task panicked")
                .expect("server ended with an error");
        }
        let database = std::mem::replace(
            &mut self.database,
            TestDatabase {
                url: String::new(),
                drop: None,
            },
        );
        database.remove().await;
    }

    /// Stops this server and starts a new one on the same data dir and
    /// database, as a restart would.
    pub async fn restart(mut self) -> TestApp {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task panicked")
                .expect("server error");
        }
        let database = TestDatabase {
            url: self.database.url.clone(),
            drop: self.database.drop.take(),
        };
        let data_dir = tempfile::TempDir::new().expect("placeholder");
        let data_dir = std::mem::replace(&mut self.data_dir, data_dir);
        let config = config(data_dir.path(), database.url.clone());
        start(config, data_dir, database).await
    }
}

/// CreateSession on any client (in-process app or child-process server).
pub async fn create_on(
    client: &mut SessionServiceClient<Channel>,
    request: pb::CreateSessionRequest,
) -> pb::Session {
    client
        .create_session(request)
        .await
        .expect("CreateSession")
        .into_inner()
        .session
        .expect("session in response")
}

pub async fn get_on(client: &mut SessionServiceClient<Channel>, id: &str) -> pb::Session {
    client
        .get_session(pb::GetSessionRequest {
            session_id: id.into(),
        })
        .await
        .expect("GetSession")
        .into_inner()
        .session
        .expect("session in response")
}

pub struct EventStream {
    stream: tonic::Streaming<pb::WatchSessionsResponse>,
}

impl EventStream {
    /// The next event; fails the test if none comes within [`EVENT_WAIT`].
    pub async fn next(&mut self) -> pb::SessionEvent {
        let item = tokio::time::timeout(EVENT_WAIT, self.stream.next())
            .await
            .expect("no event within the wait bound");
        item.expect("stream ended")
            .expect("stream failed")
            .event
            .expect("event in response")
    }

    /// The next item as the stream delivers it (`None`: ended cleanly).
    pub async fn next_raw(&mut self) -> Option<Result<pb::WatchSessionsResponse, tonic::Status>> {
        tokio::time::timeout(EVENT_WAIT, self.stream.next())
            .await
            .expect("no stream item within the wait bound")
    }

    /// Reads events until one for `session_id` reaches `status`.
    pub async fn until(&mut self, session_id: &str, status: pb::SessionStatus) -> pb::SessionEvent {
        loop {
            let event = self.next().await;
            if event.session_id == session_id && event.to_status == status as i32 {
                return event;
            }
        }
    }
}

/// Pids of running browser processes (and helpers) whose command line
/// names a directory under `profiles_dir`, and Chromium zombies left for
/// this process to reap: read from the OS process table, not from
/// browserd's bookkeeping.
pub fn browser_processes(profiles_dir: &Path) -> Vec<i32> {
    let needle = profiles_dir.display().to_string();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid = fields.next().unwrap_or_default();
        if state == "Z" {
            if ppid == me && stat.contains("(chrom") {
                found.push(pid);
            }
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(&needle))
        {
            found.push(pid);
        }
    }
    found
}

/// Polls the process table (nothing else can tell) until `done`.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Entries left in a directory (profiles must all be removed).
pub fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn status_of(session: &pb::Session) -> pb::SessionStatus {
    pb::SessionStatus::try_from(session.status).expect("known status")
}

pub fn reason_of(session: &pb::Session) -> pb::EndReason {
    pb::EndReason::try_from(session.end_reason).expect("known end reason")
}

pub fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// A one-page HTTP server on 127.0.0.1 for browsers to load.
pub async fn serve_page(title: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind page server");
    let addr = listener.local_addr().expect("page server addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body =
                    format!("<html><head><title>{title}</title></head><body>hi</body></html>");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// Connects chromiumoxide, a real CDP client, to a connect_url.
pub async fn connect_cdp(url: &str) -> chromiumoxide::Browser {
    let (browser, mut handler) = chromiumoxide::Browser::connect(url.to_owned())
        .await
        .expect("CDP client connects through the relay");
    // chromiumoxide's handler never ends on a closed connection (it stays
    // pending) and yields errors as events: drive it until the first one.
    tokio::spawn(async move { while let Some(Ok(())) = handler.next().await {} });
    browser
}

pub fn code_and_message<T: std::fmt::Debug>(
    outcome: Result<T, tonic::Status>,
) -> (tonic::Code, String) {
    let status = outcome.expect_err("the request must be refused");
    (status.code(), status.message().to_owned())
}

/// Browser processes themselves (not helpers) with a profile under `dir`,
/// from the process table.
pub fn browser_mains(dir: &Path) -> std::collections::BTreeSet<i32> {
    let prefix = format!("--user-data-dir={}", dir.display());
    let mains: std::collections::BTreeSet<i32> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter().any(|a| a.starts_with(&prefix))
                && !args.iter().any(|a| a.starts_with("--type="))
        })
        .collect();
    // A child the browser has forked but not yet exec'd still shows the
    // browser's command line: it is no second browser.
    let parent = |pid: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after_name.split_whitespace().nth(1)?.parse::<i32>().ok()
    };
    mains
        .iter()
        .copied()
        .filter(|pid| !parent(pid).is_some_and(|ppid| mains.contains(&ppid)))
        .collect()
}

/// The directory outside the profile where Chromium keeps its
/// single-instance socket (under $TMPDIR), read from the profile's link.
pub fn singleton_dir(profile: &Path) -> PathBuf {
    std::fs::read_link(profile.join("SingletonSocket"))
        .expect("the profile links Chromium's socket")
        .parent()
        .expect("a socket directory")
        .to_owned()
}

/// The pid of a session's browser process itself (not a helper).
pub fn browser_main_pid(profiles_dir: &Path, session_id: &str) -> i32 {
    let found = browser_mains(&profiles_dir.join(session_id));
    assert_eq!(
        found.len(),
        1,
        "one browser process for {session_id}: {found:?}"
    );
    *found.first().expect("one pid")
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect_raw(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect through the relay")
        .0
}

/// Sends `Browser.getVersion` and waits for its answer: proof the relay
/// works for this client.
pub async fn round_trip(socket: &mut Socket, id: u64) {
    socket
        .send(Message::text(format!(
            r#"{{"id":{id},"method":"Browser.getVersion"}}"#
        )))
        .await
        .expect("send through the relay");
    let wanted = format!(r#""id":{id}"#);
    loop {
        let frame = tokio::time::timeout(EVENT_WAIT, socket.next())
            .await
            .expect("an answer through the relay")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame
            && text.contains(&wanted)
        {
            return;
        }
    }
}

/// Waits for the relay to close `socket`, returning the close reason.
pub async fn closed_reason(socket: &mut Socket) -> String {
    loop {
        match tokio::time::timeout(EVENT_WAIT, socket.next())
            .await
            .expect("the relay closes the connection")
        {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| f.reason.to_string()).unwrap_or_default();
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return String::new(),
        }
    }
}
