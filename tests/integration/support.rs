//! Shared helpers: a real browserd on ephemeral ports (browserd's own
//! harness, which the bench uses too), against real Chromium and a fresh
//! database of the chosen backend; and what the tests observe it with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use browserd::browser::cdp::CdpClient;
use browserd::browser::process_table;
use browserd::harness::Server;
use browserd::pb;
use browserd::pb::session_service_client::SessionServiceClient;
use serde_json::json;
use tonic::transport::Channel;

pub use browserd::harness::WAIT as EVENT_WAIT;
pub use browserd::harness::postgres::{Backend, TestDatabase};
pub use tonic_health::pb::health_check_response::ServingStatus;

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
    pub addr: std::net::SocketAddr,
    pub client: SessionServiceClient<Channel>,
    pub data_dir: tempfile::TempDir,
    database: TestDatabase,
    server: Server,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(
    backend: Backend,
    tune: impl FnOnce(&mut browserd::config::Config),
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data_dir.path()).await;
    spawn_app_on(database, data_dir, tune).await
}

/// A server that `tune` gives a certificate (`--tls-cert`), whose client
/// connects over TLS as `tls` says.
pub async fn spawn_tls_app(
    backend: Backend,
    tls: tonic::transport::ClientTlsConfig,
    tune: impl FnOnce(&mut browserd::config::Config),
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(backend, data_dir.path()).await;
    spawn(database, data_dir, tune, Some(tls)).await
}

/// A server on a database the test made itself, in `data_dir`.
pub async fn spawn_app_on(
    database: TestDatabase,
    data_dir: tempfile::TempDir,
    tune: impl FnOnce(&mut browserd::config::Config),
) -> TestApp {
    spawn(database, data_dir, tune, None).await
}

async fn spawn(
    database: TestDatabase,
    data_dir: tempfile::TempDir,
    tune: impl FnOnce(&mut browserd::config::Config),
    tls: Option<tonic::transport::ClientTlsConfig>,
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
    let mut config = browserd::harness::config(data_dir.path(), Some(database.url.clone()));
    tune(&mut config);
    start(config, data_dir, database, tls).await
}

async fn start(
    config: browserd::config::Config,
    data_dir: tempfile::TempDir,
    database: TestDatabase,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> TestApp {
    let server = match tls {
        None => Server::start(config).await,
        Some(tls) => Server::start_tls(config, tls).await,
    };
    TestApp {
        addr: server.addr,
        client: server.client.clone(),
        data_dir,
        database,
        server,
    }
}

impl TestApp {
    /// The server's gRPC channel, for clients of other services or with
    /// other metadata.
    pub fn channel(&self) -> Channel {
        self.server.channel.clone()
    }

    /// Its database, for what a test writes there itself.
    pub fn database_url(&self) -> &str {
        &self.server.database_url
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.server.profiles_dir.clone()
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
        watch_on(&mut self.client, request).await
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
        self.database.newest_sequence().await
    }

    /// Every byte the database holds (see [`TestDatabase::raw_contents`]).
    pub async fn database_contents(&self) -> Vec<u8> {
        self.database.raw_contents().await
    }

    /// Waits until the warm pool's health is `wanted`.
    pub async fn pool_health(&self, wanted: ServingStatus) {
        self.server.pool_health(wanted).await
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) {
        self.server.stop().await;
        self.database.take().remove().await;
    }

    /// Stops this server and starts a new one on the same data dir and
    /// database, as a restart would.
    pub async fn restart(mut self) -> TestApp {
        self.server.stop().await;
        let database = self.database.take();
        let config = browserd::harness::config(self.data_dir.path(), Some(database.url.clone()));
        start(config, self.data_dir, database, None).await
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

/// WatchSessions on any client.
pub async fn watch_on(
    client: &mut SessionServiceClient<Channel>,
    request: pb::WatchSessionsRequest,
) -> EventStream {
    let stream = client
        .watch_sessions(request)
        .await
        .expect("WatchSessions")
        .into_inner();
    EventStream { stream }
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
        let item = self.next_raw().await;
        item.expect("stream ended")
            .expect("stream failed")
            .event
            .expect("event in response")
    }

    /// The next item as the stream delivers it (`None`: ended cleanly).
    pub async fn next_raw(&mut self) -> Option<Result<pb::WatchSessionsResponse, tonic::Status>> {
        tokio::time::timeout(EVENT_WAIT, self.stream.message())
            .await
            .expect("no stream item within the wait bound")
            .transpose()
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
/// this process to reap. Read from `/proc` here, not through browserd's
/// process-table reader: browserd's teardown finds what to kill with that
/// reader, and a leak check that shared its blind spots would prove
/// nothing.
pub fn browser_processes(profiles_dir: &Path) -> Vec<i32> {
    let needle = profiles_dir.display().to_string();
    let me = std::process::id().to_string();
    let pids = std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let (name, rest) = stat.rsplit_once(')').unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().take(2).collect();
        if fields.first() == Some(&"Z") {
            return fields.get(1) == Some(&me.as_str()) && name.contains("(chrom");
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(&needle)
    })
    .collect()
}

/// How often [`eventually`] tries again.
const POLL: Duration = Duration::from_millis(20);

/// Tries `attempt` until it succeeds, every [`POLL`], for up to
/// [`EVENT_WAIT`], and returns what it gave. For what a test can only poll
/// (the process table, the file system, a background task with nothing to
/// subscribe to); a test that can wait for an event waits for it instead.
/// Timing out fails the test, with what the last attempt saw.
pub async fn eventually<A: Attempt>(what: &str, mut attempt: impl AsyncFnMut() -> A) -> A::Done {
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let last = match attempt().await.outcome() {
            Ok(done) => return done,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what} (last attempt: {last:?})"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What one attempt of [`eventually`] may give: `true`, `Some` or `Ok` is
/// done; an `Err` says what it saw instead.
pub trait Attempt {
    type Done;
    type Pending: std::fmt::Debug;
    fn outcome(self) -> Result<Self::Done, Self::Pending>;
}

impl Attempt for bool {
    type Done = ();
    type Pending = &'static str;
    fn outcome(self) -> Result<(), &'static str> {
        self.then_some(()).ok_or("false")
    }
}

impl<T> Attempt for Option<T> {
    type Done = T;
    type Pending = &'static str;
    fn outcome(self) -> Result<T, &'static str> {
        self.ok_or("None")
    }
}

impl<T, E: std::fmt::Debug> Attempt for Result<T, E> {
    type Done = T;
    type Pending = E;
    fn outcome(self) -> Result<T, E> {
        self
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
pub async fn serve_page(title: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((browserd::harness::PAGE_HOST, 0))
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
    use tokio_stream::StreamExt;
    let (browser, mut handler) = chromiumoxide::Browser::connect(url.to_owned())
        .await
        .expect("CDP client connects through the relay");
    // chromiumoxide's handler never ends on a closed connection (it stays
    // pending) and yields errors as events: drive it until the first one.
    tokio::spawn(async move { while let Some(Ok(())) = handler.next().await {} });
    browser
}

/// browserd's own minimal CDP client, connected to a connect_url.
pub async fn cdp_client(url: &str) -> CdpClient {
    CdpClient::connect(url, &tokio_util::task::TaskTracker::new())
        .await
        .expect("connect through the relay")
}

/// Every regular file under `dir`, recursively (symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(entry.path()),
                Ok(kind) if kind.is_file() => found.push(entry.path()),
                _ => {}
            }
        }
    }
    found
}

/// The uid of a client that is not browserd's user: `nobody`.
pub const FOREIGN_UID: u32 = 65534;

/// A TCP connection to the relay behind `connect_url`, from a socket made
/// as user `uid` (browserd's own when `None`): the kernel records the
/// maker's fs uid as the socket's owner, which is how the relay tells a
/// client of browserd's own user. setfsuid changes only the calling thread.
pub fn relay_socket(connect_url: &str, uid: Option<u32>) -> tokio::net::TcpStream {
    let addr = connect_url
        .strip_prefix("ws://")
        .or_else(|| connect_url.strip_prefix("wss://"))
        .and_then(|rest| rest.split('/').next())
        .expect("a ws:// or wss:// connect_url")
        .to_owned();
    let stream = std::thread::spawn(move || {
        if let Some(uid) = uid {
            // SAFETY: setfsuid has no memory preconditions; it is undone
            // below, on this thread, the only one it affects.
            unsafe { libc::setfsuid(uid) };
        }
        let stream = std::net::TcpStream::connect(&addr);
        if uid.is_some() {
            // SAFETY: as above.
            unsafe { libc::setfsuid(0) };
        }
        stream.expect("connect to the relay")
    })
    .join()
    .expect("the connecting thread");
    stream.set_nonblocking(true).expect("nonblocking");
    tokio::net::TcpStream::from_std(stream).expect("a tokio stream")
}

/// browserd's minimal CDP client, connected as a client of another user
/// (one the relay treats as remote: no file exchange by path).
pub async fn foreign_cdp_client(url: &str) -> CdpClient {
    let stream = relay_socket(url, Some(FOREIGN_UID));
    CdpClient::connect_on(stream, url, &tokio_util::task::TaskTracker::new())
        .await
        .expect("connect through the relay")
}

/// `Browser.getVersion` answered: proof the relay works for this client.
pub async fn round_trip(client: &CdpClient) {
    client
        .call("Browser.getVersion", json!({}), EVENT_WAIT)
        .await
        .expect("an answer through the relay");
}

/// Waits for the relay to close the connection; returns the close reason.
pub async fn closed_reason(client: &CdpClient) -> String {
    tokio::time::timeout(EVENT_WAIT, client.close_reason())
        .await
        .expect("the relay closes the connection")
}

pub fn code_and_message<T: std::fmt::Debug>(
    outcome: Result<T, tonic::Status>,
) -> (tonic::Code, String) {
    let status = outcome.expect_err("the request must be refused");
    (status.code(), status.message().to_owned())
}

/// Browser processes themselves (not helpers) with a profile under `dir`.
pub fn browser_mains(dir: &Path) -> std::collections::BTreeSet<i32> {
    process_table::browser_mains(dir)
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

/// The status of a request that must be refused.
pub fn refusal<T: std::fmt::Debug>(outcome: Result<T, tonic::Status>) -> tonic::Status {
    outcome.expect_err("the request must be refused")
}

/// INVALID_ARGUMENT whose message starts with `field` and whose
/// `google.rpc.BadRequest` detail names it, so a program can act on it.
pub fn assert_invalid_argument(status: &tonic::Status, field: &str) {
    use tonic_types::StatusExt;
    let message = status.message();
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{field}: {message}"
    );
    assert!(
        message.starts_with(field),
        "{field} must be named: {message}"
    );
    let details = status.get_error_details();
    let violations = details
        .bad_request()
        .map(|b| b.field_violations.clone())
        .unwrap_or_default();
    assert!(
        violations
            .iter()
            .any(|v| v.field.starts_with(field) && !v.description.is_empty()),
        "{field} must be named in a BadRequest detail: {violations:?} ({message})"
    );
}

/// Starts browserd with `config` on fresh listeners (at its `listen` and
/// `cdp_listen`) and stops it at once: the error it refused to start with,
/// if any. A refusal comes before anything is served.
pub async fn start_and_stop(config: browserd::config::Config) -> Result<(), browserd::StartError> {
    let grpc = tokio::net::TcpListener::bind(config.listen)
        .await
        .expect("bind");
    let cdp = tokio::net::TcpListener::bind(config.cdp_listen)
        .await
        .expect("bind");
    tokio::time::timeout(EVENT_WAIT, browserd::run(config, grpc, cdp, async {}))
        .await
        .expect("browserd starts or refuses, then stops, within the wait")
}

/// A raw WebSocket to the relay, below any CDP client.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The HTTP status the relay refused a WebSocket handshake with.
pub fn refused_status(outcome: Result<Socket, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match outcome {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a WebSocket"),
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type KeyedClient =
    SessionServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;
pub type KeyedAdmin = browserd::pb::admin_service_client::AdminServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, Bearer>,
>;

fn bearer(key: &str) -> Bearer {
    Bearer(format!("Bearer {key}").parse().expect("an ASCII key"))
}

/// A SessionService client that sends `key` with every call.
pub fn keyed(channel: &Channel, key: &str) -> KeyedClient {
    SessionServiceClient::with_interceptor(channel.clone(), bearer(key))
}

/// An AdminService client that sends `key` with every call.
pub fn keyed_admin(channel: &Channel, key: &str) -> KeyedAdmin {
    browserd::pb::admin_service_client::AdminServiceClient::with_interceptor(
        channel.clone(),
        bearer(key),
    )
}

pub type KeyedContexts = browserd::pb::context_service_client::ContextServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, Bearer>,
>;

/// A ContextService client that sends `key` with every call.
pub fn keyed_contexts(channel: &Channel, key: &str) -> KeyedContexts {
    browserd::pb::context_service_client::ContextServiceClient::with_interceptor(
        channel.clone(),
        bearer(key),
    )
}

/// An HTTP request head read from a test server's socket, up to its blank
/// line; `None` when the peer closed before sending one.
pub async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
