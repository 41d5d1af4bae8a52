//! `browserd sessions|projects|keys …`: a gRPC client of a running
//! browserd for operators and scripts. Tables for people by default; with
//! `--json`, one JSON document per result (one per line for `watch`), with
//! the field names and value formats of the protobuf JSON mapping that
//! grpcurl prints. Every command reaches the server through `connect`,
//! which adds the API key to each call. Only `keys create` with a data dir
//! or database URL skips the server (see `admin`), to make the first key.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod admin;
mod output;

use clap::{Args, Subcommand, ValueEnum};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::api::convert::pb_duration;
use crate::pb;
use crate::pb::session_service_client::SessionServiceClient;
pub use admin::{KeysArgs, ProjectsArgs, keys, projects};
use output::Output;

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: SessionsCommand,
}

/// How every client command reaches browserd and prints what it gets.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// browserd's gRPC address: `host:port`, or an `http://` or `https://`
    /// (TLS) URL.
    #[arg(
        long,
        global = true,
        env = "BROWSERD_SERVER",
        default_value = "127.0.0.1:50051"
    )]
    pub server: String,
    /// API key sent with every call (`authorization: Bearer <key>`); a
    /// server that has keys refuses calls without one.
    #[arg(long, global = true, env = "BROWSERD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM CA certificate(s) to trust for the server's certificate instead
    /// of the system's roots; implies TLS.
    #[arg(long, global = true, env = "BROWSERD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate to present to a server that asks for one
    /// (--tls-client-ca); implies TLS. Needs --client-key.
    #[arg(
        long,
        global = true,
        env = "BROWSERD_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "BROWSERD_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Print JSON (protobuf JSON mapping) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Start a session and print it (LIVE, with its connect URL).
    Create(CreateArgs),
    /// Print one session.
    Get { session_id: String },
    /// List sessions, newest first.
    List(ListArgs),
    /// Release one session (idempotent) and print it.
    Release { session_id: String },
    /// Release every PENDING or LIVE session matching --metadata.
    ReleaseAll {
        /// Only sessions with this label (repeatable: all must match).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
        metadata: Vec<(String, String)>,
        /// Only this project's sessions (default: every project the key
        /// sees).
        #[arg(long)]
        project: Option<String>,
    },
    /// Set a session's total lifetime, counted from its creation.
    Extend {
        session_id: String,
        /// The new total timeout, e.g. `30m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print a live session's open pages.
    Live { session_id: String },
    /// Print lifecycle events as they happen, until interrupted.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Hard lifetime, e.g. `10m` (default: the server's).
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Release after this long with no CDP traffic from any client.
    #[arg(long, value_parser = humantime::parse_duration)]
    inactivity_timeout: Option<Duration>,
    /// Keep the session when its last CDP client disconnects.
    #[arg(long)]
    keep_alive: bool,
    /// A label (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
    metadata: Vec<(String, String)>,
    /// Every new page's viewport, e.g. `1920x1080`.
    #[arg(long, value_name = "WIDTHxHEIGHT", value_parser = viewport)]
    viewport: Option<pb::Viewport>,
    #[arg(long)]
    user_agent: Option<String>,
    /// `http://`, `https://`, `socks4://` or `socks5://` proxy for the browser.
    #[arg(long)]
    proxy_url: Option<String>,
    /// Retrying with the same key returns the first session.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these statuses (repeatable).
    #[arg(long = "status", value_enum)]
    statuses: Vec<Status>,
    /// Only sessions with this label (repeatable: all must match).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
    metadata: Vec<(String, String)>,
    /// Sessions per request; every page is fetched.
    #[arg(long, default_value_t = 100)]
    page_size: i32,
    /// Only this project's sessions (default: every project the key sees).
    #[arg(long)]
    project: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Replay stored events after this sequence first (0: from the start).
    #[arg(long)]
    after_sequence: Option<u64>,
    /// Only these sessions (repeatable).
    #[arg(long = "session")]
    session_ids: Vec<String>,
    /// Only events into these statuses (repeatable).
    #[arg(long = "status", value_enum)]
    statuses: Vec<Status>,
    /// Only sessions with this label (repeatable: all must match).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
    metadata: Vec<(String, String)>,
    /// Only this project's sessions (default: every project the key sees).
    #[arg(long)]
    project: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Status {
    Pending,
    Live,
    Released,
    Failed,
}

impl From<Status> for pb::SessionStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => Self::Pending,
            Status::Live => Self::Live,
            Status::Released => Self::Released,
            Status::Failed => Self::Failed,
        }
    }
}

/// Why a client command failed; `main` prints it and exits nonzero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach browserd at {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("--server {server}: {reason}")]
    Server { server: String, reason: String },
    #[error("cannot read {flag} {path}: {source}")]
    ReadFile {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{:?}: {}{}", .0.code(), .0.message(), hint(.0))]
    Rpc(#[from] tonic::Status),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The key itself is never shown: it may be a real one with a typo.
    #[error(
        "--api-key (or BROWSERD_API_KEY) must be printable ASCII with no spaces, as browserd keys are (the value is not shown)"
    )]
    ApiKey,
    #[error(transparent)]
    Offline(#[from] crate::StartError),
    #[error("{0}")]
    Access(#[from] crate::sessions::Error),
}

/// What to try after a refusal whose fix is on the command line.
fn hint(status: &tonic::Status) -> &'static str {
    match status.code() {
        tonic::Code::Unauthenticated => "\nhint: pass --api-key or set BROWSERD_API_KEY",
        _ => "",
    }
}

/// A channel whose every call carries the API key.
type Connection = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <key>` to every call, when a key was given.
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    fn new(api_key: Option<&str>) -> Result<Self, CliError> {
        let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) else {
            return Ok(Self(None));
        };
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CliError::ApiKey);
        }
        let mut value =
            MetadataValue::try_from(format!("Bearer {key}")).map_err(|_| CliError::ApiKey)?;
        // HTTP/2 then never puts it in a header compression table, and the
        // value's `Debug` prints `Sensitive` instead of the key.
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to browserd at `--server` (over TLS for `https://`, or when
/// a certificate flag is given); every call then carries the key.
async fn connect(args: &ClientArgs) -> Result<Connection, CliError> {
    let bearer = Bearer::new(args.api_key.as_deref())?;
    let server = args.server.clone();
    let tls = client_tls(
        args.ca_cert.as_deref(),
        args.client_cert.as_deref().zip(args.client_key.as_deref()),
    )?;
    let endpoint = match (server.split_once("://"), &tls) {
        (Some(("http", _)), Some(_)) => {
            return Err(CliError::Server {
                server,
                reason: "--ca-cert and --client-cert need TLS: use https://".into(),
            });
        }
        (Some(_), _) => server.clone(),
        (None, Some(_)) => format!("https://{server}"),
        (None, None) => format!("http://{server}"),
    };
    let invalid = |e: &dyn std::fmt::Display| CliError::Server {
        server: server.clone(),
        reason: e.to_string(),
    };
    let mut endpoint = Channel::from_shared(endpoint).map_err(|e| invalid(&e))?;
    if endpoint.uri().scheme_str() == Some("https") {
        let tls = tls.unwrap_or_else(|| ClientTlsConfig::new().with_native_roots());
        endpoint = endpoint.tls_config(tls).map_err(|e| invalid(&e))?;
    }
    let channel = endpoint.connect().await.map_err(|e| CliError::Connect {
        reason: causes(&e),
        server,
    })?;
    Ok(InterceptedService::new(channel, bearer))
}

pub async fn run(args: SessionsArgs) -> Result<(), CliError> {
    let SessionsArgs { client, command } = args;
    let out = Output { json: client.json };
    let mut client = SessionServiceClient::new(connect(&client).await?);
    match command {
        SessionsCommand::Create(args) => {
            let request = pb::CreateSessionRequest {
                timeout: args.timeout.map(pb_duration),
                inactivity_timeout: args.inactivity_timeout.map(pb_duration),
                keep_alive: args.keep_alive,
                metadata: args.metadata.into_iter().collect(),
                viewport: args.viewport,
                user_agent: args.user_agent.unwrap_or_default(),
                proxy_url: args.proxy_url.unwrap_or_default(),
                idempotency_key: args.idempotency_key.unwrap_or_default(),
            };
            let session = client.create_session(request).await?.into_inner().session;
            out.session(session)
        }
        SessionsCommand::Get { session_id } => {
            let request = pb::GetSessionRequest { session_id };
            out.session(client.get_session(request).await?.into_inner().session)
        }
        SessionsCommand::List(args) => {
            let mut sessions = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListSessionsRequest {
                    statuses: args
                        .statuses
                        .iter()
                        .map(|s| pb::SessionStatus::from(*s) as i32)
                        .collect(),
                    metadata: args.metadata.iter().cloned().collect(),
                    page_size: args.page_size,
                    page_token,
                    project: args.project.clone().unwrap_or_default(),
                };
                let page = client.list_sessions(request).await?.into_inner();
                sessions.extend(page.sessions);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            out.sessions(&sessions)
        }
        SessionsCommand::Release { session_id } => {
            let request = pb::ReleaseSessionRequest { session_id };
            out.session(client.release_session(request).await?.into_inner().session)
        }
        SessionsCommand::ReleaseAll { metadata, project } => {
            let request = pb::ReleaseAllSessionsRequest {
                metadata: metadata.into_iter().collect(),
                project: project.unwrap_or_default(),
            };
            let ids = client
                .release_all_sessions(request)
                .await?
                .into_inner()
                .released_ids;
            out.released(&ids)
        }
        SessionsCommand::Extend {
            session_id,
            timeout,
        } => {
            let request = pb::ExtendSessionRequest {
                session_id,
                timeout: Some(pb_duration(timeout)),
            };
            out.session(client.extend_session(request).await?.into_inner().session)
        }
        SessionsCommand::Live { session_id } => {
            let request = pb::GetLiveDetailsRequest { session_id };
            out.live(&client.get_live_details(request).await?.into_inner())
        }
        SessionsCommand::Watch(args) => {
            let request = pb::WatchSessionsRequest {
                session_ids: args.session_ids,
                statuses: args
                    .statuses
                    .into_iter()
                    .map(|s| pb::SessionStatus::from(s) as i32)
                    .collect(),
                metadata: args.metadata.into_iter().collect(),
                after_sequence: args.after_sequence,
                kinds: Vec::new(),
                project: args.project.unwrap_or_default(),
            };
            let mut events = client.watch_sessions(request).await?.into_inner();
            while let Some(response) = events.message().await? {
                if let Some(event) = response.event {
                    out.event(&event)?;
                }
            }
            Ok(())
        }
    }
}

/// The TLS the flags ask for: `None` when they name no file.
fn client_tls(
    ca_cert: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Option<ClientTlsConfig>, CliError> {
    if ca_cert.is_none() && identity.is_none() {
        return Ok(None);
    }
    let read = |flag, path: &Path| {
        std::fs::read(path).map_err(|source| CliError::ReadFile {
            flag,
            path: path.to_owned(),
            source,
        })
    };
    let mut tls = ClientTlsConfig::new();
    tls = match ca_cert {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read("--ca-cert", path)?)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = identity {
        let cert = read("--client-cert", cert)?;
        let key = read("--client-key", key)?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(Some(tls))
}

/// An error and its causes, which is where a transport error says what
/// went wrong (refused, or which certificate check failed).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn viewport(s: &str) -> Result<pb::Viewport, String> {
    let parse = || {
        let (w, h) = s.split_once(['x', 'X'])?;
        Some(pb::Viewport {
            width: w.trim().parse().ok()?,
            height: h.trim().parse().ok()?,
        })
    };
    parse().ok_or_else(|| format!("expected WIDTHxHEIGHT, e.g. 1280x720, got {s:?}"))
}
