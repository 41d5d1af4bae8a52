//! Wiring: builds every part from the configuration, over listeners the
//! caller has bound, runs them until the shutdown future resolves, and
//! stops them in order (stop accepting, end streams, release sessions,
//! wait for tasks). What each part does is its own module's; this file
//! only puts them together and says why a start is refused.

use crate::{
    access, browser, cluster, console, contexts, domain, front, node_lock, relay, secret, store,
};
use crate::{pb, telemetry, tls};

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{AdminServiceHandler, ContextServiceHandler, SessionServiceHandler};
use crate::config::{self, Config};
use crate::sessions::{Engine, EngineConfig};

/// How long background tasks get to finish once every session has ended.
const TASK_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(
        "no Chrome or Chromium found: install one (Debian/Ubuntu: `apt-get install -y chromium`) or pass --chrome-path"
    )]
    NoBrowser,
    #[error("the configured --chrome-path {0} is not a file")]
    BadChromePath(std::path::PathBuf),
    #[error(
        "cannot jail browsers: {0}. Install bubblewrap (Debian/Ubuntu: `apt-get install -y bubblewrap`) and allow unprivileged user namespaces (`sysctl -w kernel.unprivileged_userns_clone=1`; Ubuntu 23.10+: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; Docker: run with the seccomp profile in deploy/seccomp.json, as docker-compose.yml does), or pass --isolation none to run browsers unjailed, where every session's client can read and write the host's files as browserd's user"
    )]
    Jail(#[from] browser::jail::JailError),
    #[error(
        "cannot give browsers a network namespace of their own ({0}), so nothing would keep their pages from browserd's host and network: run browserd as root, or unprivileged with subordinate ids (see --isolation), or, in a container, with the seccomp profile in deploy/seccomp.json; or pass --egress open to let pages reach whatever this host can"
    )]
    Egress(std::io::Error),
    #[error("cannot prepare the data directory {dir}: {source}")]
    DataDir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] node_lock::LockError),
    #[error("a listener has no local address: {0}")]
    Listener(std::io::Error),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error(
        "browserd listens on {0}, beyond loopback, and no API key exists, so anyone who reaches it could run browsers: create an admin key first with `browserd keys create --project default --admin --data-dir <data dir>` (or `--database-url <url>`), which prints the key once, then send it as `authorization: Bearer <key>`; or pass --auth none to serve without keys"
    )]
    NoKeys(std::net::SocketAddr),
    #[error("cannot reconcile sessions left by a previous run: {0}")]
    Reconcile(#[from] domain::Error),
    #[error("cannot start process supervision: {0}")]
    Supervision(std::io::Error),
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Runs browserd on already-bound listeners until `shutdown` resolves, then
/// stops accepting, ends watch streams, releases every session
/// (END_REASON_SHUTDOWN) and returns once no browser is left.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    cdp: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    config.check()?;
    let tls = tls::ServerTls::from_config(&config)?;
    let chrome = match &config.chrome_path {
        Some(path) => browser::find_chrome(Some(path))
            .ok_or_else(|| StartError::BadChromePath(path.clone()))?,
        None => browser::find_chrome(None).ok_or(StartError::NoBrowser)?,
    };
    let data_dir = std::path::absolute(&config.data_dir).map_err(|source| StartError::DataDir {
        dir: config.data_dir.clone(),
        source,
    })?;
    let profiles_dir = data_dir.join("profiles");
    for dir in [&data_dir, &profiles_dir] {
        private_dir(dir).map_err(|source| StartError::DataDir {
            dir: dir.clone(),
            source,
        })?;
    }
    // Held until this function returns.
    let _data_dir_lock = node_lock::NodeLock::take(
        &data_dir.join("browserd.lock"),
        &format!("the data directory {}", data_dir.display()),
    )?;
    let jail = match config.isolation {
        config::Isolation::Jail => browser::jail::Jail::build(config.bwrap_path.as_deref())?,
        config::Isolation::None => {
            tracing::warn!(
                "--isolation none: browsers run unjailed, and every session's client can read and write what browserd's user can, other sessions and the database included"
            );
            browser::jail::Jail::none()
        }
    };
    let secret = secret::ServerSecret::load_or_create(&config.secret_file(&data_dir))?;
    let database_url = config.database_url(&data_dir);
    let _database_lock = sqlite_file(&database_url)
        .map(|file| {
            node_lock::NodeLock::take(
                std::path::Path::new(&format!("{file}.lock")),
                &format!("the SQLite database {file}"),
            )
        })
        .transpose()?;
    let store = store::Store::connect(&database_url).await?;
    private_database(&database_url)?;

    let grpc_addr = grpc.local_addr().map_err(StartError::Listener)?;
    let cdp_addr = cdp.local_addr().map_err(StartError::Listener)?;
    let access = access::Access::new(
        store.clone(),
        open(&config, [grpc_addr, cdp_addr], &store).await?,
    );

    let egress = egress_policy(&config, [grpc_addr, cdp_addr]).await?;
    let tracker = TaskTracker::new();
    let stopping = CancellationToken::new();
    // The reaper outlives `stopping`: it must reap the browsers that the
    // shutdown itself kills.
    let reaper_stop = CancellationToken::new();
    let launcher = browser::Launcher::start(
        chrome.clone(),
        jail,
        config.launch_timeout,
        config.cdp_max_message_size,
        egress,
        &tracker,
        reaper_stop.clone(),
    )
    .map_err(StartError::Supervision)?;
    let sockets = launcher.sockets();
    let cdp_base_url = config
        .cdp_public_url
        .clone()
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| {
            let scheme = if tls.is_some() { "wss" } else { "ws" };
            format!("{scheme}://{cdp_addr}")
        });
    let node = std::sync::Arc::new(cluster::Membership::new(
        config.node_id(),
        config.advertise_url(grpc_addr),
        cdp_base_url.clone(),
        config.lease,
    ));
    let peers = std::sync::Arc::new(cluster::Peers::new(
        node.clone(),
        store.clone(),
        Some(tls::peer_client(&config)?),
    ));
    let engine = Engine::new(
        EngineConfig {
            profiles_dir,
            seal_key: std::sync::Arc::new(contexts::SealKey::derive(&secret)),
            context_max_size: config.context_max_size,
            secret: std::sync::Arc::new(secret),
            default_timeout: config.default_timeout,
            max_timeout: config.max_timeout,
            max_sessions: config.max_sessions,
            connect_timeout: Some(config.connect_timeout).filter(|t| !t.is_zero()),
            warm_pool: config.warm_pool,
            watch_buffer: config.watch_buffer,
            retention: Some(config.retention).filter(|t| !t.is_zero()),
        },
        node,
        store.clone(),
        launcher,
        tracker.clone(),
        stopping.clone(),
    );
    engine.join().await?;
    let reconciled = engine.reconcile().await?;
    if reconciled > 0 {
        tracing::warn!(
            sessions = reconciled,
            "ended sessions a previous run left unfinished"
        );
    }
    engine.start_background();

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::session_service_server::SessionServiceServer<SessionServiceHandler>>()
        .await;
    // Registered before serving: a probe never sees the name unknown.
    let (pool_ready, pool_wanted) = engine.pool_readiness();
    let initial = pool_status(*pool_ready.borrow(), pool_wanted);
    health.set_service_status(WARM_POOL_HEALTH, initial).await;
    tracker.spawn(report_pool_health(
        engine.clone(),
        health.clone(),
        stopping.clone(),
    ));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.grpc.clone())?;
    }
    let server = builder
        .trace_fn(telemetry::rpc_span)
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(
            SessionServiceHandler::new(engine.clone(), access.clone(), peers.clone()).into_server(),
        )
        .add_service(
            ContextServiceHandler::new(contexts::Contexts::new(store.clone()), access.clone())
                .into_server(),
        )
        .add_service(AdminServiceHandler::new(access.clone(), engine.clone()).into_server())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            stopping.clone().cancelled_owned(),
        );
    let relay = relay::router(
        engine.clone(),
        relay::RelayConfig {
            public_base: cdp_base_url,
            max_message_size: config.cdp_max_message_size,
            handshake_timeout: config.cdp_handshake_timeout,
            max_connections_per_session: config.cdp_max_connections_per_session,
            own_user_paths: config.cdp_own_user_paths,
            sockets: sockets.clone(),
        },
        stopping.clone(),
        tracker.clone(),
    );
    let console = console::Console::new(
        engine.clone(),
        access,
        peers,
        config.cdp_handshake_timeout,
        sockets,
        stopping.clone(),
        tracker.clone(),
    );
    tracker.spawn(front::serve(
        cdp,
        front::FrontConfig {
            handshake_timeout: config.cdp_handshake_timeout,
            max_connections: config.cdp_max_connections,
            tls: tls.map(|tls| tls.relay),
        },
        front::Routes {
            relay,
            console: Some(console.router()),
        },
        stopping.clone(),
        tracker.clone(),
    ));
    tracing::info!(
        grpc = %grpc_addr,
        cdp = %cdp_addr,
        tls = config.tls_cert.is_some(),
        chrome = %chrome.display(),
        data_dir = %data_dir.display(),
        "browserd listening"
    );

    let mut server = tokio::spawn(server);
    let ended_early = tokio::select! {
        served = &mut server => Some(served),
        () = shutdown => None,
    };
    if ended_early.is_none() && !config.drain_timeout.is_zero() {
        engine.drain(config.drain_timeout).await;
    }
    tracing::info!("shutting down: releasing every session");
    health
        .set_not_serving::<pb::session_service_server::SessionServiceServer<SessionServiceHandler>>(
        )
        .await;
    engine.shutdown().await;
    reaper_stop.cancel();
    tracker.close();
    if tokio::time::timeout(TASK_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks still running after the shutdown grace");
    }
    // `engine.shutdown` cancelled `stopping`, so the server is draining.
    let served = match ended_early {
        Some(served) => served,
        None => server.await,
    };
    match served {
        Ok(outcome) => Ok(outcome?),
        Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
    }
}

/// Whether calls without an API key are taken (see `--auth`). Every
/// listener counts: the relay's serves the console, which an open server
/// answers as its admin.
async fn open(
    config: &Config,
    listeners: [std::net::SocketAddr; 2],
    store: &store::Store,
) -> Result<access::Open, StartError> {
    if config.auth == config::Auth::None {
        let [grpc, cdp] = listeners;
        tracing::warn!(
            "--auth none: calls without an API key act as the default project's admin; anyone who reaches {grpc} or {cdp} can run and read every session"
        );
        return Ok(access::Open::Yes);
    }
    if store.any_api_key().await? {
        return Ok(access::Open::No);
    }
    if let Some(beyond) = listeners.into_iter().find(|addr| !addr.ip().is_loopback()) {
        return Err(StartError::NoKeys(beyond));
    }
    tracing::info!(
        "no API key exists: serving open on loopback, where every local user can run and read every session, until a key is made (`browserd keys create --project default --admin`, or AdminService.CreateApiKey); from then on every call needs one"
    );
    Ok(access::Open::UntilAKeyExists)
}

/// Makes a SQLite database's files readable by browserd's user only, once
/// [`store::Store::connect`] has opened it; other databases are left alone.
/// The file of a `sqlite://` database URL.
fn sqlite_file(database_url: &str) -> Option<&str> {
    database_url
        .strip_prefix("sqlite://")
        .map(|rest| rest.split('?').next().unwrap_or(rest))
}

pub(crate) fn private_database(database_url: &str) -> Result<(), StartError> {
    if let Some(file) = sqlite_file(database_url) {
        // Its -wal and -shm files exist already (migrations ran); SQLite
        // gives the ones it makes later the database file's mode.
        for suffix in ["", "-wal", "-shm"] {
            let path = std::path::PathBuf::from(format!("{file}{suffix}"));
            match private_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                outcome => outcome.map_err(|source| StartError::DataDir { dir: path, source })?,
            }
        }
    }
    Ok(())
}

/// Creates `dir` if needed, readable by browserd's user only: it holds the
/// database and every session's profile.
pub(crate) fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn private_file(file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

/// The health service name that reports the warm pool: SERVING once it
/// holds every browser it should (a readiness probe for "sessions start
/// warm"), NOT_SERVING while it refills.
pub const WARM_POOL_HEALTH: &str = "browserd.warm_pool";

async fn report_pool_health(
    engine: Engine,
    health: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) {
    let (mut ready, wanted) = engine.pool_readiness();
    loop {
        tokio::select! {
            changed = ready.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        let status = pool_status(*ready.borrow_and_update(), wanted);
        health.set_service_status(WARM_POOL_HEALTH, status).await;
    }
}

fn pool_status(ready: usize, wanted: usize) -> tonic_health::ServingStatus {
    if ready >= wanted {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    }
}

/// The server's egress policy. Unless `--egress open`, proves that a
/// browser's network namespace can be made here by making one: without
/// it, a page would share the host's network, so browserd refuses to
/// start rather than run browsers unwalled.
async fn egress_policy(
    config: &Config,
    listeners: [std::net::SocketAddr; 2],
) -> Result<std::sync::Arc<crate::egress::Policy>, StartError> {
    let open = config.egress == config::Egress::Open;
    if open {
        tracing::warn!(
            "--egress open: browsers share this host's network, and every session's pages can reach its loopback services, its private network and cloud metadata endpoints"
        );
    } else {
        browser::NetNs::probe().await.map_err(StartError::Egress)?;
        tracing::info!(
            allowed = ?config.egress_allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            denied = ?config.egress_deny.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "browsers reach public addresses only, through their egress proxies"
        );
    }
    let policy = crate::egress::Policy::new(
        open,
        config.egress_allow.clone(),
        config.egress_deny.clone(),
    );
    policy.set_own_ports(listeners.iter().map(std::net::SocketAddr::port).collect());
    Ok(std::sync::Arc::new(policy))
}
