//! The one way the tests and the bench run browserd: a real server on
//! ephemeral ports, in this process ([`Server`]) or in a child process
//! ([`ChildServer`]), on a fresh database ([`postgres`]). Not used by the
//! service itself; its helpers panic with a reason instead of returning
//! errors, as a test would.

pub mod cluster;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, FromArgMatches};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config::Config;
use crate::pb::session_service_client::SessionServiceClient;

/// Generous bound on waiting for what must happen (a server to start, an
/// event to come); a caller that hits it has failed, never passed.
pub const WAIT: Duration = Duration::from_secs(30);

/// Where the tests' and the bench's own pages are served: a loopback
/// address of its own, which every harness server allows explicitly
/// (`--egress-allow 127.0.0.77`), as an operator allows a local site; the
/// rest of loopback stays refused, so an attack on `127.0.0.1` is one.
pub const PAGE_HOST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 77);

/// The egress policy of a harness server: the default, with
/// [`PAGE_HOST`] allowed.
pub fn egress_allow() -> Vec<crate::domain::egress::Rule> {
    vec![crate::domain::egress::Rule::parse(&PAGE_HOST.to_string()).expect("an address rule")]
}

/// The same policy for a launcher of the tests' own.
pub fn egress_policy() -> std::sync::Arc<crate::egress::Policy> {
    std::sync::Arc::new(crate::egress::Policy::new(false, egress_allow(), vec![]))
}

/// A configuration for a server on ephemeral ports with no warm pool, on
/// `database_url` (default: SQLite in `data_dir`). Everything else is
/// `serve`'s own default, taken from its flags, so a default is written in
/// one place only.
pub fn config(data_dir: &Path, database_url: Option<String>) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        cdp_listen: "127.0.0.1:0".parse().expect("literal address"),
        data_dir: data_dir.to_owned(),
        database_url,
        // Where a test server has always differed from `serve`'s defaults
        // beyond ports and pool; a test that needs another value sets it.
        max_sessions: 8,
        max_timeout: Duration::from_secs(3600),
        warm_pool: 0,
        node_id: Some("test-node".into()),
        egress_allow: egress_allow(),
        ..serve_defaults()
    }
}

/// `browserd serve`'s configuration given no flags. The `BROWSERD_*`
/// environment is not read: a test's server must not depend on the shell
/// that runs the suite.
fn serve_defaults() -> Config {
    let flags = Config::augment_args(clap::Command::new("serve")).mut_args(|arg| arg.env(None));
    let matches = flags
        .try_get_matches_from(["serve"])
        .expect("serve's flags all have defaults or are optional");
    Config::from_arg_matches(&matches).expect("serve's defaults parse")
}

/// browserd running in this process.
pub struct Server {
    /// The gRPC address.
    pub addr: std::net::SocketAddr,
    pub channel: Channel,
    pub client: SessionServiceClient<Channel>,
    /// Where its browsers' profiles are.
    pub profiles_dir: PathBuf,
    /// Its database, for what a test or the bench writes there itself
    /// (such as an API key).
    pub database_url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), crate::StartError>>,
}

impl Server {
    pub async fn start(config: Config) -> Self {
        Self::start_with(config, None).await
    }

    /// A server with `--tls-cert`, reached over TLS as `tls` says (the CA
    /// to trust, a client certificate).
    pub async fn start_tls(config: Config, tls: tonic::transport::ClientTlsConfig) -> Self {
        Self::start_with(config, Some(tls)).await
    }

    async fn start_with(config: Config, tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        let grpc = TcpListener::bind(config.listen).await.expect("bind grpc");
        let cdp = TcpListener::bind(config.cdp_listen)
            .await
            .expect("bind cdp");
        let addr = grpc.local_addr().expect("grpc address");
        let data_dir = std::path::absolute(&config.data_dir).expect("absolute data dir");
        let profiles_dir = data_dir.join("profiles");
        let database_url = config.database_url(&data_dir);
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::run(
            config,
            grpc,
            cdp,
            stop.clone().cancelled_owned(),
        ));
        // The listener is bound before `run` starts, so connecting cannot
        // race it.
        let channel = match tls {
            None => connect(&addr.to_string()).await,
            Some(tls) => connect_tls(addr, tls).await,
        };
        Self {
            addr,
            client: SessionServiceClient::new(channel.clone()),
            channel,
            profiles_dir,
            database_url,
            stop,
            task,
        }
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("server task panicked")
            .expect("server ended with an error");
    }

    /// Waits until the warm pool's health is `wanted`.
    pub async fn pool_health(&self, wanted: ServingStatus) {
        pool_health(&self.channel, wanted).await
    }
}

/// Waits until the warm pool's health (`browserd.warm_pool`) is `wanted`.
/// The health stream is dropped on return: an open one would hold up
/// shutdown.
pub async fn pool_health(channel: &Channel, wanted: ServingStatus) {
    let mut statuses = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: crate::WARM_POOL_HEALTH.into(),
        })
        .await
        .expect("health watch")
        .into_inner();
    loop {
        let status = tokio::time::timeout(WAIT, statuses.message())
            .await
            .expect("the pool's health changes")
            .expect("health stream")
            .expect("health status");
        if status.status == wanted as i32 {
            return;
        }
    }
}

async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to browserd")
}

/// A TLS channel to `addr`, whose IP address the server's certificate must
/// name.
pub async fn connect_tls(
    addr: std::net::SocketAddr,
    tls: tonic::transport::ClientTlsConfig,
) -> Channel {
    Channel::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("client TLS config")
        .connect()
        .await
        .expect("connect to browserd over TLS")
}

/// browserd in a process of its own: the real binary, or the bench's
/// child. Killed if dropped.
pub struct ChildServer {
    child: tokio::process::Child,
    pub pid: u32,
    /// The gRPC address, `host:port`.
    pub addr: String,
    /// The CDP relay's address, `host:port`.
    pub cdp_addr: String,
    pub client: SessionServiceClient<Channel>,
}

impl ChildServer {
    /// Starts `command`, a browserd that logs `browserd listening grpc=…
    /// cdp=…` at INFO on stderr, and waits for that line.
    pub async fn spawn(command: tokio::process::Command) -> Self {
        Self::spawn_logged(command).await.0
    }

    /// As [`ChildServer::spawn`], and hands over every log line after the
    /// listening one; the channel closes when browserd's stderr does.
    pub async fn spawn_logged(
        mut command: tokio::process::Command,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start browserd");
        let pid = child.id().expect("a running child");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (addr, cdp_addr) = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("read log") {
                if line.contains("browserd listening") {
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(name))
                            .expect("addresses in the listening line")
                            .to_owned()
                    };
                    return (field("grpc="), field("cdp="));
                }
            }
            panic!("browserd exited before listening");
        })
        .await
        .expect("browserd logs its bound addresses");
        // Keep draining the log so the server never blocks on a full pipe.
        let (log, logged) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = log.send(line);
            }
        });
        let client = SessionServiceClient::new(connect(&addr).await);
        let server = Self {
            child,
            pid,
            addr,
            cdp_addr,
            client,
        };
        (server, logged)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling the child this harness spawned.
        unsafe { libc::kill(self.pid as i32, signal) };
    }

    pub async fn exit_status(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("browserd exits")
            .expect("wait")
    }

    /// SIGTERM, then the exit status, which must be success.
    pub async fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.exit_status().await;
        assert!(status.success(), "browserd exited with {status}");
    }
}
